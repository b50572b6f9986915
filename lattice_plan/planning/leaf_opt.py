"""Direct aperture optimisation of VMAT leaf positions against the plan's objectives.

After arc sequencing and the interval-MU optimisation
(:mod:`lattice_plan.planning.aperture_opt`) the leaf tips of every control
point are moved along the gradient of the objectives, the interval MU held.

Model (the sector-centre approximation of :mod:`lattice_plan.planning.aperture_opt`):
interval j of sector k with MU m_j adds to beamlet (r, c) of sector k's map
``m_j (1 - T_leaf) sum_p A[p, r] O_j[p, c]`` of open fluence, where A[p, r] is
the fraction of beamlet row r covered by leaf pair p (inside the Y jaws) and
O_j[p, c] the time mean, over the interval, of the fraction of beamlet column c
between the pair's effective tips (DLG applied) and inside the X jaws; tips
and jaws move linearly in meterset between the control points (midpoint rule
over ``N_TIME_SAMPLES``). The beamlet weights are the exact interval fluence
matrix's (transmission, rounded ends and tongue-and-groove included) plus the
model's change of open fluence since the start, so the model is exact where
the optimisation starts. The derivative of the objective with respect to a
tip is the engine's adjoint of the objective's dose gradient (per beamlet)
summed over the beamlets the tip's edge crosses, weighted by the interval's
MU and by how much of the interval the tip spends at each point.

Steps are projected onto the machine: per leaf pair and interval, centre c and
half-gap h of the pair move by |dc| + |dh| <= max leaf speed x t (so that each
tip keeps its speed) with t the interval's time at the held MU (at the maximum
gantry speed, or the dose rate divided by the safety factor of the MU bounds,
:data:`lattice_plan.planning.arc_sequencing.MU_BOUND_SAFETY`), the nominal gap
stays at least the machine's minimum gap and the tips within its jaw limit.
A step is kept only when the model objective decreases (step halved
otherwise, grown after a success). Jaws are not changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.machine import Machine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.arc_sequencing import MU_BOUND_SAFETY, ArcApertures
from lattice_plan.planning.optimizer import (
    DoseOperator,
    FluenceLayout,
    FluenceObjective,
    ObjectiveTerm,
)

log = logging.getLogger(__name__)

N_TIME_SAMPLES = 6
"""Midpoint samples of each control-point interval in the open-fluence model."""
INITIAL_STEP_MM = 2.0
"""Largest tip move of the first trial step (mm)."""


@dataclass(frozen=True)
class _Sector:
    """One sector's part of the model: its intervals, map geometry and pair-to-row overlaps."""

    arc: int
    intervals: NDArray[np.int64]  # interval indices within the arc
    pairs: NDArray[np.int64]  # leaf pairs that overlap the map's rows inside the Y jaws
    rows_of_pair: NDArray[np.float64]  # (n_pairs_k, ny) fraction of each beamlet row per pair
    col_lo: NDArray[np.float64]  # (nx,) beamlet column edges along X_b (mm)
    col_hi: NDArray[np.float64]
    offset: int  # where the map's beamlets start in the weight vector
    shape: tuple[int, int]
    beamlet_mm: float


def _sectors(
    arcs: Sequence[ArcApertures],
    sector_beams: Sequence[Sequence[Beam]],
    offsets: Sequence[Sequence[int]],
    machine: Machine,
) -> list[_Sector]:
    edges = machine.mlc.leaf_edges_mm
    out = []
    for a, (ap, beams, offs) in enumerate(zip(arcs, sector_beams, offsets, strict=True)):
        for k, beam in enumerate(beams):
            ints = np.flatnonzero(ap.sector_of_interval == k)
            f = beam.fluence
            if f is None or not len(ints):
                continue
            b = f.beamlet_mm
            ny, nx = f.shape
            yc, xc = f.y_centers_mm(), f.x_centers_mm()
            jy1, jy2 = float(ap.jaws[ints[0], 2]), float(ap.jaws[ints[0], 3])
            lo = np.maximum(edges[:-1, None], np.maximum(yc[None, :] - b / 2, jy1))
            hi = np.minimum(edges[1:, None], np.minimum(yc[None, :] + b / 2, jy2))
            cover = np.clip(hi - lo, 0.0, None) / b
            pairs = np.flatnonzero(cover.any(axis=1))
            out.append(
                _Sector(a, ints, pairs, cover[pairs], xc - b / 2, xc + b / 2, offs[k], (ny, nx), b)
            )
    return out


