"""The pencil-beam dose engine bound to one patient CT.

Per beam (DESIGN.md section 4):

1. Radiological depth of every dose point along its divergent ray: density
   is sampled on a beam-aligned fan grid, summed along the rays and
   interpolated back (:mod:`lattice_plan.dose.point_geometry`), O(points).
2. The fluence at the isocentre plane (aperture or beamlet map, times the
   in-air off-axis ratio) is convolved by FFT with each lateral kernel of
   the beam model (fine grid for the primary and short-range scatter, coarse grid for the
   broad ones).
3. Each point takes the convolved maps at its projection, weighted by the
   component's depth function at its radiological depth and by the inverse
   square (SAD / s)^2 (steps 2 and 3: :mod:`lattice_plan.dose.superpose`).

Dose is in Gy: ``mu * model.gy_per_mu * sum_c ...``. A beam with a fluence
map gets the map as a sliding-window MLC delivers it, leaf transmission
included (:func:`lattice_plan.dose.fluence.delivered_map`). The operator
(:class:`~lattice_plan.dose.fluence_operator.FluenceOperator`, re-exported
here) is the same computation as a linear map of beamlet weights, with its
exact adjoint for gradients, but of the primary fluence only (no leaf
transmission: that is not linear in the weights).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.cache import BoundedCache
from lattice_plan.dose.beam import Beam
from lattice_plan.dose.fluence import field_bounds_mm
from lattice_plan.dose.fluence_operator import FluenceOperator, VoxelOperator
from lattice_plan.dose.hu import HUDensityTable
from lattice_plan.dose.model import BeamModel
from lattice_plan.dose.point_geometry import (
    DensityTracer,
    PointGeometry,
    box_corners,
    geometry_key,
)
from lattice_plan.dose.superpose import add_beam_dose
from lattice_plan.errors import DoseError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.iec import R_bld_from_gantry, T_bld_from_lps
from lattice_plan.geometry.structure import Structure
from lattice_plan.geometry.volume import Volume, resample_array

__all__ = ["DoseEngine", "FluenceOperator", "PointGeometry", "VoxelOperator"]

log = logging.getLogger(__name__)

_GEOMETRY_CACHE_BYTES = 768 * 1024**2


def _geometry_nbytes(geom: PointGeometry) -> int:
    return geom.nbytes


def _covering_grid(sub: Grid, spacing_mm: float) -> Grid:
    """A grid of pitch ``spacing_mm`` whose voxel boxes cover every voxel box of ``sub``.

    Centred on ``sub``; with ``spacing_mm`` equal to ``sub``'s pitch it is ``sub``
    itself, so the dose voxels coincide with the CT voxels. Rounding the voxel
    count up (not down) keeps the far edges of the body and the scan ends on
    the dose grid.
    """
    n_sub = np.array(sub.shape[::-1], dtype=float)  # (i, j, k)
    ratio = spacing_mm / sub.spacing_ijk_mm
    n_dose = np.ceil(n_sub / ratio - 1e-9).astype(int)
    first_ijk = (n_sub - 1.0) / 2.0 - (n_dose - 1.0) / 2.0 * ratio
    origin = sub.points_lps_mm(first_ijk)
    return Grid(
        tuple(int(n) for n in n_dose[::-1]),
        (spacing_mm, spacing_mm, spacing_mm),
        tuple(float(v) for v in origin),
        sub.direction,
        sub.patient_position,
    )


class DoseEngine:
    """Pencil-beam dose on a dose grid for one CT.

    Args:
        ct: the CT in HU (axis-aligned; an oblique CT is refused).
        body: the body outline (EXTERNAL) on the CT grid. Density outside it is
            set to zero (air) and the dose grid is cropped to its bounding box.
        model: the beam model (default: the shipped commissioned 6 MV model).
        dose_spacing_mm: isotropic dose-grid pitch; not finer than the CT's finest pitch.
        hu_table: HU to relative electron density (default: :meth:`HUDensityTable.default`).
    """

    def __init__(
        self,
        ct: Volume,
        body: Structure | None = None,
        model: BeamModel | None = None,
        dose_spacing_mm: float = 2.5,
        hu_table: HUDensityTable | None = None,
    ) -> None:
        if ct.unit != "HU":
            raise DoseError(f"the dose engine needs a CT in HU, got a volume in {ct.unit!r}")
        grid = ct.grid
        if not grid.is_axis_aligned:
            raise DoseError(
                "the CT is oblique or tilted (direction cosines not along LPS axes); "
                "resample it onto an axis-aligned grid before computing dose"
            )
        if not (math.isfinite(dose_spacing_mm) and dose_spacing_mm > 0):
            raise DoseError(f"dose_spacing_mm must be positive, got {dose_spacing_mm}")
        if dose_spacing_mm < min(grid.spacing_mm) - 1e-6:
            raise DoseError(
                f"dose grid spacing {dose_spacing_mm} mm is finer than the CT "
                f"({min(grid.spacing_mm)} mm); use a dose spacing of at least the CT pitch"
            )
        self.ct = ct
        self.model = model if model is not None else BeamModel.load_default()
        self.hu_table = hu_table if hu_table is not None else HUDensityTable.default()
        self.dose_spacing_mm = float(dose_spacing_mm)
        density = self.hu_table.density(ct.array)
        if body is not None:
            grid.require_same(body.grid, f"body structure {body.name!r}")
            body.require_nonempty("the dose grid")
            density = np.where(body.mask, density, np.float32(0.0)).astype(np.float32)
            lo, hi = body.bounding_box_kji()
        else:
            lo, hi = np.zeros(3, dtype=int), np.array(grid.shape)
        sub = grid.crop(lo, hi)
        self.dose_grid: Grid = _covering_grid(sub, self.dose_spacing_mm)
        if body is not None:
            # Every dose voxel that overlaps a body voxel gets dose, so that
            # interpolation at the skin never mixes in an uncomputed zero.
            overlap = resample_array(body.mask.astype(np.float32), grid, self.dose_grid, order=1)
            inside = overlap > 0.0
        else:
            inside = np.ones(self.dose_grid.shape, dtype=bool)
        self._active_flat = np.flatnonzero(inside).astype(np.int64)
        self._pos_of_flat = np.full(self.dose_grid.n_voxels, -1, dtype=np.int64)
        self._pos_of_flat[self._active_flat] = np.arange(len(self._active_flat))
        self._tracer = DensityTracer(
            np.ascontiguousarray(density, dtype=np.float32),
            grid.ijk_from_lps,
            box_corners(*sub.bounds_lps_mm()),
            ray_mm=min(self.dose_spacing_mm, *grid.spacing_mm),
            step_mm=float(min(grid.spacing_mm)),
        )
        self._points: NDArray[np.float64] | None = None
        self._points_box: NDArray[np.float64] | None = None
        self._geometry_cache: BoundedCache[PointGeometry] = BoundedCache(
            max_bytes=_GEOMETRY_CACHE_BYTES, nbytes=_geometry_nbytes
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_active(self) -> int:
        """Number of dose-grid voxels inside the body (the ones that get dose)."""
        return len(self._active_flat)

    @property
    def active_mask(self) -> NDArray[np.bool_]:
        """Dose-grid voxels inside the body, [k, j, i]."""
        m = np.zeros(self.dose_grid.n_voxels, dtype=bool)
        m[self._active_flat] = True
        return m.reshape(self.dose_grid.shape)

    def _voxel_points(self) -> NDArray[np.float64]:
        if self._points is None:
            pts = self.dose_grid.voxel_centers_lps_mm().reshape(-1, 3)
            self._points = np.ascontiguousarray(pts[self._active_flat])
            self._points_box = box_corners(self._points.min(axis=0), self._points.max(axis=0))
        return self._points

    # ------------------------------------------------------------------ geometry
    def check_beam(self, beam: Beam) -> None:
        """Refuse a beam the engine cannot compute (isocentre outside the CT, empty aperture)."""
        if not isinstance(beam, Beam):
            raise DoseError(f"expected a Beam, got {type(beam).__name__}")
        if not bool(self.ct.grid.contains_lps(np.asarray(beam.isocenter_lps_mm))):
            lo, hi = self.ct.grid.bounds_lps_mm()
            raise DoseError(
                f"beam {beam.name!r}: isocentre {beam.isocenter_lps_mm} mm lies outside the CT "
                f"(LPS {tuple(np.round(lo, 1))} to {tuple(np.round(hi, 1))} mm); "
                "place the isocentre inside the patient"
            )
        field_bounds_mm(beam)

    def _frames(self, beam: Beam) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(affine LPS -> the beam's frame without collimator rotation, 2x2 rotation from its
        (x, y) to the beam-limiting device's)."""
        T = T_bld_from_lps(
            beam.isocenter_lps_mm,
            beam.gantry_deg,
            0.0,
            beam.couch_deg,
            self.ct.grid.patient_position,
        )
        return T, R_bld_from_gantry(beam.collimator_deg)[:2, :2]

    def point_geometry(self, beam: Beam, points_lps_mm: NDArray[np.float64]) -> PointGeometry:
        """Projection, radiological depth and depth weights of points (n, 3) LPS mm for a beam."""
        box = self._points_box if points_lps_mm is self._points else None
        return self._tracer.geometry(
            *self._frames(beam), beam.sad_mm, points_lps_mm, self.model, beam.name, box
        )

    def rotated_geometry(self, geom: PointGeometry, beam: Beam) -> PointGeometry:
        """The voxel geometry ``geom`` of a beam with the same rays as ``beam``
        (:func:`lattice_plan.dose.point_geometry.ray_key`) at ``beam``'s collimator angle:
        equal to :meth:`voxel_geometry` of ``beam``, without the ray trace."""
        return self._tracer.rotated(geom, *self._frames(beam), beam.sad_mm, self._voxel_points())

    def voxel_geometry(self, beam: Beam, store: bool = True) -> PointGeometry:
        """:meth:`point_geometry` of the active dose voxels, cached per beam geometry.

        ``store=False``: use a cached geometry but do not cache a new one (for a
        geometry used once, which would only push out the others).
        """
        key = geometry_key(beam)
        hit = self._geometry_cache.get(key)
        if hit is not None:
            return hit
        geom = self.point_geometry(beam, self._voxel_points())
        if store:
            self._geometry_cache.put(key, geom)
        return geom

    # ------------------------------------------------------------------ dose
    def beam_dose(self, beam: Beam) -> Volume:
        """Dose (Gy) of one beam for its MU on the dose grid; zero outside the body."""
        return self.compute([beam])

    def compute(self, beams: Sequence[Beam]) -> Volume:
        """Total dose (Gy) of the beams for their MU on the dose grid; zero outside the body."""
        beams = list(beams)
        if not beams:
            raise DoseError("compute needs at least one beam")
        for b in beams:
            self.check_beam(b)
        acc = np.zeros(self.n_active)
        sel = np.arange(self.n_active, dtype=np.int64)
        for b in beams:
            add_beam_dose(b, self.voxel_geometry(b), sel, acc, self.model)
        return self.volume_of(acc)

    def volume_of(self, active_dose_gy: NDArray[np.float64]) -> Volume:
        """A dose (Gy) given at the active voxels (``n_active``,) as a dose-grid Volume, zero outside."""
        arr = np.zeros(self.dose_grid.n_voxels)
        arr[self._active_flat] = active_dose_gy
        return Volume(arr.reshape(self.dose_grid.shape), self.dose_grid, "Gy")

    def point_dose(self, beams: Sequence[Beam], points_lps_mm: ArrayLike) -> NDArray[np.float64]:
        """Total dose (Gy) of the beams at arbitrary points (n, 3) LPS mm (same model, no grid)."""
        pts = np.asarray(points_lps_mm, dtype=np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(pts)):
            raise DoseError("dose points must be finite LPS coordinates in mm")
        beams = list(beams)
        for b in beams:
            self.check_beam(b)
        out = np.zeros(len(pts))
        sel = np.arange(len(pts), dtype=np.int64)
        for b in beams:
            add_beam_dose(b, self.point_geometry(b, pts), sel, out, self.model)
        return out

    def operator(self, beams: Sequence[Beam], beamlet_mm: float = 5.0) -> FluenceOperator:
        """The linear beamlet-weights -> dose operator for these beams (see :class:`FluenceOperator`)."""
        return FluenceOperator(self, beams, beamlet_mm)

    # ------------------------------------------------------------------ voxel subsets
    def flat_indices(self, voxels: ArrayLike) -> NDArray[np.int64]:
        """Flat dose-grid indices of ``voxels``: a boolean mask of the dose-grid shape or flat indices."""
        vox = np.asarray(voxels)
        if vox.dtype == np.bool_:
            if vox.shape != self.dose_grid.shape:
                raise DoseError(
                    f"voxel mask has shape {vox.shape}; it must have the dose-grid shape "
                    f"{self.dose_grid.shape}"
                )
            return np.flatnonzero(vox)
        if not np.issubdtype(vox.dtype, np.integer) or vox.ndim != 1:
            raise DoseError("voxels must be a boolean mask or a 1D array of flat indices")
        flat = vox.astype(np.int64)
        if len(flat) and (flat.min() < 0 or flat.max() >= self.dose_grid.n_voxels):
            raise DoseError(
                f"voxel indices must lie in 0..{self.dose_grid.n_voxels - 1} (flat dose-grid index)"
            )
        return flat

    def selection(
        self, voxels: ArrayLike | None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
        """(sel, where, n_out) for a voxel subset: active positions, their output slots, output length.

        ``voxels``: None (all voxels; output is the whole grid), a boolean mask of the
        dose-grid shape, or flat indices into the dose grid.
        """
        if voxels is None:
            return (
                np.arange(self.n_active, dtype=np.int64),
                self._active_flat,
                self.dose_grid.n_voxels,
            )
        flat = self.flat_indices(voxels)
        pos = self._pos_of_flat[flat]
        where = np.flatnonzero(pos >= 0)
        return np.ascontiguousarray(pos[where]), where, len(flat)
