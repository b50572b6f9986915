"""Lattice vertex placement: the offset (and rotation) search for the most vertices.

Vertices are spheres of one diameter whose centres lie on a lattice (HCP, FCC,
simple cubic or alternating = body-centred cubic) anchored at the GTV centroid.
The lattice offset inside its periodic cell (and optionally a rotation about the
patient z axis) is searched exhaustively on a regular grid; the placement with
the most vertices wins, ties going to the smallest mean distance of the
vertices to the GTV centroid, then to the first in search order (deterministic).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.lattice.constraints import VertexConstraints, check_gtv_and_oars
from lattice_plan.geometry.lattice.evaluation import evaluate_vertices
from lattice_plan.geometry.lattice.parameters import DIAMETER_RANGE_MM, LatticeParameters
from lattice_plan.geometry.lattice.pattern import LatticeCell, lattice_cell, points_in_ball
from lattice_plan.geometry.lattice.result import LatticeResult, LatticeSearch
from lattice_plan.geometry.structure import Structure, StructureSet

logger = logging.getLogger(__name__)

_CHUNK_POINTS = 1_500_000
_MEAN_TIE_DECIMALS = 6


def _rot_z(angle_deg: float) -> NDArray[np.float64]:
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _select(
    feasible: NDArray[np.bool_],
    dist: NDArray[np.float64],
    pts: NDArray[np.float64],
    params: LatticeParameters,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per row (one offset): count of kept vertices and their mean distance to the centroid."""
    cap = params.max_vertices
    d = np.where(feasible, dist, np.inf)
    if params.z_rule_window_mm is None:
        n_ok = feasible.sum(axis=1)
        counts = n_ok if cap is None else np.minimum(n_ok, cap)
        d_sorted = np.sort(d, axis=1)
        kmax = int(counts.max()) if len(counts) else 0
        csum = np.cumsum(np.where(np.isfinite(d_sorted[:, :kmax]), d_sorted[:, :kmax], 0), axis=1)
        means = np.full(len(counts), np.inf)
        has = counts > 0
        means[has] = csum[has, counts[has] - 1] / counts[has]
        return counts, means
    counts = np.zeros(len(d), dtype=np.int64)
    means = np.full(len(d), np.inf)
    for row in range(len(d)):
        keep = _greedy_rule(pts[row], d[row], params)
        counts[row] = len(keep)
        if keep:
            means[row] = float(d[row, keep].mean())
    return counts, means


def _greedy_rule(
    pts: NDArray[np.float64], d: NDArray[np.float64], params: LatticeParameters
) -> list[int]:
    """Indices kept by the z-separation rule and the cap, most central first."""
    order = [int(n) for n in np.argsort(d, kind="stable") if np.isfinite(d[n])]
    keep: list[int] = []
    win, lat = params.z_rule_window_mm, params.z_rule_lateral_mm
    for n in order:
        if params.max_vertices is not None and len(keep) >= params.max_vertices:
            break
        if keep:
            k = np.asarray(keep)
            dz = np.abs(pts[k, 2] - pts[n, 2])
            dl = np.hypot(pts[k, 0] - pts[n, 0], pts[k, 1] - pts[n, 1])
            if np.any((dz < win) & (dl < lat)):
                continue
        keep.append(n)
    return keep


def _offset_grid(cell: LatticeCell, step_mm: float) -> tuple[NDArray[np.float64], tuple, tuple]:
    counts = tuple(max(1, math.ceil(L / step_mm - 1e-9)) for L in cell.domain_mm)
    steps = tuple(L / n for L, n in zip(cell.domain_mm, counts, strict=True))
    axes = [np.arange(n) * s for n, s in zip(counts, steps, strict=True)]
    ox, oy, oz = np.meshgrid(*axes, indexing="ij")
    return np.column_stack([ox.ravel(), oy.ravel(), oz.ravel()]), counts, steps


