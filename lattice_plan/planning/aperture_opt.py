"""Direct aperture optimisation of VMAT arcs: the MU of every control-point interval.

After arc sequencing (:mod:`lattice_plan.planning.arc_sequencing`) the leaf
positions are fixed and the dose is linear in the MU of the control-point
intervals. Each interval's delivered fluence per MU (its two control points'
leaf and jaw motion integrated exactly, leaf transmission, rounded leaf ends
and tongue-and-groove included: :func:`lattice_plan.dose.delivery.trajectory_fluence`)
is averaged onto the beamlets of its sector's fluence map, so that the dose of
interval MU ``w`` is the engine's fluence operator applied to ``F w`` and the
gradient is ``F^T`` times the operator's adjoint (the sector-centre
approximation of Bzdusek et al., Med Phys 36 (2009) 2328, used during
optimisation only; the plan's dose is then computed from the control points).
The interval MU are optimised against the plan's own objectives by L-BFGS-B
with lower bounds that keep the leaves within their speed
(:func:`lattice_plan.planning.arc_sequencing.interval_mu_lower_bounds`).
:func:`refine_apertures` alternates this with the leaf-position optimisation
of :mod:`lattice_plan.planning.leaf_opt`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, sparse

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.delivery import Trajectory, trajectory_fluence
from lattice_plan.dose.machine import Machine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.arc_sequencing import ArcApertures, interval_mu_lower_bounds
from lattice_plan.planning.leaf_opt import LeafResult, optimise_leaves
from lattice_plan.planning.optimizer import (
    DoseOperator,
    FluenceLayout,
    FluenceObjective,
    ObjectiveTerm,
)

log = logging.getLogger(__name__)

FLUENCE_PIXEL_MM = 1.0


def _bin_onto(values: NDArray, xs: NDArray, ys: NDArray, beam: Beam) -> NDArray[np.float64]:
    """Mean of a fine map (pixel centres xs, ys) over each beamlet of the beam's map, row-major."""
    f = beam.fluence
    assert f is not None
    b = f.beamlet_mm
    ny, nx = f.shape
    ix = np.floor((xs - (f.origin_bld_mm[0] - b / 2)) / b).astype(int)
    iy = np.floor((ys - (f.origin_bld_mm[1] - b / 2)) / b).astype(int)
    okx, oky = (ix >= 0) & (ix < nx), (iy >= 0) & (iy < ny)
    sub = values[np.ix_(oky, okx)]
    out = np.zeros((ny, nx))
    np.add.at(out, (iy[oky][:, None], ix[okx][None, :]), sub)
    pixel_area = (xs[1] - xs[0] if len(xs) > 1 else b) * (ys[1] - ys[0] if len(ys) > 1 else b)
    return (out * pixel_area / b**2).ravel()


def interval_fluence_matrix(
    arcs: Sequence[ArcApertures],
    sector_beams: Sequence[Sequence[Beam]],
    machine: Machine,
    offsets: Sequence[Sequence[int]],
    n_beamlets: int,
) -> sparse.csc_array:
    """F (n_beamlets, n_intervals): beamlet weights (MU-weighted fluence) per MU of each interval.

    ``sector_beams[a][k]`` is sector k of arc a; ``offsets[a][k]`` where its
    beamlets start in the operator's weight vector.
    """
    half = machine.dosimetric_leaf_gap_mm / 2
    cols, rows, vals = [], [], []
    col = 0
    for ap, beams, offs in zip(arcs, sector_beams, offsets, strict=True):
        path = ap.arc.path_deg()
        for j, k in enumerate(ap.sector_of_interval):
            traj = Trajectory(
                np.array([0.0, 1.0]),
                ap.x1[j : j + 2] - half,
                ap.x2[j : j + 2] + half,
                ap.jaws[j : j + 2],
                path[j : j + 2],
            )
            fmap = trajectory_fluence(traj, machine, FLUENCE_PIXEL_MM, sub=2)
            if fmap is not None:
                v = _bin_onto(fmap.values, fmap.x_centers_mm(), fmap.y_centers_mm(), beams[k])
                nz = np.flatnonzero(v)
                rows.append(nz + offs[k])
                vals.append(v[nz])
                cols.append(np.full(len(nz), col))
            col += 1
    return sparse.csc_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_beamlets, col),
    )


@dataclass(frozen=True)
class ApertureResult:
    """Optimised interval MU (whole course) and how the optimisation went."""

    mu: NDArray[np.float64]
    iterations: int
    initial_objective: float
    final_objective: float
    time_s: float


