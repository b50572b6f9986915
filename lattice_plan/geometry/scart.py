"""SCART core: the ablative target volume (STV) inside the GTV.

Three ways to draw it, as clinics do:

- ``"contract"``: the GTV contracted by a margin (Euclidean, true spacing).
- ``"volume_fraction"``: the GTV scaled about its centre by the linear factor that
  leaves the requested fraction of its volume (found by bisection on the voxel
  volume of the result).
- ``"dose_ratio"``: the GTV scaled about its centre by periphery dose / core dose
  per axis (a 3 Gy edge around a 15 Gy core gives 0.2), the rule clinical SCART
  applies to each contour.

Scaling by ``s`` about the centre ``c`` keeps a voxel ``x`` when ``c + (x - c) / s``
lies in the GTV (trilinear sample of the mask >= 0.5). Optionally the superior and
inferior ends are trimmed. The result is always inside the GTV and one connected
piece (the largest, 26-connected); an empty result is refused.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.morphology import contract_mask
from lattice_plan.geometry.structure import Structure, StructureKind

logger = logging.getLogger(__name__)

ScartMethod = Literal["contract", "volume_fraction", "dose_ratio"]
SCART_METHODS: tuple[str, ...] = ("contract", "volume_fraction", "dose_ratio")
_FRACTION_RTOL = 0.005
_BISECTION_STEPS = 40


def scart_core(
    gtv: Structure,
    method: ScartMethod = "dose_ratio",
    *,
    margin_mm: float | None = None,
    volume_fraction: float | None = None,
    periphery_dose_gy: float | None = None,
    core_dose_gy: float | None = None,
    si_trim_mm: float = 0.0,
    center_lps_mm: ArrayLike | None = None,
    name: str = "STV",
) -> Structure:
    """The SCART core of ``gtv`` (kind CORE).

    method "contract" needs ``margin_mm``; "volume_fraction" needs ``volume_fraction``
    (0-1, of the GTV volume, after trimming); "dose_ratio" needs ``periphery_dose_gy``
    and ``core_dose_gy`` (0 < periphery < core). ``si_trim_mm`` removes that much from
    the superior and inferior ends of the core (voxel centres within it of the first
    and last slice of the core are dropped). ``center_lps_mm`` defaults to the GTV
    centroid, or to the GTV point deepest inside when the centroid falls outside it.
    """
    if not isinstance(gtv, Structure):
        raise GeometryError(f"gtv must be a Structure, got {type(gtv).__name__}")
    gtv.require_nonempty("the SCART core")
    if method not in SCART_METHODS:
        raise GeometryError(
            f"unknown SCART method {method!r}; use one of {', '.join(SCART_METHODS)}"
        )
    trim = float(si_trim_mm)
    if not (np.isfinite(trim) and trim >= 0):
        raise GeometryError(f"si_trim_mm must be a non-negative distance in mm, got {si_trim_mm!r}")
    crop = _Crop(gtv, trim)
    label = ""
    if method == "contract":
        if margin_mm is None:
            raise GeometryError("SCART method 'contract' needs margin_mm (mm)")
        sub = crop.finish(contract_mask(crop.gtv, gtv.grid.spacing_mm, float(margin_mm)))
        label = f"contracted by {float(margin_mm):g} mm"
        if not sub.any():
            depth = float(
                ndimage.distance_transform_edt(
                    np.pad(crop.gtv, 1), sampling=gtv.grid.spacing_mm
                ).max()
            )
            raise GeometryError(
                f"the STV of {gtv.name!r} {label} (SI trim {trim:g} mm) is empty: its deepest "
                f"voxel is only about {depth:.1f} mm from the surface; use a smaller margin"
            )
    else:
        center = _center(gtv, center_lps_mm)
        if method == "dose_ratio":
            if periphery_dose_gy is None or core_dose_gy is None:
                raise GeometryError(
                    "SCART method 'dose_ratio' needs periphery_dose_gy and core_dose_gy (Gy)"
                )
            pd, cd = float(periphery_dose_gy), float(core_dose_gy)
            if not (np.isfinite(pd) and np.isfinite(cd) and 0 < pd < cd):
                raise GeometryError(
                    f"SCART dose ratio needs 0 < periphery_dose_gy < core_dose_gy, got {pd!r} "
                    f"and {cd!r} Gy"
                )
            scale = pd / cd
            sub = crop.scaled(center, scale)
            label = f"scaled by {pd:g}/{cd:g} Gy = {scale:.3g}"
        else:
            if volume_fraction is None:
                raise GeometryError("SCART method 'volume_fraction' needs volume_fraction (0-1)")
            f = float(volume_fraction)
            if not 0 < f < 1:
                raise GeometryError(
                    f"volume_fraction must be between 0 and 1, got {volume_fraction!r}"
                )
            scale, sub = _fit_fraction(crop, center, f)
            label = f"scaled by {scale:.4f} to {f:g} of the volume"
        if not sub.any():
            raise GeometryError(
                f"the STV of {gtv.name!r} {label} (SI trim {trim:g} mm) is empty: no voxel "
                f"({gtv.grid.spacing_mm} mm) is left; use a larger scale or a finer grid"
            )
    mask = np.zeros(gtv.grid.shape, dtype=bool)
    mask[crop.slices] = sub
    stv = Structure(name, mask, gtv.grid, StructureKind.CORE)
    logger.info(
        "SCART core %r of %r: %s, %.2f cc (%.1f %% of the GTV)",
        name,
        gtv.name,
        label,
        stv.volume_cc,
        100 * stv.volume_cc / gtv.volume_cc,
    )
    return stv


class _Crop:
    """The GTV on its bounding box (one voxel of padding) and the operations on it."""

    def __init__(self, gtv: Structure, trim_mm: float) -> None:
        grid = gtv.grid
        lo, hi = gtv.bounding_box_kji()
        lo, hi = np.maximum(lo - 1, 0), np.minimum(hi + 1, grid.shape)
        self.slices = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        self.grid = grid.crop(lo, hi)
        self.gtv = gtv.mask[self.slices]
        self.trim_mm = trim_mm
        k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in self.grid.shape), indexing="ij")
        self.points = self.grid.points_lps_mm(np.stack([i, j, k], axis=-1))
        self.gtv_float = self.gtv.astype(float)

    def finish(self, mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Inside the GTV, SI-trimmed, largest connected piece."""
        mask = mask & self.gtv
        if self.trim_mm > 0 and mask.any():
            z = self.points[..., 2]
            zs = z[mask]
            mask &= (z >= zs.min() + self.trim_mm - 1e-6) & (z <= zs.max() - self.trim_mm + 1e-6)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        if n > 1:
            sizes = np.bincount(labels.ravel())[1:]
            mask = labels == (int(np.argmax(sizes)) + 1)
        return mask

    def scaled(self, center_lps_mm: NDArray[np.float64], scale: float) -> NDArray[np.bool_]:
        src = center_lps_mm + (self.points - center_lps_mm) / scale
        ijk = self.grid.continuous_ijk(src)
        coords = np.moveaxis(ijk[..., ::-1], -1, 0)
        inside = ndimage.map_coordinates(self.gtv_float, coords, order=1, mode="constant", cval=0.0)
        return self.finish(inside >= 0.5)


