"""Fluence optimisation: non-negative beamlet weights minimising weighted dose objectives.

The problem F(x) (weighted objectives plus a smoothness penalty) and the dose
operators are in :mod:`lattice_plan.planning.fluence_problem`; the stopping
rules and the plan builders' options in :mod:`lattice_plan.planning.stopping`;
the active set (the objective voxels evaluated every iteration) in
:mod:`lattice_plan.planning.active_set`. This module runs scipy's L-BFGS-B on
them. Its line search enforces a sufficient decrease (Armijo), so the
objective after each iteration is below the one before (within one active
set); the optimiser records that history. Everything is deterministic for a
deterministic operator: same inputs, same weights bit for bit.

The variables L-BFGS-B sees are y_j = x_j p_j / x_ref: x_ref, the mean
initial weight, makes them of order one (the projected-gradient test and the
first step are then independent of the MU scale of the beams), and p_j, the
square root of beamlet j's share of the objectives' curvature (the adjoint of
the objective weights per voxel, relative to its median over the beamlets),
evens out the curvature between beamlets that reach many weighted voxels and
those that reach few, so that fewer iterations reach the same plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize
from threadpoolctl import threadpool_limits

from lattice_plan.errors import PlanningError
from lattice_plan.planning.active_set import ActiveProblem
from lattice_plan.planning.fluence_problem import (
    DoseOperator,
    FluenceObjective,
    MatrixOperator,
    ObjectiveTerm,
    objective_terms,
)
from lattice_plan.planning.layout import FluenceLayout
from lattice_plan.planning.stopping import (
    DEFAULT_DOSE_WINDOW,
    DEFAULT_FTOL,
    DEFAULT_GTOL,
    DEFAULT_STALL_TOL,
    DoseSettled,
    OptimizationResult,
    OptimizerOptions,
    check_stop_arguments,
    lbfgsb_stop_reason,
    stalled,
    stop_message,
)

__all__ = [
    "DEFAULT_SMOOTHNESS",
    "DoseOperator",
    "FluenceLayout",
    "FluenceObjective",
    "MatrixOperator",
    "ObjectiveTerm",
    "OptimizationResult",
    "OptimizerOptions",
    "objective_terms",
    "optimize_fluence",
]

logger = logging.getLogger(__name__)

DEFAULT_SMOOTHNESS = 0.02
LBFGS_CORRECTIONS = 40
ACTIVE_CHECK_EVERY = 10  # iterations between checks of the active set on every voxel
MAX_RESTARTS = 20
_PRECONDITION_RANGE = (1e-2, 1e2)  # clip of the curvature share before its square root


def _check_inputs(
    operator: DoseOperator,
    terms: Sequence[ObjectiveTerm],
    layout: FluenceLayout,
    dose_scale_gy: float,
    smoothness: float,
    max_iterations: int,
) -> None:
    if not isinstance(operator, DoseOperator):
        raise PlanningError(
            f"operator must provide n_beamlets, n_voxels, forward and adjoint; got {type(operator).__name__}"
        )
    if operator.n_beamlets != layout.n_beamlets:
        raise PlanningError(
            f"the operator has {operator.n_beamlets} beamlets but the fluence layout "
            f"{layout.n_beamlets}; build them from the same beams"
        )
    if not terms:
        raise PlanningError("no objective terms to optimise")
    for t in terms:
        if t.voxels.max() >= operator.n_voxels or t.voxels.min() < 0:
            raise PlanningError(
                f"objective '{t.objective.describe()}' indexes voxels outside the operator's "
                f"{operator.n_voxels}"
            )
    if not (np.isfinite(dose_scale_gy) and dose_scale_gy > 0):
        raise PlanningError(f"dose_scale_gy must be positive, got {dose_scale_gy!r}")
    if not (np.isfinite(smoothness) and smoothness >= 0):
        raise PlanningError(f"smoothness must be a non-negative number, got {smoothness!r}")
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise PlanningError(f"max_iterations must be a positive integer, got {max_iterations!r}")


def _uniform_start(
    operator: DoseOperator,
    terms: Sequence[ObjectiveTerm],
    layout: FluenceLayout,
    free: NDArray[np.bool_],
    dose_scale_gy: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Uniform weights over the free beamlets at the best of 40 scales, and their dose.

    The scales are log-spaced around the one that gives a mean dose of
    ``dose_scale_gy``; the dose is linear in the scale, so one operator call
    serves them all, and F (convex in the scale for the quadratic objectives)
    is minimised by a ternary search over the 40 (about 12 evaluations).
    """
    ones = free.astype(float)
    d1 = operator.forward(ones)
    used = np.zeros(operator.n_voxels, dtype=bool)
    for t in terms:
        used[t.voxels] = True
    mean = float(d1[used].mean())
    if not mean > 0:
        raise PlanningError(
            "the beams deliver no dose to the structures with objectives; check the isocentre "
            "and the fluence maps"
        )
    # F of uniform weights without the smoothness term (zero inside the maps).
    scan = FluenceObjective(operator, terms, layout, dose_scale_gy, 0.0, 1.0)
    scales = (dose_scale_gy / mean) * np.geomspace(0.02, 2.0, 40)
    values: dict[int, float] = {}

    def f(i: int) -> float:
        if i not in values:
            values[i] = scan.dose_terms(scales[i] * d1)[0]
        return values[i]

    lo, hi = 0, len(scales) - 1
    while hi - lo > 2:
        m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        if f(m1) <= f(m2):
            hi = m2
        else:
            lo = m1
    best = min(range(lo, hi + 1), key=f)
    return ones * float(scales[best]), scales[best] * d1


