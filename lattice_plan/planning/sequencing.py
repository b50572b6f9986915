"""Leaf sequencing of optimised fluence maps: sliding window (this module) and step-and-shoot.

Every leaf pair delivers one row of the map: the overlap-weighted mean of
the beamlet rows over the part of the leaf inside the jaws (5 mm beamlets and
5/10 mm leaves need not line up), a staircase I(x) in MU over the beamlet
columns.

Sliding window (Spirou and Chui, Med Phys 21 (1994) 1031; Svensson, Kallman
and Brahme, Phys Med Biol 39 (1994) 37): both leaves sweep along +X_b; a point
is open from the meterset m_A(x) at which the leading (X2) tip passes it until
the trailing (X1) tip arrives, m_B(x), so I(x) = m_B(x) - m_A(x). With
v = max leaf speed / max dose rate (mm per MU) the leading leaf runs at full
speed and waits at each fall of I, the trailing one at full speed and waits at
each rise: m_A(x) = (x - X0)/v + falls before x, m_B = m_A + I. The minimum
gap G (nominal gap + DLG, effective tips) is kept by m_B(x) >= m_A(x + G), the
smallest such m_B being taken, which delivers max(I, G/v + ...) where I is
below about G/v MU. A row needs (X1 - X0)/v + sum of the rises of I (from 0)
(+ max(0, G/v - I_last)) MU, the minimum for a unidirectional sweep (Spirou
and Chui 1994, eq. 9; Stein et al., Med Phys 21 (1994) 1055); the beam's MU is
the largest row's, the other rows wait behind the X2 jaw. Every kink of every
leaf is a control point, so the control points' linear interpolation is the
exact trajectory. Leaf tips are DLG-compensated (nominal = effective -+ DLG/2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.dose.delivery import delivery_time_s
from lattice_plan.dose.machine import Machine
from lattice_plan.errors import PlanningError

PARK_MARGIN_MM = 0.5


@dataclass(frozen=True)
class LeafRows:
    """A beam's map resampled to leaf pairs: MU staircases over columns inside the jaws."""

    intensity_mu: NDArray[np.float64]  # (n_pairs, n_cols) MU
    col_edges_mm: NDArray[np.float64]  # (n_cols + 1,) along X_b
    jaws: Jaws  # X: the columns' extent; Y: the rows' extent (the map's nonzero part)
    active: NDArray[np.bool_]  # (n_pairs,) pairs that deliver anything


@dataclass(frozen=True)
class SequencingReport:
    """What a sequenced beam costs: MU, control points/segments, delivery time, fastest leaf."""

    beam: str
    method: str
    mu: float
    n_control_points: int
    n_segments: int
    delivery_time_s: float
    max_leaf_speed_mm_s: float
    dropped_mu: float = 0.0  # step-and-shoot: MU of segments dropped below the minimum area


def _overlap(lo: NDArray, hi: NDArray, a: NDArray, b: NDArray) -> NDArray[np.float64]:
    """Length of [lo_i, hi_i] inside [a_j, b_j]: (n_i, n_j)."""
    return np.clip(
        np.minimum(hi[:, None], b[None, :]) - np.maximum(lo[:, None], a[None, :]), 0, None
    )


def leaf_rows(beam: Beam, machine: Machine) -> LeafRows:
    """The beam's MU map (mu x values) as one staircase per leaf pair, clipped to the jaws."""
    f = beam.fluence
    if f is None:
        raise PlanningError(f"beam {beam.name!r} has no fluence map to sequence")
    intensity = beam.mu * f.values
    b = f.beamlet_mm
    j = beam.jaws
    xc, yc = f.x_centers_mm(), f.y_centers_mm()
    x_lo, x_hi = np.clip(xc - b / 2, j.x1_mm, j.x2_mm), np.clip(xc + b / 2, j.x1_mm, j.x2_mm)
    y_lo, y_hi = np.clip(yc - b / 2, j.y1_mm, j.y2_mm), np.clip(yc + b / 2, j.y1_mm, j.y2_mm)
    cols = np.flatnonzero((x_hi > x_lo) & np.any(intensity > 0, axis=0))
    rows = np.flatnonzero((y_hi > y_lo) & np.any(intensity > 0, axis=1))
    if len(cols) == 0 or len(rows) == 0:
        raise PlanningError(f"beam {beam.name!r}: the fluence map is zero inside the jaws")
    c0, c1 = cols[0], cols[-1] + 1
    r0, r1 = rows[0], rows[-1] + 1
    edges_x = np.concatenate([x_lo[c0:c1], [x_hi[c1 - 1]]])
    y0, y1 = float(y_lo[r0]), float(y_hi[r1 - 1])
    e = machine.mlc.leaf_edges_mm
    if y0 < e[0] - 1e-9 or y1 > e[-1] + 1e-9:
        raise PlanningError(
            f"beam {beam.name!r}: the map reaches Y {y0:.1f}..{y1:.1f} mm beyond the MLC "
            f"({e[0]:.1f}..{e[-1]:.1f} mm); narrow the Y jaws or use another machine"
        )
    p_lo, p_hi = np.clip(e[:-1], y0, y1), np.clip(e[1:], y0, y1)
    w = _overlap(p_lo, p_hi, y_lo[r0:r1], y_hi[r0:r1])
    inside = p_hi - p_lo
    w = np.divide(w, inside[:, None], out=np.zeros_like(w), where=inside[:, None] > 0)
    rows_mu = w @ intensity[r0:r1, c0:c1]
    jaws = Jaws(float(edges_x[0]), float(edges_x[-1]), y0, y1)
    return LeafRows(rows_mu, edges_x, jaws, np.any(rows_mu > 0, axis=1))


