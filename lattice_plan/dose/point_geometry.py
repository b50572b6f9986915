"""Per-beam geometry of dose points: fan coordinates, radiological depth and depth weights.

For one beam, each point gets its projection (u, v) onto the isocentre plane
along its divergent ray, its distance s from the source along the axis, its
radiological depth (density sampled on a beam-aligned fan grid and summed
along the rays, :mod:`lattice_plan.kernels.raytrace`, O(points)) and the
depth functions of the beam model at that depth times the inverse square
(SAD / s)^2. :class:`DensityTracer` holds the density of one CT and computes
this :class:`PointGeometry`; the dose engine caches it per beam geometry.
The rays are traced in the beam's frame without the collimator rotation,
which only rotates (u, v): beams that differ only in collimator angle share
everything else (:meth:`DensityTracer.rotated`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DoseError
from lattice_plan.kernels.raytrace import (
    depth_weights,
    fan_geometry,
    fan_uv,
    radiological_depth_grid,
    source_distance_range,
)


def geometry_key(beam: Beam) -> tuple:
    """What a beam's point geometry depends on: isocentre, gantry, collimator, couch, SAD."""
    return (*ray_key(beam), round(beam.collimator_deg, 6))


def ray_key(beam: Beam) -> tuple:
    """What a beam's rays depend on (the geometry but the collimator angle, which only
    rotates the points' fan coordinates): isocentre, gantry, couch, SAD."""
    return (
        tuple(round(c, 6) for c in beam.isocenter_lps_mm),
        round(beam.gantry_deg, 6),
        round(beam.couch_deg, 6),
        round(beam.sad_mm, 6),
    )


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
        w = tabulated_depth_weights(model, self.depth_mm.astype(np.float64), self.inverse_square)
        return replace(self, weights=w)

    def subset(self, sel: NDArray[np.int64]) -> PointGeometry:
        """The geometry of points ``sel`` only, as contiguous arrays."""
        return replace(
            self,
            u_mm=np.ascontiguousarray(self.u_mm[sel]),
            v_mm=np.ascontiguousarray(self.v_mm[sel]),
            weights=np.ascontiguousarray(self.weights[:, sel]),
            depth_mm=np.ascontiguousarray(self.depth_mm[sel]),
            inverse_square=np.ascontiguousarray(self.inverse_square[sel]),
            blend=np.ascontiguousarray(self.blend[sel]),
        )

    def kernel_args(self) -> tuple:
        """The per-point arrays of the superposition kernels: projections, blend, depth weights."""
        return self.u_mm, self.v_mm, self.blend, self.weights


DEPTH_TABLE_STEP_MM = 0.1


def depth_table(model: BeamModel, max_depth_mm: float) -> NDArray[np.float64]:
    """The model's depth functions sampled every DEPTH_TABLE_STEP_MM from 0 past ``max_depth_mm``.

    Linear interpolation in it has a relative error below 1e-4 for the model's
    exponentials, and is several times faster than evaluating them at every point.
    """
    table_d = np.arange(0.0, max_depth_mm + 2 * DEPTH_TABLE_STEP_MM, DEPTH_TABLE_STEP_MM)
    return np.ascontiguousarray(model.depth_functions(table_d))


def tabulated_depth_weights(
    model: BeamModel, depth_mm: NDArray, inverse_square: NDArray
) -> NDArray[np.float32]:
    """Depth functions at the radiological depths times the inverse square, (n_rows, n) float32
    (interpolated in :func:`depth_table`)."""
    d = np.ascontiguousarray(depth_mm, dtype=np.float64)
    table = depth_table(model, float(d.max()) if d.size else 0.0)
    out = np.empty((len(table), d.size), dtype=np.float32)
    isq = np.ascontiguousarray(inverse_square, dtype=np.float64)
    depth_weights(table, DEPTH_TABLE_STEP_MM, d, isq, out)
    return out


SCALE_STEP = 0.02  # scatter-kernel distances snap outward to this grid (as s / SAD)


def scatter_scales(s_min_mm: float, s_max_mm: float, sad: float) -> tuple[float, ...]:
    """Two source distances (as s / SAD) spanning s_min..s_max (one when they agree).

    The distances snap outward to multiples of SCALE_STEP, so that the beams of a plan
    share their kernels (built once per pair of distances, see BeamModel.map_kernels).
    No points in front of the source (s_min > s_max): (1.0,).
    """
    if s_min_mm > s_max_mm:
        return (1.0,)
    lo = round(max(math.floor(s_min_mm / sad / SCALE_STEP), 1) * SCALE_STEP, 4)
    hi = round(math.ceil(s_max_mm / sad / SCALE_STEP) * SCALE_STEP, 4)
    if hi - lo < 1e-3:
        return (lo,)
    return (lo, hi)