def optimise_interval_mu(
    operator: DoseOperator,
    F: sparse.csc_array,
    terms: Sequence[ObjectiveTerm],
    layout: FluenceLayout,
    *,
    dose_scale_gy: float,
    mu0: NDArray[np.float64],
    lower_mu: NDArray[np.float64],
    max_iterations: int = 60,
) -> ApertureResult:
    """Minimise the objectives over interval MU >= ``lower_mu`` (whole course), from ``mu0``."""
    n = F.shape[1]
    if mu0.shape != (n,) or lower_mu.shape != (n,):
        raise PlanningError(f"interval MU and bounds must have {n} values")
    problem = FluenceObjective(operator, terms, layout, dose_scale_gy, 0.0, 1.0)
    start = np.maximum(mu0, lower_mu)
    ref = float(start.mean())
    if not ref > 0:
        raise PlanningError("the arcs deliver no MU before aperture optimisation")

    def fun(y: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        dose = operator.forward(F @ (ref * y))
        total, g_dose, _ = problem.dose_terms(dose)
        return total, ref * (F.T @ operator.adjoint(g_dose))

    t0 = time.perf_counter()
    f0, _ = fun(start / ref)
    res = optimize.minimize(
        fun,
        start / ref,
        jac=True,
        method="L-BFGS-B",
        bounds=optimize.Bounds(lower_mu / ref, np.full(n, np.inf)),
        options={"maxiter": int(max_iterations), "maxfun": 3 * int(max_iterations), "maxcor": 20},
    )
    elapsed = time.perf_counter() - t0
    mu = np.maximum(np.asarray(res.x) * ref, lower_mu)
    log.info(
        "aperture MU optimisation: %d iterations (%.1f s), objective %.4g -> %.4g",
        res.nit,
        elapsed,
        f0,
        res.fun,
    )
    return ApertureResult(mu, int(res.nit), float(f0), float(res.fun), elapsed)


@dataclass(frozen=True)
class RefinedArcs:
    """Apertures after the MU / leaf rounds, and each step's result (in order)."""

    apertures: list[ArcApertures]
    mu_steps: list[ApertureResult]
    leaf_steps: list[LeafResult]

    def report(self) -> dict[str, object]:
        """Iterations and objectives (first and last), per step, for a plan's info."""
        return {
            "iterations": sum(r.iterations for r in self.mu_steps),
            "initial_objective": self.mu_steps[0].initial_objective,
            "final_objective": self.mu_steps[-1].final_objective,
            "mu_objectives": [[r.initial_objective, r.final_objective] for r in self.mu_steps],
            "leaf_steps": [
                {
                    "steps": r.iterations,
                    "kept": r.accepted,
                    "initial_objective": r.initial_objective,
                    "final_objective": r.final_objective,
                    "time_s": round(r.time_s, 3),
                }
                for r in self.leaf_steps
            ],
        }


def refine_apertures(
    arcs: Sequence[ArcApertures],
    sector_beams: Sequence[Sequence[Beam]],
    offsets: Sequence[Sequence[int]],
    machine: Machine,
    operator: DoseOperator,
    terms: Sequence[ObjectiveTerm],
    layout: FluenceLayout,
    *,
    dose_scale_gy: float,
    n_fractions: int,
    mu_iterations: int = 40,
    leaf_rounds: int = 1,
    leaf_iterations: int = 30,
) -> RefinedArcs:
    """Interval MU, then ``leaf_rounds`` x (leaf positions at held MU, interval MU again).

    Each MU step rebuilds the exact interval fluence matrix of the current
    leaves and re-derives the leaf-speed lower bounds; ``arcs[a].interval_mu``
    are MU per fraction (the optimisations work on the whole course).
    """
    if int(leaf_rounds) != leaf_rounds or leaf_rounds < 0:
        raise PlanningError(f"leaf_rounds must be an integer >= 0, got {leaf_rounds!r}")
    mu_steps: list[ApertureResult] = []
    leaf_steps: list[LeafResult] = []

    def fit_mu(aps: list[ArcApertures]) -> tuple[list[ArcApertures], NDArray[np.float64]]:
        F = interval_fluence_matrix(aps, sector_beams, machine, offsets, operator.n_beamlets)
        mu0 = np.concatenate([ap.interval_mu for ap in aps]) * n_fractions
        lower = np.concatenate([interval_mu_lower_bounds(ap, machine) for ap in aps]) * n_fractions
        res = optimise_interval_mu(
            operator,
            F,
            terms,
            layout,
            dose_scale_gy=dose_scale_gy,
            mu0=mu0,
            lower_mu=lower,
            max_iterations=mu_iterations,
        )
        mu_steps.append(res)
        split = np.cumsum([0, *(len(ap.interval_mu) for ap in aps)])
        out = [
            ap.with_interval_mu(res.mu[split[a] : split[a + 1]] / n_fractions)
            for a, ap in enumerate(aps)
        ]
        return out, F @ res.mu

    aps, weights = fit_mu(list(arcs))
    for _ in range(int(leaf_rounds)):
        leaves = optimise_leaves(
            aps,
            sector_beams,
            offsets,
            machine,
            operator,
            terms,
            layout,
            dose_scale_gy=dose_scale_gy,
            base_weights=weights,
            n_fractions=n_fractions,
            max_iterations=leaf_iterations,
        )
        leaf_steps.append(leaves)
        aps, weights = fit_mu(leaves.apertures)
    return RefinedArcs(aps, mu_steps, leaf_steps)
