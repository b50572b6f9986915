"""Sampling a dose (or any scalar volume) inside a structure, at sub-voxel resolution.

The structure's voxels are split into s^3 sub-voxel points (a rank-1 lattice,
see :func:`subvoxel_offsets`) and the dose is interpolated trilinearly at each
point, on whatever grid the dose lives. In a partly filled slice (a contour
end cap, ``Structure.slice_span``) the points are packed into the filled part
of the slice and weigh only that part's volume. DVHs (lattice_plan.analysis) and plan
normalisation (lattice_plan.planning) both use this sampler, so a plan
normalised to "vertex Dmean = 15 Gy" reports exactly that in its DVH metrics.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lattice_plan.errors import SamplingError
from lattice_plan.geometry.structure import Structure, mask_bounding_box_kji
from lattice_plan.geometry.volume import Volume

log = logging.getLogger(__name__)

_TARGET_SAMPLES = 100_000
_MAX_SUBDIVISIONS = 4
_CHUNK_SAMPLES = 1 << 21


@dataclass(frozen=True)
class DoseSamples:
    """Doses sampled inside a structure: ``dose_gy[n]`` standing for ``weight_cc`` (cc).

    ``weight_cc`` is one volume for every sample, or one per sample where the
    structure has partly filled slices. ``structure_volume_cc`` is the whole
    structure; ``covered_volume_cc`` the part inside the dose grid that was sampled.
    """

    dose_gy: NDArray[np.float64]
    weight_cc: float | NDArray[np.float64]
    structure_volume_cc: float
    covered_volume_cc: float

    @property
    def covered_fraction(self) -> float:
        return self.covered_volume_cc / self.structure_volume_cc

    @property
    def weights_cc(self) -> NDArray[np.float64]:
        """The volume (cc) of each sample, as an array like ``dose_gy``."""
        return np.broadcast_to(np.asarray(self.weight_cc, dtype=float), self.dose_gy.shape)


def _auto_subdivisions(n_voxels: int) -> int:
    s = math.ceil((_TARGET_SAMPLES / max(n_voxels, 1)) ** (1.0 / 3.0))
    return int(min(max(s, 1), _MAX_SUBDIVISIONS))


def _mask_indices(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int64], ...]:
    """``np.nonzero(mask)``, searched only inside the mask's bounding box (fast for small masks)."""
    lo, hi = mask_bounding_box_kji(mask)
    k, j, i = np.nonzero(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
    return k + lo[0], j + lo[1], i + lo[2]


def subvoxel_offsets(s: int) -> NDArray[np.float64]:
    """``s**3`` sample offsets (voxel units, (i, j, k) order) inside a voxel, centred on it.

    The points form a rank-1 lattice (Korobov generator (1, a, a^2) mod s^3 with
    a = s^2 + s + 1, coprime to s): each point has its own i, j and k
    coordinate, so a dose gradient along any axis gives s^3 distinct dose levels
    per voxel instead of s (a staircase DVH), while the points still fill the
    voxel evenly and their mean is the voxel centre (exact for a linear dose).
    """
    m = s**3
    if m == 1:
        return np.zeros((1, 3))
    a = s * s + s + 1
    k = np.arange(m)
    lattice = np.stack([k, (k * a) % m, (k * a * a) % m], axis=1)
    return (lattice + 0.5) / m - 0.5


def _voxel_samples_with_spans(
    dose_arr: NDArray, structure: Structure, weight_cc: float, total_cc: float
) -> DoseSamples:
    """One sample per voxel on the dose's own grid: the voxel value in whole slices, the dose
    at the middle of the filled part (interpolated along k) in partly filled ones."""
    span = structure.slice_span
    fraction = structure.slice_fraction
    k, j, i = _mask_indices(structure.mask)
    values = np.asarray(dose_arr[k, j, i], dtype=float)
    partial = fraction[k] < 1.0
    nk = dose_arr.shape[0]
    if partial.any() and nk > 1:
        kp, jp, ip = k[partial], j[partial], i[partial]
        z = np.clip(kp + 0.5 * (span[kp, 0] + span[kp, 1]), 0.0, nk - 1.0)
        k0 = np.minimum(np.floor(z).astype(np.int64), nk - 2)
        t = z - k0
        values[partial] = (1.0 - t) * dose_arr[k0, jp, ip] + t * dose_arr[k0 + 1, jp, ip]
    return DoseSamples(values, weight_cc * fraction[k], total_cc, total_cc)


def sample_dose(
    dose: Volume,
    structure: Structure,
    subdivisions: int | None = None,
    allow_partial: bool = False,
) -> DoseSamples:
    """Sample ``dose`` (Gy) inside ``structure`` at sub-voxel centres (see the module docstring).

    A structure reaching outside the dose grid raises SamplingError (an AnalysisError) that reports
    the uncovered volume, unless ``allow_partial`` is True: then only the
    covered part is sampled (and a warning is logged). Sub-voxel points within
    half a dose voxel of the outermost voxel centres count as covered.
    """
    if dose.unit != "Gy":
        raise SamplingError(f"DVH needs a dose Volume in Gy, got unit {dose.unit!r}")
    if structure.is_empty:
        raise SamplingError(
            f"structure {structure.name!r} is empty (no voxels); a DVH needs at least one voxel"
        )
    s = _auto_subdivisions(structure.n_voxels) if subdivisions is None else int(subdivisions)
    if s < 1 or s > 16:
        raise SamplingError(f"subdivisions must be 1-16 per axis, got {subdivisions!r}")
    weight_cc = structure.grid.voxel_volume_cc / s**3
    total_cc = structure.volume_cc
    dose_arr = dose.array
    span = structure.slice_span
    if s == 1 and structure.grid.same_as(dose.grid):
        if span is None:
            values = np.asarray(dose_arr[structure.mask], dtype=float)
            return DoseSamples(values, weight_cc, total_cc, total_cc)
        return _voxel_samples_with_spans(dose_arr, structure, weight_cc, total_cc)

    # Continuous dose-grid (i, j, k) coordinates of the sub-voxel centres, in chunks of
    # about _CHUNK_SAMPLES points so that large structures on fine grids stay in memory.
    T = dose.grid.ijk_from_lps @ structure.grid.lps_from_ijk
    offsets = subvoxel_offsets(s)
    upper = np.array(dose.grid.shape[::-1], dtype=float) - 0.5
    src = np.asarray(dose_arr, dtype=float)
    k, j, i = _mask_indices(structure.mask)
    step = max(1, _CHUNK_SAMPLES // len(offsets))
    parts = []
    part_weights = []  # per-sample volumes (cc), only where slices are partly filled
    for lo in range(0, len(k), step):
        sl = slice(lo, lo + step)
        pts = np.stack([i[sl], j[sl], k[sl]], axis=1).astype(float)[:, None, :] + offsets
        if span is not None:
            # Pack each voxel's points into the filled part of its slice: [lo, hi] about its centre.
            lo_k, hi_k = span[k[sl], 0, None], span[k[sl], 1, None]
            pts[..., 2] = k[sl, None] + lo_k + (offsets[:, 2] + 0.5) * (hi_k - lo_k)
            weights = np.broadcast_to(weight_cc * (hi_k - lo_k), pts.shape[:2])
        pts = pts.reshape(-1, 3) @ T[:3, :3].T + T[:3, 3]
        inside = np.all((pts >= -0.5) & (pts <= upper), axis=1)
        pts = pts[inside]
        if span is not None:
            part_weights.append(weights.ravel()[inside])
        # Clamp the half-voxel border onto the outermost centres (nearest-edge extrapolation).
        np.clip(pts, 0.0, upper - 0.5, out=pts)
        parts.append(ndimage.map_coordinates(src, pts[:, ::-1].T, order=1, mode="nearest"))
    n_in = sum(len(p) for p in parts)
    sample_weights = np.concatenate(part_weights) if span is not None else None
    covered_cc = float(sample_weights.sum()) if sample_weights is not None else n_in * weight_cc
    if n_in < len(k) * len(offsets):
        outside_cc = total_cc - covered_cc
        msg = (
            f"structure {structure.name!r}: {outside_cc:.3g} cc of its {total_cc:.3g} cc "
            f"({100.0 * outside_cc / total_cc:.1f} %) lies outside the dose grid"
        )
        if n_in == 0:
            raise SamplingError(
                f"{msg}; it does not overlap the dose grid at all: check that dose and structure "
                "share a frame of reference"
            )
        if not allow_partial:
            raise SamplingError(
                f"{msg}; extend the dose grid, or pass allow_partial=True to compute on the "
                f"covered {covered_cc:.3g} cc only"
            )
        log.warning("%s; computing on the covered %.3g cc only", msg, covered_cc)
    weights_out = weight_cc if sample_weights is None else sample_weights
    return DoseSamples(np.concatenate(parts), weights_out, total_cc, covered_cc)