def scatter_planes(s_mm: NDArray[np.float64], sad: float) -> tuple[tuple[float, ...], NDArray]:
    """:func:`scatter_scales` of the points at distances ``s_mm`` (0: at or behind the source)
    and each point's place between the two (0 near, 1 far; 0 with one distance)."""
    valid = s_mm[s_mm > 0]
    if len(valid) == 0:
        return (1.0,), np.zeros(len(s_mm), dtype=np.float32)
    scales = scatter_scales(float(valid.min()), float(valid.max()), sad)
    if len(scales) == 1:
        return scales, np.zeros(len(s_mm), dtype=np.float32)
    lo, hi = scales
    return scales, np.clip((s_mm / sad - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def box_corners(lo: NDArray, hi: NDArray) -> NDArray[np.float64]:
    """The 8 corners (8, 3) of the axis-aligned box lo..hi."""
    return np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )


@dataclass(frozen=True, eq=False)
class DensityTracer:
    """Radiological depth through one CT's density along a beam's divergent rays.

    density: [k, j, i] float32 relative electron density (zero outside the body).
    ijk_from_lps: 4x4 affine of the density grid.
    corners_lps_mm: (8, 3) corners of the density's box (where rays may start).
    ray_mm: pitch of the fan grid across the rays at the isocentre plane.
    step_mm: pitch along the rays.
    """

    density: NDArray[np.float32]
    ijk_from_lps: NDArray[np.float64]
    corners_lps_mm: NDArray[np.float64]
    ray_mm: float
    step_mm: float

    def geometry(
        self,
        gantry_from_lps: NDArray[np.float64],
        rot: NDArray[np.float64],
        sad_mm: float,
        points_lps_mm: NDArray[np.float64],
        model: BeamModel,
        beam_name: str,
        points_box: NDArray[np.float64] | None = None,
    ) -> PointGeometry:
        """:class:`PointGeometry` of points (n, 3) LPS mm for a beam.

        ``gantry_from_lps``: 4x4 affine to the beam's frame without collimator
        rotation, where the rays are traced (so the depths do not depend on the
        collimator angle); ``rot``: 2x2 rotation from its (x, y) to the
        beam-limiting device's. ``points_box``: the corners of the points'
        bounding box when known (saves a pass).
        """
        pts = np.ascontiguousarray(np.asarray(points_lps_mm, dtype=np.float64).reshape(-1, 3))
        T = gantry_from_lps
        sad = float(sad_mm)
        corners = (
            points_box if points_box is not None else box_corners(pts.min(axis=0), pts.max(axis=0))
        )
        c_bld = corners @ T[:3, :3].T + T[:3, 3]
        s_c = sad - c_bld[:, 2]
        if np.any(s_c <= 1.0):
            raise DoseError(
                f"beam {beam_name!r}: dose points reach the source (SAD {sad} mm); "
                "the patient must lie between the source and beyond"
            )
        u_c = c_bld[:, 0] * sad / s_c
        v_c = c_bld[:, 1] * sad / s_c
        h = self.ray_mm
        u0 = float(u_c.min() - h)
        v0 = float(v_c.min() - h)
        nu = math.ceil((u_c.max() + h - u0) / h) + 1
        nv = math.ceil((v_c.max() + h - v0) / h) + 1
        d_bld = self.corners_lps_mm @ T[:3, :3].T + T[:3, 3]
        ds = self.step_mm
        s0 = float(max(min((sad - d_bld[:, 2]).min(), s_c.min()) - ds, 1.0))
        ns = math.ceil((s_c.max() + ds - s0) / ds) + 1
        M = (self.ijk_from_lps @ np.linalg.inv(T))[:3, :]
        grid = np.empty((nv, nu, ns), dtype=np.float32)
        radiological_depth_grid(
            self.density, np.ascontiguousarray(M), u0, h, nu, v0, h, nv, s0, ds, ns, sad, grid
        )
        frame = np.ascontiguousarray(T[:3, :])
        scales = scatter_scales(*source_distance_range(pts, frame, sad), sad)
        span = scales[1] - scales[0] if len(scales) == 2 else 0.0
        # every point's depth interpolates the grid, so the grid's maximum bounds the table
        table = depth_table(model, float(grid.max()) if grid.size else 0.0)
        n = len(pts)
        u, v, d, isq, blend = (np.empty(n, dtype=np.float32) for _ in range(5))
        w = np.empty((len(table), n), dtype=np.float32)
        fan_geometry(
            pts, frame, sad, np.ascontiguousarray(rot, dtype=np.float64), grid,
            u0, h, v0, h, s0, ds, table, DEPTH_TABLE_STEP_MM, scales[0], span,
            u, v, d, isq, blend, w,
        )  # fmt: skip
        return PointGeometry(u, v, w, d, isq, scales, blend)

    @staticmethod
    def rotated(
        geom: PointGeometry,
        gantry_from_lps: NDArray[np.float64],
        rot: NDArray[np.float64],
        sad_mm: float,
        points_lps_mm: NDArray[np.float64],
    ) -> PointGeometry:
        """``geom`` (of these points, for this gantry frame) at another collimator angle.

        The depths, weights and blend are shared (they do not depend on the
        collimator); (u, v) are computed as :meth:`geometry` computes them, so the
        result equals :meth:`geometry` for that angle bit for bit.
        """
        pts = np.ascontiguousarray(np.asarray(points_lps_mm, dtype=np.float64).reshape(-1, 3))
        u = np.empty(len(pts), dtype=np.float32)
        v = np.empty(len(pts), dtype=np.float32)
        frame = np.ascontiguousarray(gantry_from_lps[:3, :])
        rot = np.ascontiguousarray(rot, dtype=np.float64)
        fan_uv(pts, frame, float(sad_mm), rot, u, v)
        return replace(geom, u_mm=u, v_mm=v)
