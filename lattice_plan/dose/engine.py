"""The pencil-beam dose engine bound to one patient CT, and its linear fluence operator.

Per beam (DESIGN.md section 4):

1. Radiological depth of every dose point along its divergent ray: density
   is sampled on a beam-aligned fan grid, summed along the rays and
   interpolated back (:mod:`lattice_plan.kernels.raytrace`), O(points).
2. The fluence at the isocentre plane (aperture or beamlet map, times the
   in-air off-axis ratio) is convolved by FFT with each lateral kernel of
   the beam model (fine grid for the primary and short-range scatter, coarse grid for the
   broad ones).
3. Each point takes the convolved maps at its projection, weighted by the
   component's depth function at its radiological depth and by the inverse
   square (SAD / s)^2 (:mod:`lattice_plan.kernels.superposition`).

Dose is in Gy: ``mu * model.gy_per_mu * sum_c ...``. A beam with a fluence
map gets the map as a sliding-window MLC delivers it, leaf transmission
included (:func:`lattice_plan.dose.fluence.delivered_map`). The operator
(:class:`FluenceOperator`) is the same computation as a linear map of beamlet
weights, with its exact adjoint for gradients, but of the primary fluence
only (no leaf transmission: that is not linear in the weights).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.cache import BoundedCache
from lattice_plan.dose.beam import Beam, FluenceMap
from lattice_plan.dose.fluence import (
    MapGrid,
    beam_fluence,
    field_bounds_mm,
    modulation_factor,
    paint_matrices,
)
from lattice_plan.dose.hu import HUDensityTable
from lattice_plan.dose.map_convolution import MapConvolver, support_of
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DoseError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.iec import T_bld_from_lps
from lattice_plan.geometry.structure import Structure
from lattice_plan.geometry.volume import Volume, resample_array
from lattice_plan.kernels.raytrace import (
    depth_weights,
    fan_coordinates_and_depth,
    radiological_depth_grid,
)
from lattice_plan.kernels.superposition import gather_beam, scatter_beam

log = logging.getLogger(__name__)

_GEOMETRY_CACHE_BYTES = 768 * 1024**2


def _geometry_nbytes(geom: PointGeometry) -> int:
    return geom.nbytes


@dataclass(frozen=True, eq=False)
class PointGeometry:
    """Per-point quantities of one beam: projection to the isocentre plane and depth weights.

    u_mm, v_mm: (n,) float32 BLD coordinates of the point's ray at the isocentre plane.
    weights: (n_components, n) float32, depth function at the radiological depth times
        (SAD / s)^2 (model units; zero for points at or behind the source).
    depth_mm: (n,) float32 radiological depth (mm of water).
    inverse_square: (n,) float32 (SAD / s)^2, s the distance from the source along the axis.
    scales: (s_near / SAD, s_far / SAD), the two distances the scatter kernels are built for
        (one value when all points lie at one distance).
    blend: (n,) float32, where each point lies between them (0 near, 1 far).
    """

    u_mm: NDArray[np.float32]
    v_mm: NDArray[np.float32]
    weights: NDArray[np.float32]
    depth_mm: NDArray[np.float32]
    inverse_square: NDArray[np.float32]
    scales: tuple[float, ...]
    blend: NDArray[np.float32]

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (
                self.u_mm,
                self.v_mm,
                self.weights,
                self.depth_mm,
                self.inverse_square,
                self.blend,
            )
        )

    def with_model(self, model: BeamModel) -> PointGeometry:
        """The same points with the depth weights of another beam model."""
        w = _depth_weights(model, self.depth_mm.astype(np.float64), self.inverse_square)
        return replace(self, weights=w)


_DEPTH_TABLE_STEP_MM = 0.1


def _depth_weights(
    model: BeamModel, depth_mm: NDArray, inverse_square: NDArray
) -> NDArray[np.float32]:
    """Depth functions at the radiological depths times the inverse square, (n_rows, n) float32.

    The depth functions are tabulated every 0.1 mm and interpolated linearly (relative error
    below 1e-4 for the model's exponentials), which is several times faster than evaluating
    them at every point.
    """
    d = np.ascontiguousarray(depth_mm, dtype=np.float64)
    top = float(d.max()) if d.size else 0.0
    table_d = np.arange(0.0, top + 2 * _DEPTH_TABLE_STEP_MM, _DEPTH_TABLE_STEP_MM)
    table = np.ascontiguousarray(model.depth_functions(table_d))
    out = np.empty((len(table), d.size), dtype=np.float32)
    isq = np.ascontiguousarray(inverse_square, dtype=np.float64)
    depth_weights(table, _DEPTH_TABLE_STEP_MM, d, isq, out)
    return out


_SCALE_STEP = 0.02  # scatter-kernel distances snap outward to this grid (as s / SAD)


def _scatter_planes(s_mm: NDArray[np.float64], sad: float) -> tuple[tuple[float, ...], NDArray]:
    """Two source distances (as s / SAD) spanning the points, and each point's place between them.

    The distances snap outward to multiples of _SCALE_STEP, so that the beams of a plan
    share their kernels (built once per pair of distances, see BeamModel.map_kernels).
    """
    valid = s_mm[s_mm > 0]
    if len(valid) == 0:
        return (1.0,), np.zeros(len(s_mm), dtype=np.float32)
    lo = round(max(math.floor(float(valid.min()) / sad / _SCALE_STEP), 1) * _SCALE_STEP, 4)
    hi = round(math.ceil(float(valid.max()) / sad / _SCALE_STEP) * _SCALE_STEP, 4)
    if hi - lo < 1e-3:
        return (lo,), np.zeros(len(s_mm), dtype=np.float32)
    blend = np.clip((s_mm / sad - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return (lo, hi), blend


def _box_corners(lo: NDArray, hi: NDArray) -> NDArray[np.float64]:
    return np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )


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
        self._density = np.ascontiguousarray(density, dtype=np.float32)
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
        self._density_corners = _box_corners(*sub.bounds_lps_mm())
        self._ray_mm = min(self.dose_spacing_mm, *grid.spacing_mm)
        self._step_mm = float(min(grid.spacing_mm))
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
            self._points_box = _box_corners(self._points.min(axis=0), self._points.max(axis=0))
        return self._points

    # ------------------------------------------------------------------ geometry
    def _check_beam(self, beam: Beam) -> None:
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

    def _T_bld(self, beam: Beam) -> NDArray[np.float64]:
        return T_bld_from_lps(
            beam.isocenter_lps_mm,
            beam.gantry_deg,
            beam.collimator_deg,
            beam.couch_deg,
            self.ct.grid.patient_position,
        )

    def point_geometry(self, beam: Beam, points_lps_mm: NDArray[np.float64]) -> PointGeometry:
        """Projection, radiological depth and depth weights of points (n, 3) LPS mm for a beam."""
        pts = np.ascontiguousarray(np.asarray(points_lps_mm, dtype=np.float64).reshape(-1, 3))
        T = self._T_bld(beam)
        sad = float(beam.sad_mm)
        if points_lps_mm is self._points and self._points_box is not None:
            corners = self._points_box
        else:
            corners = _box_corners(pts.min(axis=0), pts.max(axis=0))
        c_bld = corners @ T[:3, :3].T + T[:3, 3]
        s_c = sad - c_bld[:, 2]
        if np.any(s_c <= 1.0):
            raise DoseError(
                f"beam {beam.name!r}: dose points reach the source (SAD {sad} mm); "
                "the patient must lie between the source and beyond"
            )
        u_c = c_bld[:, 0] * sad / s_c
        v_c = c_bld[:, 1] * sad / s_c
        h = self._ray_mm
        u0 = float(u_c.min() - h)
        v0 = float(v_c.min() - h)
        nu = math.ceil((u_c.max() + h - u0) / h) + 1
        nv = math.ceil((v_c.max() + h - v0) / h) + 1
        d_bld = self._density_corners @ T[:3, :3].T + T[:3, 3]
        ds = self._step_mm
        s0 = float(max(min((sad - d_bld[:, 2]).min(), s_c.min()) - ds, 1.0))
        ns = math.ceil((s_c.max() + ds - s0) / ds) + 1
        M = (self.ct.grid.ijk_from_lps @ np.linalg.inv(T))[:3, :]
        grid = np.empty((nv, nu, ns), dtype=np.float32)
        radiological_depth_grid(
            self._density, np.ascontiguousarray(M), u0, h, nu, v0, h, nv, s0, ds, ns, sad, grid
        )
        n = len(pts)
        u = np.empty(n)
        v = np.empty(n)
        s = np.empty(n)
        d = np.empty(n)
        fan_coordinates_and_depth(
            pts, np.ascontiguousarray(T[:3, :]), sad, grid, u0, h, v0, h, s0, ds, u, v, s, d
        )
        isq = np.divide(sad * sad, s * s, out=np.zeros(n), where=s > 0)
        w = _depth_weights(self.model, d, isq)
        scales, blend = _scatter_planes(s, sad)
        return PointGeometry(
            u.astype(np.float32),
            v.astype(np.float32),
            np.ascontiguousarray(w, dtype=np.float32),
            d.astype(np.float32),
            isq.astype(np.float32),
            scales,
            blend,
        )

    def voxel_geometry(self, beam: Beam) -> PointGeometry:
        """:meth:`point_geometry` of the active dose voxels, cached per beam geometry."""
        key = (
            tuple(round(c, 6) for c in beam.isocenter_lps_mm),
            round(beam.gantry_deg, 6),
            round(beam.collimator_deg, 6),
            round(beam.couch_deg, 6),
            round(beam.sad_mm, 6),
        )
        hit = self._geometry_cache.get(key)
        if hit is not None:
            return hit
        geom = self.point_geometry(beam, self._voxel_points())
        self._geometry_cache.put(key, geom)
        return geom

    def _map_grids(
        self, beam: Beam, geom: PointGeometry, model: BeamModel | None = None
    ) -> tuple[MapGrid, MapGrid]:
        """(fine, coarse) fluence grids: field plus each kernel's reach, within reach of the points."""
        model = self.model if model is None else model
        flo, fhi = field_bounds_mm(beam)
        grids = []
        widest = max(k.shape[0] for k in model.map_kernels(geom.scales).fine)
        fine_reach = (widest // 2 + 2) * model.fine_mm
        for reach, h in ((fine_reach, model.fine_mm), (model.kernel_radius_mm, model.coarse_mm)):
            lo = np.array(flo) - reach
            hi = np.array(fhi) + reach
            if len(geom.u_mm):
                # a point takes fluence from up to the kernel reach around its projection
                lo = np.maximum(
                    lo, [float(geom.u_mm.min()) - reach, float(geom.v_mm.min()) - reach]
                )
                hi = np.minimum(
                    hi, [float(geom.u_mm.max()) + reach, float(geom.v_mm.max()) + reach]
                )
            hi = np.maximum(hi, lo)
            grids.append(MapGrid.covering(tuple(lo), tuple(hi), h))
        return grids[0], grids[1]

    # ------------------------------------------------------------------ dose
    def _dose_into(
        self,
        beam: Beam,
        geom: PointGeometry,
        sel: NDArray[np.int64],
        out: NDArray,
        model: BeamModel | None = None,
    ) -> None:
        """Add the beam's dose (Gy) at points ``sel`` of ``geom`` to ``out``.

        ``model`` overrides the engine's model (its weights must be in ``geom``).
        """
        if beam.mu == 0:
            return
        model = self.model if model is None else model
        fine_grid, coarse_grid = self._map_grids(beam, geom, model)
        fluences = (beam_fluence(beam, model, fine_grid), beam_fluence(beam, model, coarse_grid))
        supports = (support_of(fluences[0]), support_of(fluences[1]))
        conv = MapConvolver(
            model.map_kernels(geom.scales), fine_grid, coarse_grid, supports=supports
        )
        fine, coarse = conv.forward(*fluences)
        _gather(
            fine,
            coarse,
            fine_grid,
            coarse_grid,
            conv,
            geom,
            sel,
            beam.mu * model.gy_per_mu,
            out,
        )

    def beam_dose(self, beam: Beam) -> Volume:
        """Dose (Gy) of one beam for its MU on the dose grid; zero outside the body."""
        return self.compute([beam])

    def compute(self, beams: Sequence[Beam]) -> Volume:
        """Total dose (Gy) of the beams for their MU on the dose grid; zero outside the body."""
        beams = list(beams)
        if not beams:
            raise DoseError("compute needs at least one beam")
        for b in beams:
            self._check_beam(b)
        acc = np.zeros(self.n_active)
        sel = np.arange(self.n_active, dtype=np.int64)
        for b in beams:
            self._dose_into(b, self.voxel_geometry(b), sel, acc)
        arr = np.zeros(self.dose_grid.n_voxels)
        arr[self._active_flat] = acc
        return Volume(arr.reshape(self.dose_grid.shape), self.dose_grid, "Gy")

    def point_dose(self, beams: Sequence[Beam], points_lps_mm: ArrayLike) -> NDArray[np.float64]:
        """Total dose (Gy) of the beams at arbitrary points (n, 3) LPS mm (same model, no grid)."""
        pts = np.asarray(points_lps_mm, dtype=np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(pts)):
            raise DoseError("dose points must be finite LPS coordinates in mm")
        beams = list(beams)
        for b in beams:
            self._check_beam(b)
        out = np.zeros(len(pts))
        sel = np.arange(len(pts), dtype=np.int64)
        for b in beams:
            self._dose_into(b, self.point_geometry(b, pts), sel, out)
        return out

    def operator(self, beams: Sequence[Beam], beamlet_mm: float = 5.0) -> FluenceOperator:
        """The linear beamlet-weights -> dose operator for these beams (see :class:`FluenceOperator`)."""
        return FluenceOperator(self, beams, beamlet_mm)

    # ------------------------------------------------------------------ voxel subsets
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
        vox = np.asarray(voxels)
        if vox.dtype == np.bool_:
            if vox.shape != self.dose_grid.shape:
                raise DoseError(
                    f"voxel mask has shape {vox.shape}; it must have the dose-grid shape "
                    f"{self.dose_grid.shape}"
                )
            flat = np.flatnonzero(vox)
        else:
            if not np.issubdtype(vox.dtype, np.integer) or vox.ndim != 1:
                raise DoseError("voxels must be a boolean mask or a 1D array of flat indices")
            flat = vox.astype(np.int64)
            if len(flat) and (flat.min() < 0 or flat.max() >= self.dose_grid.n_voxels):
                raise DoseError(
                    f"voxel indices must lie in 0..{self.dose_grid.n_voxels - 1} (flat dose-grid index)"
                )
        pos = self._pos_of_flat[flat]
        where = np.flatnonzero(pos >= 0)
        return np.ascontiguousarray(pos[where]), where, len(flat)


class FluenceOperator:
    """Dose as a linear function of the beamlet weights of a set of beams.

    ``x`` (all beams' beamlet weights concatenated, each beam's map row-major
    [ny, nx] with rows along +Y_b) is the MU-weighted relative fluence: a
    beamlet of weight 1 delivers the fluence of one MU of open field over its
    square. ``forward(x)`` gives dose in Gy; a beam's own ``mu`` is ignored
    (use :meth:`beams_from_x` to turn weights back into beams with MU and a
    fluence map). ``adjoint(g)`` gives (d dose / d x)^T g, so the gradient of a
    scalar objective f(dose) is ``adjoint(df/ddose)``.

    Beams that carry a :class:`FluenceMap` keep its beamlet grid; the others get
    a map of ``beamlet_mm`` squares covering their jaws.

    The weights are the primary fluence only: ``forward`` leaves out the MLC leaf
    transmission of a sliding-window delivery, which depends on each row's
    beam-on time, the sum of its rising steps, and so is not linear in x. The
    final dose, :meth:`DoseEngine.compute` of :meth:`beams_from_x`, adds it
    (:func:`lattice_plan.dose.fluence.delivered_map`; about T = model.mlc_transmission
    times the row's beam-on time under closed beamlets), and ``Plan.normalised()``
    then rescales the plan to its prescription, absorbing the extra dose at the
    target. With ``mlc_transmission = 0`` the two agree to rounding.

    :meth:`on_voxels` gives the same operator on a fixed voxel subset, faster
    for the many calls of an optimisation.
    """

    def __init__(self, engine: DoseEngine, beams: Sequence[Beam], beamlet_mm: float = 5.0) -> None:
        if not (math.isfinite(beamlet_mm) and beamlet_mm > 0):
            raise DoseError(f"beamlet_mm must be positive, got {beamlet_mm}")
        beams = list(beams)
        if not beams:
            raise DoseError("the fluence operator needs at least one beam")
        self.engine = engine
        self.model = engine.model
        self.beams: list[Beam] = []
        self._parts: list[dict] = []
        sizes = []
        for b in beams:
            engine._check_beam(b)
            fmap = b.fluence if b.fluence is not None else FluenceMap.covering(b.jaws, beamlet_mm)
            beam = replace(b, fluence=fmap)
            geom = engine.voxel_geometry(beam)
            fine_grid, coarse_grid = engine._map_grids(beam, geom)
            paint = []
            supports = []
            for g in (fine_grid, coarse_grid):
                oy, ox = paint_matrices(fmap, g)
                paint.append((oy, ox, modulation_factor(beam, self.model, g)))
                supports.append(support_of(np.outer(oy.any(axis=0), ox.any(axis=0))))
            self.beams.append(beam)
            self._parts.append(
                {
                    "geom": geom,
                    "grids": (fine_grid, coarse_grid),
                    "paint": paint,
                    "kernels": self.model.map_kernels(geom.scales),
                    "supports": tuple(supports),
                    "shape": fmap.shape,
                }
            )
            sizes.append(fmap.values.size)
        self.sizes = np.array(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self._n_chunks = max(1, numba.get_num_threads())
        self._convolvers: dict[type, list[MapConvolver]] = {}

    @property
    def n_beamlets(self) -> int:
        return int(self.offsets[-1])

    def split(self, x: ArrayLike) -> list[NDArray[np.float64]]:
        """Per-beam beamlet maps [ny, nx] (views of x)."""
        x = self._check_x(x)
        return [
            x[self.offsets[n] : self.offsets[n + 1]].reshape(p["shape"])
            for n, p in enumerate(self._parts)
        ]

    def join(self, maps: Sequence[ArrayLike]) -> NDArray[np.float64]:
        """Concatenate per-beam maps into one weight vector (inverse of :meth:`split`)."""
        if len(maps) != len(self._parts):
            raise DoseError(f"expected {len(self._parts)} beam maps, got {len(maps)}")
        out = []
        for m, p in zip(maps, self._parts, strict=True):
            a = np.asarray(m, dtype=float)
            if a.shape != p["shape"]:
                raise DoseError(f"beam map has shape {a.shape}, expected {p['shape']}")
            out.append(a.ravel())
        return np.concatenate(out)

    def x_open(self) -> NDArray[np.float64]:
        """Weights of 1 MU of open fluence in every beamlet (or each beam's own map values)."""
        return self.join([b.fluence.values for b in self.beams])  # type: ignore[union-attr]

    def beams_from_x(self, x: ArrayLike) -> list[Beam]:
        """Beams whose MU is the largest weight and whose fluence map is x / MU (zero-weight beams get MU 0)."""
        out = []
        for b, m in zip(self.beams, self.split(x), strict=True):
            mu = float(m.max())
            fm = b.fluence.with_values(m / mu) if mu > 0 else b.fluence  # type: ignore[union-attr]
            out.append(replace(b, fluence=fm, mu=mu))
        return out

    def _check_x(self, x: ArrayLike) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_beamlets,):
            raise DoseError(f"x must have shape ({self.n_beamlets},), got {x.shape}")
        return x

    def forward(self, x: ArrayLike, voxels: ArrayLike | None = None) -> NDArray[np.float64]:
        """Dose (Gy) of weights x: the dose-grid array, or 1D over ``voxels`` (mask or flat indices)."""
        x = self._check_x(x)
        sel, where, n_out = self.engine.selection(voxels)
        geoms = [p["geom"] for p in self._parts]
        out = np.zeros(n_out)
        out[where] = self._forward(x, geoms, sel, np.float64)
        return out.reshape(self.engine.dose_grid.shape) if voxels is None else out

    def adjoint(self, g: ArrayLike, voxels: ArrayLike | None = None) -> NDArray[np.float64]:
        """(d dose / d x)^T g for g shaped like :meth:`forward`'s output with the same ``voxels``."""
        sel, where, n_out = self.engine.selection(voxels)
        g = np.asarray(g, dtype=np.float64)
        expected = self.engine.dose_grid.shape if voxels is None else (n_out,)
        if g.shape != expected:
            raise DoseError(f"g must have shape {expected}, got {g.shape}")
        g_sel = np.ascontiguousarray(g.reshape(-1)[where])
        geoms = [p["geom"] for p in self._parts]
        return self._adjoint(g_sel, geoms, sel, np.float64, self._n_chunks)

    def on_voxels(self, voxels: ArrayLike, single_precision: bool = False) -> VoxelOperator:
        """This operator on fixed voxels (mask or flat indices; see :class:`VoxelOperator`)."""
        return VoxelOperator(self, voxels, single_precision)

    def _convolvers_for(self, dtype: type) -> list[MapConvolver]:
        if dtype not in self._convolvers:
            self._convolvers[dtype] = [
                MapConvolver(p["kernels"], *p["grids"], dtype=dtype, supports=p["supports"])
                for p in self._parts
            ]
        return self._convolvers[dtype]

    def _forward(
        self, x: NDArray, geoms: Sequence[PointGeometry], sel: NDArray[np.int64], dtype: type
    ) -> NDArray[np.float64]:
        acc = np.zeros(len(sel))
        scale = float(self.model.gy_per_mu)
        convs = self._convolvers_for(dtype)
        for xb, part, conv, geom in zip(self.split(x), self._parts, convs, geoms, strict=True):
            if not np.any(xb):
                continue
            painted = [
                ((oy.T @ xb @ ox) * factor).astype(dtype, copy=False)
                for oy, ox, factor in part["paint"]
            ]
            fine, coarse = conv.forward(painted[0], painted[1])
            _gather(fine, coarse, *part["grids"], conv, geom, sel, scale, acc)
        return acc

    def _adjoint(
        self,
        g_sel: NDArray,
        geoms: Sequence[PointGeometry],
        sel: NDArray[np.int64],
        dtype: type,
        n_chunks: int,
    ) -> NDArray[np.float64]:
        scale = float(self.model.gy_per_mu)
        out = []
        convs = self._convolvers_for(dtype)
        for part, conv, geom in zip(self._parts, convs, geoms, strict=True):
            fine_grid, coarse_grid = part["grids"]
            fine_buf = np.zeros(
                (n_chunks, len(conv.fine_rows), fine_grid.ny, fine_grid.nx), dtype=dtype
            )
            coarse_buf = np.zeros(
                (n_chunks, len(conv.rows), coarse_grid.ny, coarse_grid.nx), dtype=dtype
            )
            fine_layout, coarse_layout = conv.layouts(fine_grid, coarse_grid)
            scatter_beam(
                g_sel,
                *fine_layout,
                *coarse_layout,
                *_point_args(geom),
                sel,
                scale,
                fine_buf,
                coarse_buf,
            )
            back = conv.adjoint(fine_buf.sum(axis=0), coarse_buf.sum(axis=0))
            xb = np.zeros(part["shape"])
            for (oy, ox, factor), b in zip(part["paint"], back, strict=True):
                xb += oy @ (b * factor) @ ox.T
            out.append(xb.ravel())
        return np.concatenate(out)


class VoxelOperator:
    """A :class:`FluenceOperator` on fixed dose-grid voxels: dose at those voxels only.

    The per-voxel geometry of the subset is copied into compact arrays once, so
    each call reads memory in order rather than picking the subset out of the
    whole grid's arrays. Its kernels run on one thread: for the tens of
    thousands of voxels of an optimisation, thread start-up and synchronisation
    cost more than they save (on 2 cores, 9 beams at 60 k voxels: 0.035 CPU-s
    per call on one thread, 0.07 on two, and no faster in wall time on a busy
    machine), and one thread makes the result independent of the thread count.

    ``single_precision``: the fluence maps, their convolutions and the
    adjoint's map buffers in float32 (the sums over voxels and beamlets stay
    float64), about 1.5x faster; the dose and the gradient then differ from the
    float64 operator's by about 1e-7 of their maximum (measured 5e-8 and 9e-8
    on issue 18's reference problem), far below what moves a plan. The final
    dose of a plan comes from the float64 engine.
    """

    def __init__(
        self, operator: FluenceOperator, voxels: ArrayLike, single_precision: bool = False
    ) -> None:
        sel, where, n_out = operator.engine.selection(voxels)
        self.operator = operator
        self._where = where
        self._n_out = n_out
        self._sel = np.arange(len(sel), dtype=np.int64)
        self._dtype = np.float32 if single_precision else np.float64
        self._geoms = [_compact(p["geom"], sel) for p in operator._parts]

    @property
    def n_beamlets(self) -> int:
        return self.operator.n_beamlets

    @property
    def n_voxels(self) -> int:
        return self._n_out

    def forward(self, x: ArrayLike) -> NDArray[np.float64]:
        """Dose (Gy) at the voxels, (n_voxels,)."""
        x = self.operator._check_x(x)
        out = np.zeros(self._n_out)
        with _one_thread():
            out[self._where] = self.operator._forward(x, self._geoms, self._sel, self._dtype)
        return out

    def adjoint(self, g: ArrayLike) -> NDArray[np.float64]:
        """(d dose / d x)^T g for g of shape (n_voxels,)."""
        g = np.asarray(g, dtype=np.float64)
        if g.shape != (self._n_out,):
            raise DoseError(f"g must have shape ({self._n_out},), got {g.shape}")
        g_sel = np.ascontiguousarray(g[self._where])
        with _one_thread():
            return self.operator._adjoint(g_sel, self._geoms, self._sel, self._dtype, 1)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Numba's parallel kernels on one thread inside the block (the caller's setting restored)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _compact(geom: PointGeometry, sel: NDArray[np.int64]) -> PointGeometry:
    """The geometry of points ``sel`` only, as contiguous arrays."""
    return replace(
        geom,
        u_mm=np.ascontiguousarray(geom.u_mm[sel]),
        v_mm=np.ascontiguousarray(geom.v_mm[sel]),
        weights=np.ascontiguousarray(geom.weights[:, sel]),
        depth_mm=np.ascontiguousarray(geom.depth_mm[sel]),
        inverse_square=np.ascontiguousarray(geom.inverse_square[sel]),
        blend=np.ascontiguousarray(geom.blend[sel]),
    )


def _gather(
    fine: NDArray,
    coarse: NDArray,
    fine_grid: MapGrid,
    coarse_grid: MapGrid,
    conv: MapConvolver,
    geom: PointGeometry,
    sel: NDArray[np.int64],
    scale: float,
    out: NDArray,
) -> None:
    fine_layout, coarse_layout = conv.layouts(fine_grid, coarse_grid)
    gather_beam(
        fine, *fine_layout, coarse, *coarse_layout, *_point_args(geom), sel, float(scale), out
    )


def _point_args(geom: PointGeometry) -> tuple:
    """The per-point arrays of the superposition kernels: projections, blend, depth weights."""
    return geom.u_mm, geom.v_mm, geom.blend, geom.weights