def _fit_fraction(
    crop: _Crop, center: NDArray[np.float64], fraction: float
) -> tuple[float, NDArray[np.bool_]]:
    """Linear scale whose STV has ``fraction`` of the GTV voxels (bisection, closest kept)."""
    target = fraction * crop.gtv.sum()
    lo, hi = 0.0, 1.0
    best: tuple[float, float, NDArray[np.bool_]] | None = None
    s = fraction ** (1 / 3)
    for _ in range(_BISECTION_STEPS):
        mask = crop.scaled(center, s)
        n = float(mask.sum())
        err = abs(n - target)
        if best is None or err < best[0]:
            best = (err, s, mask)
        if err <= _FRACTION_RTOL * target:
            break
        lo, hi = (s, hi) if n < target else (lo, s)
        s = 0.5 * (lo + hi)
    assert best is not None
    return best[1], best[2]


def _center(gtv: Structure, center_lps_mm: ArrayLike | None) -> NDArray[np.float64]:
    if center_lps_mm is not None:
        c = np.asarray(center_lps_mm, dtype=float)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise GeometryError(
                f"center_lps_mm must be three finite numbers, got {center_lps_mm!r}"
            )
        return c
    c = gtv.centroid_lps_mm()
    ijk = np.rint(gtv.grid.continuous_ijk(c)).astype(int)
    if gtv.mask[ijk[2], ijk[1], ijk[0]]:
        return c
    depth = ndimage.distance_transform_edt(np.pad(gtv.mask, 1), sampling=gtv.grid.spacing_mm)
    k, j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
    deep = gtv.grid.points_lps_mm(np.array([i - 1, j - 1, k - 1], dtype=float))
    logger.info(
        "centroid of %r lies outside it; scaling about its deepest point %s", gtv.name, deep
    )
    return deep