def _curvature_scales(
    operator: DoseOperator, terms: Sequence[ObjectiveTerm], free: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """p_j: the square root of beamlet j's weighted dose to the objectives' voxels, relative to the median."""
    g = np.zeros(operator.n_voxels)
    for t in terms:
        g[t.voxels] += t.objective.weight / t.voxels.size
    h = np.asarray(operator.adjoint(g), dtype=float)
    p = np.ones(h.shape)
    positive = free & (h > 0)
    if positive.any():
        ref = float(np.median(h[positive]))
        p[free] = np.sqrt(np.clip(h[free] / ref, *_PRECONDITION_RANGE))
    return p


def optimize_fluence(
    operator: DoseOperator,
    terms: Sequence[ObjectiveTerm],
    layout: FluenceLayout,
    *,
    dose_scale_gy: float,
    x0: ArrayLike | None = None,
    active: ArrayLike | None = None,
    smoothness: float = DEFAULT_SMOOTHNESS,
    max_iterations: int = 200,
    ftol: float = DEFAULT_FTOL,
    gtol: float = DEFAULT_GTOL,
    stall_tol: float = DEFAULT_STALL_TOL,
    dose_tol: float = 0.0,
    dose_window: int = DEFAULT_DOSE_WINDOW,
    active_margin: float = 0.0,
    progress: Callable[[int, float], None] | None = None,
) -> OptimizationResult:
    """Minimise the weighted objectives plus the smoothness penalty over x >= 0 (L-BFGS-B).

    ``operator`` maps the ``layout.n_beamlets`` weights to the dose at its
    voxels; ``terms`` index into those voxels; ``dose_scale_gy`` (> 0, e.g.
    the prescription) makes F dimensionless. ``x0`` defaults to uniform weights
    over the active beamlets at the scale that minimises F; the smoothness
    penalty's fluence scale is the mean initial weight.
    ``active`` (bool per beamlet, default all) marks the beamlets that may carry
    weight; the others are held at zero.
    ``progress(iteration, objective)`` is called after each iteration. Stops on
    convergence (L-BFGS-B's own tests: decrease of F below ``ftol`` relative to
    max(|F|, 1), or projected gradient with respect to the scaled variables below ``gtol``),
    when F stalls (it fell by less than ``stall_tol`` relative per iteration, averaged over
    the last 5 iterations; 0 disables this), when the dose has settled (no voxel's dose
    moved by more than ``dose_tol`` times ``dose_scale_gy`` over the last
    ``dose_window`` iterations; 0, the default, disables this), or after
    ``max_iterations``; it says which.
    ``active_margin`` > 0 (a fraction of ``dose_scale_gy``) evaluates the
    ceiling objectives only near their ceilings (:mod:`lattice_plan.planning.active_set`);
    it needs the operator's ``rows(rows)``, the operator on some of its output
    voxels (:class:`MatrixOperator` and the engine's ``VoxelOperator`` have it;
    without it every voxel is evaluated).
    """
    _check_inputs(operator, terms, layout, dose_scale_gy, smoothness, max_iterations)
    check_stop_arguments(stall_tol, dose_tol, dose_window, active_margin)
    # Numba does the parallel work; BLAS threads on the small products in the loop only spin.
    with threadpool_limits(limits=1, user_api="blas"):
        t_start = time.perf_counter()
        n = layout.n_beamlets
        if active is None:
            free = np.ones(n, dtype=bool)
        else:
            free = np.asarray(active, dtype=bool)
            if free.shape != (n,) or not free.any():
                raise PlanningError(
                    f"active must mark at least one of the {n} beamlets (bool array of shape ({n},))"
                )
        dose_start: NDArray[np.float64] | None = None
        if x0 is None:
            x_start, dose_start = _uniform_start(operator, terms, layout, free, dose_scale_gy)
        else:
            x_start = np.array(x0, dtype=float)
            if x_start.shape != (n,) or not np.all(np.isfinite(x_start)) or np.any(x_start < 0):
                raise PlanningError(f"x0 must be {n} finite non-negative weights")
            x_start[~free] = 0.0
        x_ref = float(x_start[free].mean())
        if not x_ref > 0:
            raise PlanningError("x0 must have some positive weight")
        full = FluenceObjective(operator, terms, layout, dose_scale_gy, smoothness, x_ref)
        if dose_start is None:
            f0, dose_full = full.value(x_start)
        else:
            f0 = full.dose_terms(dose_start)[0] + full.smoothness_term(x_start)[0]
            dose_full = dose_start
        on_rows = getattr(operator, "rows", None)
        margin_gy = active_margin * dose_scale_gy
        use_active = margin_gy > 0 and on_rows is not None
        p = _curvature_scales(operator, terms, free) / x_ref  # y = x * p
        bounds = optimize.Bounds(np.zeros(n), np.where(free, np.inf, 0.0))
        settle = DoseSettled(dose_tol * dose_scale_gy, int(dose_window))
        history = [f0]
        x = x_start
        problem = ActiveProblem(full, on_rows, margin_gy, dose_full) if use_active else None
        evaluate = full if problem is None else problem
        view = full.dose_at if problem is None else problem.dose_view
        settle.reset(dose_full)
        iterations, restarts = 0, 0
        final: float | None = None
        while True:
            stopped_by, renewed = "", 0

            def scaled(y: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
                f, g = evaluate(y / p)
                return f, g / p

            def callback(intermediate_result: optimize.OptimizeResult) -> None:
                nonlocal stopped_by, iterations, renewed
                iterations += 1
                history.append(float(intermediate_result.fun))
                if progress is not None:
                    progress(iterations, history[-1])
                if stalled(history, stall_tol):
                    stopped_by = "stalled"
                    raise StopIteration
                x_now = intermediate_result.x / p
                if dose_tol > 0 and settle.settled(view(x_now)):
                    stopped_by = "settled"
                    raise StopIteration
                if problem is not None and iterations % ACTIVE_CHECK_EVERY == 0:
                    renewed += problem.renew(operator.forward(x_now))

            left = int(max_iterations) - iterations
            res = optimize.minimize(
                scaled,
                x * p,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                callback=callback,
                options={
                    "maxiter": left,
                    "maxfun": 20 * left + 20,
                    # After a restart L-BFGS-B's first step is a short steepest-descent one whose
                    # small decrease would pass the ftol test: our rules and gtol stop those passes.
                    "ftol": ftol if restarts == 0 else 0.0,
                    "gtol": gtol,
                    "maxcor": LBFGS_CORRECTIONS,
                },
            )
            x = np.maximum(np.asarray(res.x) / p, 0.0)
            reason = stopped_by or lbfgsb_stop_reason(res, left)
            logger.debug(
                "pass %d: %s after %d iterations, active set renewed %d times, %d voxels",
                restarts,
                reason,
                iterations,
                renewed,
                operator.n_voxels if problem is None else problem.active.n_voxels,
            )
            if problem is None:
                break
            final, dose_full = full.value(x)  # the exact F, and the check of the active set
            if iterations >= max_iterations or restarts >= MAX_RESTARTS:
                break
            if problem.renew(dose_full):  # some voxel rose towards its ceiling: go on from x
                settle.reset(view(x))
            elif not (renewed and reason in ("converged", "line search failed")):
                break  # (L-BFGS-B's tests compare F across a renewal: a fresh pass decides)
            restarts += 1

        x = np.array(x, dtype=float)
        x.setflags(write=False)
        if final is None:
            final, _ = full.value(x)
        if len(history) == 1 or history[-1] != final:
            history.append(final)
    elapsed = time.perf_counter() - t_start
    message = stop_message(reason, stall_tol, dose_tol * dose_scale_gy, int(dose_window))
    logger.info(
        "fluence optimisation: %s after %d iterations, %d restarts (%.2f s), objective %.4g -> %.4g",
        reason,
        iterations,
        restarts,
        elapsed,
        history[0],
        final,
    )
    return OptimizationResult(
        x=x,
        history=tuple(history),
        iterations=iterations,
        evaluations=evaluate.evaluations,
        stop_reason=reason,
        message=message or str(res.message),
        time_s=elapsed,
        term_values=dict(full.last_terms),
        evaluated_voxels=operator.n_voxels if problem is None else problem.active.n_voxels,
    )
