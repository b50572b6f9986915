"""Regular voxel grids in the DICOM patient frame (LPS, mm).

Axis order: arrays are indexed ``[k, j, i]`` = [slice, row, column], as pydicom
stacks a CT series. Every per-axis tuple of a :class:`Grid` (``shape``,
``spacing_mm``) follows that array order. Index *coordinates* handed to or
returned by the affines are ``(i, j, k)`` column vectors, as in DICOM:

    x_lps = origin_lps_mm + direction @ diag(di, dj, dk) @ (i, j, k)

where the columns of ``direction`` are the unit LPS vectors of the i, j and k
axes (DICOM ImageOrientationPatient row and column cosines, then the slice
normal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import GeometryError

PatientPosition = Literal["HFS", "HFP", "FFS", "FFP", "HFDL", "HFDR", "FFDL", "FFDR"]
PATIENT_POSITIONS: tuple[str, ...] = ("HFS", "HFP", "FFS", "FFP", "HFDL", "HFDR", "FFDL", "FFDR")

_ORTHONORMAL_TOL = 1e-4


def _as_triplet(name: str, value: ArrayLike, positive: bool = False) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=float)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} must be three finite numbers, got {value!r}")
    if positive and np.any(arr <= 0):
        raise GeometryError(f"{name} must be positive, got {tuple(arr)}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular 3D voxel grid.

    Attributes:
        shape: (nk, nj, ni) number of voxels along the array axes.
        spacing_mm: (dk, dj, di) voxel pitch along the array axes, mm.
        origin_lps_mm: (x, y, z) LPS position of the centre of voxel [0, 0, 0], mm.
        direction: 3x3; column c is the unit LPS vector of index axis (i, j, k)[c].
        patient_position: DICOM PatientPosition of the scan (HFS, HFP, FFS, FFP, ...).
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: NDArray[np.float64] = field(default_factory=lambda: np.eye(3))
    patient_position: str = "HFS"

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in np.asarray(self.shape).ravel())
        if len(shape) != 3 or any(n < 1 for n in shape):
            raise GeometryError(
                f"Grid shape must be three positive integers (nk, nj, ni), got {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(
            self, "spacing_mm", _as_triplet("Grid spacing_mm", self.spacing_mm, True)
        )
        object.__setattr__(
            self, "origin_lps_mm", _as_triplet("Grid origin_lps_mm", self.origin_lps_mm)
        )
        direction = np.array(self.direction, dtype=float)
        if direction.shape != (3, 3):
            raise GeometryError(f"Grid direction must be a 3x3 matrix, got shape {direction.shape}")
        if not np.allclose(direction.T @ direction, np.eye(3), atol=_ORTHONORMAL_TOL):
            raise GeometryError(
                "Grid direction cosines must be orthonormal (columns = unit LPS vectors of i, j, k); "
                f"got {direction.tolist()}"
            )
        direction.setflags(write=False)
        object.__setattr__(self, "direction", direction)
        if self.patient_position not in PATIENT_POSITIONS:
            raise GeometryError(
                f"patient_position {self.patient_position!r} is not a DICOM patient position; "
                f"use one of {', '.join(PATIENT_POSITIONS)}"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_extent(
        cls,
        min_lps_mm: ArrayLike,
        max_lps_mm: ArrayLike,
        spacing_mm: ArrayLike | float,
        patient_position: str = "HFS",
    ) -> Grid:
        """Axis-aligned grid (identity direction) whose voxel centres cover a box.

        ``spacing_mm`` is (dk, dj, di) or one number for isotropic voxels. The
        first voxel centre sits at ``min_lps_mm``; the grid extends to cover
        ``max_lps_mm``.
        """
        lo = np.asarray(min_lps_mm, dtype=float)
        hi = np.asarray(max_lps_mm, dtype=float)
        sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
        if np.any(hi < lo):
            raise GeometryError(f"max_lps_mm {tuple(hi)} must not be below min_lps_mm {tuple(lo)}")
        sp_xyz = sp[::-1]
        n_xyz = np.floor((hi - lo) / sp_xyz + 1e-9).astype(int) + 1
        return cls(
            shape=(int(n_xyz[2]), int(n_xyz[1]), int(n_xyz[0])),
            spacing_mm=tuple(sp),
            origin_lps_mm=tuple(lo),
            patient_position=patient_position,
        )

    # ------------------------------------------------------------------ basic properties
    @property
    def spacing_ijk_mm(self) -> NDArray[np.float64]:
        """Voxel pitch in index-coordinate order (di, dj, dk), mm."""
        return np.array(self.spacing_mm[::-1])

    @property
    def voxel_volume_cc(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def is_axis_aligned(self) -> bool:
        """True when each index axis runs along +/- one LPS axis in order i->x, j->y, k->z."""
        return bool(np.allclose(np.abs(self.direction), np.eye(3), atol=_ORTHONORMAL_TOL))

    @property
    def lps_from_ijk(self) -> NDArray[np.float64]:
        """4x4 affine taking homogeneous index coordinates (i, j, k, 1) to LPS mm."""
        T = np.eye(4)
        T[:3, :3] = self.direction * self.spacing_ijk_mm[None, :]
        T[:3, 3] = self.origin_lps_mm
        return T

    @property
    def ijk_from_lps(self) -> NDArray[np.float64]:
        """4x4 affine taking LPS mm to continuous index coordinates (i, j, k, 1)."""
        T = np.eye(4)
        rot = (self.direction / self.spacing_ijk_mm[None, :]).T
        T[:3, :3] = rot
        T[:3, 3] = -rot @ np.asarray(self.origin_lps_mm)
        return T

    # ------------------------------------------------------------------ coordinates
    def points_lps_mm(self, ijk: ArrayLike) -> NDArray[np.float64]:
        """LPS positions (..., 3) of continuous index coordinates (..., 3) in (i, j, k) order."""
        ijk = np.asarray(ijk, dtype=float)
        M = self.lps_from_ijk
        return ijk @ M[:3, :3].T + M[:3, 3]

    def continuous_ijk(self, points_lps_mm: ArrayLike) -> NDArray[np.float64]:
        """Continuous (i, j, k) index coordinates (..., 3) of LPS points (..., 3)."""
        pts = np.asarray(points_lps_mm, dtype=float)
        M = self.ijk_from_lps
        return pts @ M[:3, :3].T + M[:3, 3]

    def axis_coords_lps_mm(
        self,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Voxel-centre positions along each index axis, for axis-aligned grids.

        Returns (z_of_k, y_of_j, x_of_i) in mm, in array-axis order, so that
        ``np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")`` gives z, y, x arrays.
        """
        if not self.is_axis_aligned:
            raise GeometryError(
                "axis_coords_lps_mm needs an axis-aligned grid; use voxel_centers_lps_mm for oblique grids"
            )
        nk, nj, ni = self.shape
        o = np.asarray(self.origin_lps_mm)
        d = np.diag(self.direction) * self.spacing_ijk_mm
        return (
            o[2] + d[2] * np.arange(nk),
            o[1] + d[1] * np.arange(nj),
            o[0] + d[0] * np.arange(ni),
        )

    def voxel_centers_lps_mm(self) -> NDArray[np.float64]:
        """LPS positions of all voxel centres, shape (nk, nj, ni, 3) with last axis (x, y, z)."""
        k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in self.shape), indexing="ij")
        return self.points_lps_mm(np.stack([i, j, k], axis=-1))

    def bounds_lps_mm(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(min, max) LPS corners of the box spanned by the voxel centres."""
        corners = np.array(
            [
                [i, j, k]
                for i in (0, self.shape[2] - 1)
                for j in (0, self.shape[1] - 1)
                for k in (0, self.shape[0] - 1)
            ],
            dtype=float,
        )
        pts = self.points_lps_mm(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def contains_lps(
        self, points_lps_mm: ArrayLike, margin_voxels: float = 0.5
    ) -> NDArray[np.bool_]:
        """Whether LPS points lie inside the grid (voxel boxes, widened by ``margin_voxels - 0.5``)."""
        ijk = self.continuous_ijk(points_lps_mm)
        upper = np.array(self.shape[::-1], dtype=float) - 1 + margin_voxels
        return np.all((ijk >= -margin_voxels) & (ijk <= upper), axis=-1)

    # ------------------------------------------------------------------ comparison and sub-grids
    def same_as(self, other: Grid, tol_mm: float = 1e-3) -> bool:
        """True when both grids have the same voxels (shape, spacing, origin, direction)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm)
            and np.allclose(self.origin_lps_mm, other.origin_lps_mm, atol=tol_mm)
            and np.allclose(self.direction, other.direction, atol=_ORTHONORMAL_TOL)
        )

    def require_same(self, other: Grid, what: str) -> None:
        """Raise GeometryError naming ``what`` unless ``other`` has the same voxels."""
        if not self.same_as(other):
            raise GeometryError(
                f"{what} is on a different grid (shape {other.shape}, spacing {other.spacing_mm} mm, "
                f"origin {other.origin_lps_mm}) than expected (shape {self.shape}, spacing "
                f"{self.spacing_mm} mm, origin {self.origin_lps_mm}); resample it onto this grid first"
            )

    def crop(self, lo_kji: ArrayLike, hi_kji: ArrayLike) -> Grid:
        """Sub-grid of voxels ``lo <= [k, j, i] < hi`` (half-open, array order)."""
        lo = np.asarray(lo_kji, dtype=int)
        hi = np.asarray(hi_kji, dtype=int)
        if (
            lo.shape != (3,)
            or hi.shape != (3,)
            or np.any(lo < 0)
            or np.any(hi > self.shape)
            or np.any(hi <= lo)
        ):
            raise GeometryError(
                f"crop bounds {tuple(lo)}..{tuple(hi)} must lie within shape {self.shape} and be non-empty"
            )
        origin = self.points_lps_mm(lo[::-1].astype(float))
        return Grid(
            tuple(hi - lo), self.spacing_mm, tuple(origin), self.direction, self.patient_position
        )

    def with_spacing(self, spacing_mm: ArrayLike | float) -> Grid:
        """A grid over the same region (same first voxel centre and extent) with another pitch."""
        new_sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
        if np.any(new_sp <= 0):
            raise GeometryError(f"spacing_mm must be positive, got {tuple(new_sp)}")
        extent = (np.array(self.shape) - 1) * np.array(self.spacing_mm)
        shape = np.floor(extent / new_sp + 1e-9).astype(int) + 1
        return Grid(
            tuple(shape), tuple(new_sp), self.origin_lps_mm, self.direction, self.patient_position
        )

    def __repr__(self) -> str:
        return (
            f"Grid(shape={self.shape}, spacing_mm={self.spacing_mm}, origin_lps_mm="
            f"{tuple(round(v, 3) for v in self.origin_lps_mm)}, axis_aligned={self.is_axis_aligned}, "
            f"patient_position={self.patient_position!r})"
        )