def place_vertices(
    gtv: Structure,
    oars: Sequence[Structure] = (),
    params: LatticeParameters | None = None,
) -> LatticeResult:
    """Place lattice vertices in ``gtv`` keeping clear of ``oars`` (see LatticeParameters).

    Raises GeometryError when not one vertex fits; the message gives the largest
    sphere that would.
    """
    params = params or LatticeParameters()
    oars = check_gtv_and_oars(gtv, oars)
    cons = VertexConstraints(gtv, oars, params)
    cell = lattice_cell(params)
    centroid = gtv.centroid_lps_mm()
    anchor = centroid
    offsets, counts, steps = _offset_grid(cell, params.offset_step_mm)
    angles = (
        (0.0,)
        if params.rotation_step_deg is None
        else tuple(
            float(a)
            for a in np.arange(0.0, cell.rotation_period_deg - 1e-9, params.rotation_step_deg)
        )
    )
    # Lattice points that can land on a candidate cell for some offset and rotation.
    k, j, i = np.nonzero(cons.maybe)
    if len(k) == 0:
        raise _no_fit_error(gtv, cons, params)
    cand = cons.crop.points_lps_mm(np.stack([i, j, k], axis=-1).astype(float))
    reach = float(np.linalg.norm(cand - anchor, axis=1).max())
    reach += float(np.linalg.norm(cell.domain_mm)) + float(np.linalg.norm(cons.crop.spacing_mm))
    base = points_in_ball(cell.a1, cell.a2, cell.layer_mm, cell.odd_shift, reach)

    best_key: tuple | None = None
    best = None
    unshifted = 0
    n_best = 0
    tol = float(np.linalg.norm(cons.crop.spacing_mm))
    domain = np.asarray(cell.domain_mm)
    for ai, angle in enumerate(angles):
        R = _rot_z(angle)
        # Keep the lattice points whose cell of offsets meets the candidate box (lattice frame).
        q = (cand - anchor) @ R
        near = np.all(base >= q.min(axis=0) - domain - tol, axis=1) & np.all(
            base <= q.max(axis=0) + tol, axis=1
        )
        base_a = base[near]
        chunk = max(1, _CHUNK_POINTS // max(1, len(base_a)))
        for start in range(0, len(offsets), chunk):
            off = offsets[start : start + chunk]
            lat = base_a[None, :, :] + off[:, None, :]
            pts = anchor + lat @ R.T
            feas = cons.feasible(pts.reshape(-1, 3)).reshape(len(off), len(base_a))
            dist = np.linalg.norm(pts - centroid, axis=-1)
            cnt, mean = _select(feas, dist, pts, params)
            if ai == 0 and start == 0:
                unshifted = int(cnt[0])
            mean_r = np.round(mean, _MEAN_TIE_DECIMALS)
            top = int(cnt.max())
            if best_key is None or top > best_key[0]:
                n_best = 0
            if best_key is None or top >= best_key[0]:
                rows = np.nonzero(cnt == top)[0]
                n_best += len(rows)
                r = int(rows[np.argmin(mean_r[rows])])  # argmin takes the first on ties
                key = (top, -float(mean_r[r]))
                if best_key is None or key > best_key:
                    best_key = key
                    best = (ai, start + r, float(mean[r]))
    assert best is not None
    ai, oi, mean_best = best
    if best_key[0] == 0:
        raise _no_fit_error(gtv, cons, params)
    R = _rot_z(angles[ai])
    pts = anchor + (base + offsets[oi]) @ R.T
    feas = cons.feasible(pts)
    dist = np.linalg.norm(pts - centroid, axis=-1)
    if params.z_rule_window_mm is None:
        order = [int(n) for n in np.argsort(np.where(feas, dist, np.inf), kind="stable")]
        keep = order[
            : int(feas.sum())
            if params.max_vertices is None
            else min(int(feas.sum()), params.max_vertices)
        ]
    else:
        keep = _greedy_rule(pts, np.where(feas, dist, np.inf), params)
    search = LatticeSearch(
        pattern=params.pattern,
        anchor_lps_mm=tuple(float(v) for v in anchor),
        domain_mm=cell.domain_mm,
        offset_counts=counts,
        offset_steps_mm=steps,
        angles_deg=angles,
        n_evaluated=len(offsets) * len(angles),
        unshifted_count=unshifted,
        best_count=int(best_key[0]),
        best_offset_mm=tuple(float(v) for v in offsets[oi]),
        best_angle_deg=angles[ai],
        n_best_count=n_best,
        mean_distance_to_centroid_mm=mean_best,
    )
    result = evaluate_vertices(pts[keep], params.diameter_mm, gtv, oars, params, search)
    logger.info(
        "placed %d %s vertices in %s (%d offsets x %d angles searched; unshifted lattice: %d)",
        result.n_vertices,
        params.pattern.value,
        gtv.name,
        len(offsets),
        len(angles),
        unshifted,
    )
    return result


def _no_fit_error(
    gtv: Structure, cons: VertexConstraints, params: LatticeParameters
) -> GeometryError:
    largest, where = cons.largest_fitting_sphere()
    hint = (
        f"the largest sphere that would fit has diameter {largest:.1f} mm (centre LPS "
        f"{np.round(where, 1).tolist()} mm)"
        if largest > 0
        else "no sphere fits at all"
    )
    extra = (
        f"; a {params.diameter_mm:g} mm sphere fits there but no lattice point landed on it: "
        "reduce offset_step_mm"
        if largest >= params.diameter_mm
        else ""
    )
    return GeometryError(
        f"no vertex of diameter {params.diameter_mm:g} mm fits in {gtv.name!r} "
        f"({gtv.volume_cc:.1f} cc) with a {params.gtv_margin_mm:g} mm GTV margin and "
        f"{params.oar_clearance_mm:g} mm OAR clearance: {hint}{extra}; use a smaller diameter "
        f"(allowed {DIAMETER_RANGE_MM[0]:g}-{DIAMETER_RANGE_MM[1]:g} mm) or smaller margins"
    )


def place_vertices_in(
    structures: StructureSet,
    gtv: str = "GTV",
    oars: Sequence[str] = (),
    params: LatticeParameters | None = None,
) -> LatticeResult:
    """:func:`place_vertices` with the GTV and OARs named in ``structures`` (case-insensitive)."""
    return place_vertices(structures.get(gtv), [structures.get(n) for n in oars], params)