def _open_fraction(
    sec: _Sector, x1: NDArray, x2: NDArray, jaws: NDArray, with_grad: bool
) -> tuple[NDArray, NDArray | None, NDArray | None]:
    """O (n_int, n_pairs_k, nx) and dO/dX1(t), dO/dX2(t) indicators (n_int, nt, n_pairs_k, nx).

    ``x1``/``x2``: effective tips of the arc (n_cp, n_pairs); ``jaws``: (n_cp, 4).
    """
    j = sec.intervals
    t = (np.arange(N_TIME_SAMPLES) + 0.5) / N_TIME_SAMPLES
    p = sec.pairs

    def at(arr: NDArray) -> NDArray:  # (n_int, nt, ...) linear between control points j, j+1
        a0, a1 = arr[j][:, None], arr[j + 1][:, None]
        tt = t.reshape((1, -1) + (1,) * (a0.ndim - 2))
        return a0 * (1 - tt) + a1 * tt

    X1 = at(x1[:, p])[..., None]  # (n_int, nt, P, 1)
    X2 = at(x2[:, p])[..., None]
    jx1 = at(jaws[:, 0])[:, :, None, None]
    jx2 = at(jaws[:, 1])[:, :, None, None]
    lo = np.maximum(sec.col_lo, jx1)  # (n_int, nt, 1, nx)
    hi = np.minimum(sec.col_hi, jx2)
    left, right = np.maximum(X1, lo), np.minimum(X2, hi)
    ov = np.clip(right - left, 0.0, None)
    frac = ov.mean(axis=1) / sec.beamlet_mm
    if not with_grad:
        return frac, None, None
    opn = ov > 0
    d1 = -(opn & (X1 > lo)).astype(float)
    d2 = (opn & (X2 < hi)).astype(float)
    return frac, d1, d2


def _chain(d: NDArray, g_open: NDArray, n_cp: int, j: NDArray, scale: NDArray) -> NDArray:
    """Gradient on the control points' tips (n_cp, P) from dO/dX(t) (n_int, nt, P, nx)."""
    nt = d.shape[1]
    t = (np.arange(nt) + 0.5) / nt
    per_t = np.einsum("itpc,pc->itp", d, g_open) * scale[:, None, None]  # (n_int, nt, P)
    out = np.zeros((n_cp, d.shape[2]))
    np.add.at(out, j, np.einsum("itp,t->ip", per_t, 1 - t) / nt)
    np.add.at(out, j + 1, np.einsum("itp,t->ip", per_t, t) / nt)
    return out


@dataclass(frozen=True)
class LeafResult:
    """Optimised apertures and how the leaf optimisation went."""

    apertures: list[ArcApertures]
    iterations: int
    accepted: int
    initial_objective: float
    final_objective: float
    time_s: float


class _LeafModel:
    """Beamlet weights and objective gradient as functions of all arcs' tips."""

    def __init__(
        self,
        arcs: Sequence[ArcApertures],
        sector_beams: Sequence[Sequence[Beam]],
        offsets: Sequence[Sequence[int]],
        machine: Machine,
        base_weights: NDArray,
        mu_course: Sequence[NDArray],
    ) -> None:
        self.arcs = list(arcs)
        self.sectors = _sectors(arcs, sector_beams, offsets, machine)
        self.half = machine.dosimetric_leaf_gap_mm / 2
        open_scale = 1.0 - machine.leaf_transmission
        mu = [np.asarray(m, dtype=float) for m in mu_course]
        # open-fluence MU of each sector's intervals (the MU are held while the tips move)
        self.open_mu = [mu[sec.arc][sec.intervals] * open_scale for sec in self.sectors]
        self.n = len(base_weights)
        x0 = [(ap.x1, ap.x2) for ap in self.arcs]
        self.base = base_weights - self.open_weights(x0)

    def open_weights(self, tips: Sequence[tuple[NDArray, NDArray]]) -> NDArray:
        w = np.zeros(self.n)
        for sec, m in zip(self.sectors, self.open_mu, strict=True):
            x1, x2 = tips[sec.arc]
            ap = self.arcs[sec.arc]
            frac, _, _ = _open_fraction(sec, x1 - self.half, x2 + self.half, ap.jaws, False)
            maps = np.einsum("i,ipc,pr->rc", m, frac, sec.rows_of_pair)
            w[sec.offset : sec.offset + maps.size] += maps.ravel()
        return w

    def weights(self, tips: Sequence[tuple[NDArray, NDArray]]) -> NDArray:
        return self.base + self.open_weights(tips)

    def tip_gradient(
        self, tips: Sequence[tuple[NDArray, NDArray]], g_beamlets: NDArray
    ) -> list[tuple[NDArray, NDArray]]:
        grads = [(np.zeros_like(x1), np.zeros_like(x2)) for x1, x2 in tips]
        for sec, scale in zip(self.sectors, self.open_mu, strict=True):
            x1, x2 = tips[sec.arc]
            ap = self.arcs[sec.arc]
            _, d1, d2 = _open_fraction(sec, x1 - self.half, x2 + self.half, ap.jaws, True)
            g_map = g_beamlets[sec.offset : sec.offset + sec.shape[0] * sec.shape[1]]
            g_open = sec.rows_of_pair @ g_map.reshape(sec.shape) / sec.beamlet_mm
            n_cp = len(x1)
            g1, g2 = grads[sec.arc]
            g1[:, sec.pairs] += _chain(d1, g_open, n_cp, sec.intervals, scale)  # type: ignore[arg-type]
            g2[:, sec.pairs] += _chain(d2, g_open, n_cp, sec.intervals, scale)  # type: ignore[arg-type]
        return grads