def _staircase(edges: NDArray, jumps: NDArray, x: NDArray) -> NDArray[np.float64]:
    """sum of jumps[i] for edges[i] <= x (right-continuous staircase)."""
    c = np.concatenate([[0.0], np.cumsum(jumps)])
    return c[np.searchsorted(edges, x, side="right")]


def _row_vertices(
    values: NDArray, edges: NDArray, v: float, gap: float
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """(x_A, m_A, x_B, m_B): vertices of the leading and trailing effective-tip trajectories."""
    x0, x1 = edges[0], edges[-1]
    padded = np.concatenate([[0.0], values, [0.0]])
    steps = np.diff(padded)  # at edges[0..n]
    rises = np.maximum(steps, 0.0)
    falls_inner = np.maximum(-steps[1:-1], 0.0)  # interior edges only
    inner = edges[1:-1]

    def s_a(x: NDArray) -> NDArray:
        return _staircase(inner, falls_inner, x)

    def s_b(x: NDArray) -> NDArray:
        r = _staircase(edges[:-1], rises[:-1], x)  # no rise counted at X1 (I = 0 beyond)
        # s_a(x + gap), with its jumps placed at inner - gap so the knots below match exactly
        return np.maximum(r, gap / v + _staircase(inner - gap, falls_inner, x))

    def vertices(knots: NDArray, stair, start: float, stop: float) -> tuple[NDArray, NDArray]:
        k = np.unique(np.clip(knots, start, stop))
        k = k[(k > start) & (k < stop)]
        before = stair(np.nextafter(k, -np.inf))
        after = stair(k)
        xs = np.concatenate([[start], np.repeat(k, 2), [stop]])
        ss = np.concatenate(
            [
                [stair(np.array([start]))[0]],
                np.ravel(np.column_stack([before, after])),
                [stair(np.array([stop]))[0]],
            ]
        )
        ms = (xs - x0) / v + ss
        keep = np.concatenate([[True], (np.diff(xs) > 0) | (np.diff(ms) > 0)])
        return xs[keep], ms[keep]

    xa, ma = vertices(inner, s_a, x0, x1 + gap)
    xb, mb = vertices(np.concatenate([edges, edges - gap, inner - gap]), s_b, x0 - gap, x1)
    return xa, ma, xb, mb


def sliding_window(beam: Beam, machine: Machine) -> tuple[ControlPointBeam, SequencingReport]:
    """Sequence a fluence-map beam as a unidirectional sliding window at the maximum leaf speed."""
    rows = leaf_rows(beam, machine)
    v = machine.max_leaf_speed_mm_s / machine.max_mu_per_s  # mm per MU
    half = machine.dosimetric_leaf_gap_mm / 2
    gap = machine.min_leaf_gap_mm + machine.dosimetric_leaf_gap_mm  # effective tips
    edges = rows.col_edges_mm
    traj = {}
    for p in np.flatnonzero(rows.active):
        traj[p] = _row_vertices(rows.intensity_mu[p], edges, v, gap)
    mu = max(max(t[1][-1], t[3][-1]) for t in traj.values())
    m = np.unique(np.concatenate([np.concatenate([t[1], t[3]]) for t in traj.values()] + [[mu]]))
    m = m[np.concatenate([[True], np.diff(m) > 1e-9 * mu])]
    n_pairs = machine.mlc.n_pairs
    park = rows.jaws.x1_mm - half - PARK_MARGIN_MM
    x1 = np.full((len(m), n_pairs), park)
    x2 = np.full((len(m), n_pairs), park)
    for p, (xa, ma, xb, mb) in traj.items():
        x2[:, p] = np.interp(m, ma, xa) - half
        x1[:, p] = np.interp(m, mb, xb) + half
    cp_beam = cp_beam_from_apertures(beam, machine, rows.jaws, m / mu, x1, x2, mu, "DYNAMIC")
    dt = np.diff(m) / machine.max_mu_per_s
    speed = float(np.max(np.abs(np.diff(np.concatenate([x1, x2], axis=1), axis=0)) / dt[:, None]))
    report = SequencingReport(
        beam.name, "sliding_window", float(mu), len(m), 0, delivery_time_s(cp_beam, machine), speed
    )
    return cp_beam, report


def cp_beam_from_apertures(
    beam: Beam,
    machine: Machine,
    jaws: Jaws,
    weights: NDArray,
    x1: NDArray,
    x2: NDArray,
    mu: float,
    beam_type: str,
) -> ControlPointBeam:
    """A ControlPointBeam at the beam's angles with per-control-point tips x1, x2 (n_cp, n_pairs)."""
    weights = np.clip(weights, 0.0, 1.0)
    weights[0], weights[-1] = 0.0, 1.0
    cps = tuple(
        ControlPoint(
            float(w), beam.gantry_deg, beam.collimator_deg, beam.couch_deg, jaws, x1[i], x2[i]
        )
        for i, w in enumerate(weights)
    )
    return ControlPointBeam(
        name=beam.name,
        isocenter_lps_mm=beam.isocenter_lps_mm,
        mu=float(mu),
        control_points=cps,
        leaf_edges_mm=machine.mlc.leaf_edges_mm,
        beam_type=beam_type,
        energy=beam.energy,
        sad_mm=beam.sad_mm,
    )
