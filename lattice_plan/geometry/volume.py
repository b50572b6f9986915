"""A scalar 3D image on a :class:`Grid`: CT numbers, densities or dose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.grid import Grid

UNITS: tuple[str, ...] = ("HU", "Gy", "relative_electron_density", "g/cm3", "1")


@dataclass(frozen=True, eq=False)
class Volume:
    """A read-only array indexed [k, j, i] on ``grid``, in ``unit``.

    ``unit`` is one of "HU", "Gy", "relative_electron_density", "g/cm3", "1".
    """

    array: NDArray
    grid: Grid
    unit: str

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.shape != self.grid.shape:
            raise GeometryError(
                f"Volume array shape {arr.shape} does not match its grid shape {self.grid.shape}"
            )
        if not np.issubdtype(arr.dtype, np.number):
            raise GeometryError(f"Volume array must be numeric, got dtype {arr.dtype}")
        if self.unit not in UNITS:
            raise GeometryError(
                f"Volume unit {self.unit!r} is not known; use one of {', '.join(UNITS)}"
            )
        if arr.base is not None or arr.flags.writeable:
            arr = np.array(arr, copy=True)
        arr.setflags(write=False)
        object.__setattr__(self, "array", arr)

    def resampled(self, grid: Grid, order: int = 1, fill_value: float | None = None) -> Volume:
        """This volume interpolated at the voxel centres of ``grid``.

        ``order`` is the spline order (0 nearest, 1 trilinear). Points outside
        this volume take ``fill_value`` (default: the array minimum, e.g. air for CT).
        """
        fill = float(self.array.min()) if fill_value is None else float(fill_value)
        return Volume(
            resample_array(self.array, self.grid, grid, order=order, fill_value=fill),
            grid,
            self.unit,
        )

    def __repr__(self) -> str:
        return f"Volume(unit={self.unit!r}, dtype={self.array.dtype}, {self.grid!r})"


def resample_array(
    array: NDArray, source: Grid, target: Grid, order: int = 1, fill_value: float = 0.0
) -> NDArray[np.float64]:
    """Interpolate ``array`` (on ``source``) at the voxel centres of ``target``.

    Uses separable per-axis coordinates when both grids are axis aligned with
    the same direction (fast path), and full LPS mapping otherwise.
    """
    if array.shape != source.shape:
        raise GeometryError(f"array shape {array.shape} does not match source grid {source.shape}")
    src = np.asarray(array, dtype=float)
    T = source.ijk_from_lps @ target.lps_from_ijk  # source (i,j,k,1) from target (i,j,k,1)
    lin = T[:3, :3]
    if np.allclose(lin - np.diag(np.diag(lin)), 0.0, atol=1e-9):
        # Separable: each source index depends on one target index only.
        ci = T[0, 3] + T[0, 0] * np.arange(target.shape[2])
        cj = T[1, 3] + T[1, 1] * np.arange(target.shape[1])
        ck = T[2, 3] + T[2, 2] * np.arange(target.shape[0])
        kk, jj, ii = np.meshgrid(ck, cj, ci, indexing="ij", sparse=False)
        coords = np.stack([kk, jj, ii])
    else:
        k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in target.shape), indexing="ij")
        ijk = np.stack([i, j, k], axis=-1) @ lin.T + T[:3, 3]
        coords = np.moveaxis(ijk[..., ::-1], -1, 0)
    return ndimage.map_coordinates(src, coords, order=order, mode="constant", cval=fill_value)