def travel_limits_mm(ap: ArcApertures, machine: Machine, mu_per_fraction: NDArray) -> NDArray:
    """Largest tip travel per interval at its held MU (mm, see the module docstring)."""
    t_gantry = np.abs(np.diff(ap.arc.path_deg())) / machine.max_gantry_speed_deg_s
    t_rate = mu_per_fraction / (machine.max_mu_per_s * MU_BOUND_SAFETY)
    return machine.max_leaf_speed_mm_s * np.maximum(t_gantry, t_rate)


def project_tips(
    x1: NDArray, x2: NDArray, limit_mm: NDArray, machine: Machine
) -> tuple[NDArray, NDArray]:
    """Feasible tips near (x1, x2) (n_cp, n_pairs): see the module docstring.

    From the second control point on, each pair's centre c and half-gap h move
    from the previous (already feasible) control point's towards the wanted ones
    until |dc| + |dh| <= the interval's limit; a convex combination of two
    points with h >= min gap / 2 and |c| + h <= jaw limit keeps both.
    """
    g_half = machine.min_leaf_gap_mm / 2
    h = np.maximum((x2 - x1) / 2, g_half)
    c = np.clip((x1 + x2) / 2, -machine.jaw_limit_mm + h, machine.jaw_limit_mm - h)
    for i in range(1, len(c)):
        dc, dh = c[i] - c[i - 1], h[i] - h[i - 1]
        norm = np.abs(dc) + np.abs(dh)
        s = np.where(norm > limit_mm[i - 1], limit_mm[i - 1] / np.maximum(norm, 1e-12), 1.0)
        c[i] = c[i - 1] + s * dc
        h[i] = h[i - 1] + s * dh
    return c - h, c + h


def optimise_leaves(
    arcs: Sequence[ArcApertures],
    sector_beams: Sequence[Sequence[Beam]],
    offsets: Sequence[Sequence[int]],
    machine: Machine,
    operator: DoseOperator,
    terms: Sequence[ObjectiveTerm],
    layout: FluenceLayout,
    *,
    dose_scale_gy: float,
    base_weights: NDArray,
    n_fractions: int,
    max_iterations: int = 30,
) -> LeafResult:
    """Move the tips of every control point against the objectives, interval MU held.

    ``base_weights``: the beamlet weights (whole course) of the arcs as they
    are (the exact interval fluence matrix times the interval MU);
    ``arcs[a].interval_mu`` are MU per fraction.
    """
    if len(base_weights) != operator.n_beamlets:
        raise PlanningError(f"base weights must have {operator.n_beamlets} values")
    t0 = time.perf_counter()
    mu_fx = [ap.interval_mu for ap in arcs]
    model = _LeafModel(
        arcs, sector_beams, offsets, machine, base_weights, [m * n_fractions for m in mu_fx]
    )
    limits = [travel_limits_mm(ap, machine, m) for ap, m in zip(arcs, mu_fx, strict=True)]
    problem = FluenceObjective(operator, terms, layout, dose_scale_gy, 0.0, 1.0)

    def evaluate(tips: list) -> tuple[float, NDArray]:
        total, g_dose, _ = problem.dose_terms(operator.forward(model.weights(tips)))
        return total, g_dose

    def gradient(tips: list, g_dose: NDArray) -> list:
        return model.tip_gradient(tips, operator.adjoint(g_dose))

    tips = [(ap.x1.copy(), ap.x2.copy()) for ap in arcs]
    f0, g_dose = evaluate(tips)
    g = gradient(tips, g_dose)
    f, step, accepted, steps = f0, INITIAL_STEP_MM, 0, 0
    for steps in range(1, int(max_iterations) + 1):  # noqa: B007 (reported)
        g_max = max(max(np.abs(g1).max(), np.abs(g2).max()) for g1, g2 in g)
        if not g_max > 0:
            break
        trial = [
            project_tips(x1 - step * g1 / g_max, x2 - step * g2 / g_max, lim, machine)
            for (x1, x2), (g1, g2), lim in zip(tips, g, limits, strict=True)
        ]
        f_trial, g_dose_trial = evaluate(trial)
        if f_trial < f:
            tips, f, accepted = trial, f_trial, accepted + 1
            g = gradient(tips, g_dose_trial)
            step *= 1.5
        else:
            step /= 2
    out = [
        ArcApertures(ap.arc, x1, x2, ap.jaws, ap.interval_mu, ap.sector_of_interval)
        for ap, (x1, x2) in zip(arcs, tips, strict=True)
    ]
    elapsed = time.perf_counter() - t0
    log.info(
        "leaf optimisation: %d steps (%d kept, %.1f s), model objective %.4g -> %.4g",
        steps,
        accepted,
        elapsed,
        f0,
        f,
    )
    return LeafResult(out, steps, accepted, float(f0), float(f), elapsed)
