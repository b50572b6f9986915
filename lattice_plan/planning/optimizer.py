"""Fluence optimisation: non-negative beamlet weights minimising weighted dose objectives.

The problem, for beamlet weights x >= 0 (all beams' fluence maps, concatenated
beam by beam, each map row-major [ny, nx])::

    F(x) = sum_t w_t f_t(A_t x) / s^2  +  lambda * S(x)

``A`` is a dose operator on a voxel subset (the voxels of the structures that
have objectives), ``A_t`` its rows of term t, ``f_t`` the objective's penalty
(Gy^2, see :mod:`lattice_plan.planning.objectives`), ``s`` a dose scale
(the prescription, so F is dimensionless), and ``S`` the smoothness penalty:
the mean squared difference of neighbouring beamlets (along both map axes)
relative to the mean initial weight squared, so that ``lambda`` is
dimensionless too. The gradient uses the operator's adjoint,
``grad = sum_t w_t A_t^T f_t'(A_t x) / s^2 + lambda * S'(x)``, so no dense
dose-influence matrix is needed; :class:`MatrixOperator` wraps an explicit
matrix for small problems and tests.

scipy's L-BFGS-B handles the bounds. Its line search enforces a sufficient
decrease (Armijo), so the objective after each iteration is below the one
before; the optimiser records that history. Everything is deterministic for a
deterministic operator: same inputs, same weights bit for bit.

Stopping in dose terms (``dose_tol`` > 0): the plan has settled when no voxel
of the objectives moved by more than ``dose_tol`` times the dose scale over the
last ``dose_window`` iterations. The objective itself keeps falling slowly long
after that (by fractions of a percent per iteration) while the doses a planner
reads hardly change; the plan builders use this rule.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, sparse

from lattice_plan.errors import PlanningError
from lattice_plan.geometry.grid import Grid
from lattice_plan.planning.layout import FluenceLayout
from lattice_plan.planning.objectives import Objective, VoxelContext, check_objectives

logger = logging.getLogger(__name__)

DEFAULT_SMOOTHNESS = 0.02
DEFAULT_FTOL = 1e-7
DEFAULT_GTOL = 1e-6
DEFAULT_STALL_TOL = 2e-3
STALL_WINDOW = 5
DEFAULT_DOSE_WINDOW = 5


@runtime_checkable
class DoseOperator(Protocol):
    """Linear map from beamlet weights (n_beamlets,) to dose (Gy) at voxels (n_voxels,)."""

    @property
    def n_beamlets(self) -> int: ...

    @property
    def n_voxels(self) -> int: ...

    def forward(self, x: NDArray[np.float64]) -> NDArray[np.float64]: ...

    def adjoint(self, g: NDArray[np.float64]) -> NDArray[np.float64]: ...


@dataclass(frozen=True, eq=False)
class MatrixOperator:
    """An explicit dose-influence matrix (n_voxels, n_beamlets), dense or scipy sparse."""

    matrix: NDArray[np.float64] | sparse.sparray | sparse.spmatrix

    def __post_init__(self) -> None:
        m = self.matrix
        if m.ndim != 2 or min(m.shape) < 1:
            raise PlanningError(
                f"the dose-influence matrix must be 2D (voxels, beamlets), got shape {m.shape}"
            )
        if not sparse.issparse(m):
            m = np.array(m, dtype=float)
            m.setflags(write=False)
            object.__setattr__(self, "matrix", m)

    @property
    def n_voxels(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_beamlets(self) -> int:
        return int(self.matrix.shape[1])

    def forward(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(self.matrix @ x, dtype=float)

    def adjoint(self, g: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(self.matrix.T @ g, dtype=float)


@dataclass(frozen=True, eq=False)
class ObjectiveTerm:
    """One objective, prepared, and the positions of its voxels in the operator's output."""

    objective: Objective
    voxels: NDArray[np.int64]

    def __post_init__(self) -> None:
        v = np.asarray(self.voxels, dtype=np.int64)
        if v.ndim != 1 or v.size == 0:
            raise PlanningError(
                f"objective '{self.objective.describe()}' has no voxels to act on; is "
                f"{self.objective.structure!r} empty on the dose grid?"
            )
        v.setflags(write=False)
        object.__setattr__(self, "voxels", v)


def _thinned(mask: NDArray[np.bool_], max_voxels: int) -> NDArray[np.bool_]:
    """``mask`` on the sub-lattice of every s-th voxel along each axis, s the smallest that fits."""
    n = int(np.count_nonzero(mask))
    stride = 1
    while n > max_voxels and stride < 8:
        stride += 1
        lattice = np.zeros(mask.shape, dtype=bool)
        lattice[::stride, ::stride, ::stride] = True
        thinned = mask & lattice
        n = int(np.count_nonzero(thinned))
        if n <= max_voxels:
            return thinned
    return mask if stride == 1 else thinned


def objective_terms(
    objectives: Sequence[Objective],
    masks: Mapping[str, NDArray[np.bool_]],
    grid: Grid,
    max_voxels: int | None = None,
) -> tuple[NDArray[np.int64], list[ObjectiveTerm]]:
    """The voxel subset of a set of objectives and their terms on it.

    ``masks`` holds a boolean mask [k, j, i] on ``grid`` (the dose grid) for
    every structure the objectives name (and every fall-off target). Returns the
    sorted flat indices of the union of the objectives' voxels (the rows the
    dose operator must evaluate) and one :class:`ObjectiveTerm` per objective,
    whose ``voxels`` index into that subset.

    ``max_voxels``: a structure with more voxels is sampled on the sub-lattice of
    every s-th voxel along each axis (s = 2, 3, ...: the smallest that brings
    it under the cap), so large structures such as the normal tissue cost less
    per iteration; its objective is then the same average over a regular sample.
    """
    check_objectives(objectives)
    lookup = {name.casefold(): name for name in masks}
    flat: dict[str, NDArray[np.int64]] = {}
    named: dict[str, NDArray[np.bool_]] = {}
    for name, mask in masks.items():
        if mask.shape != grid.shape:
            raise PlanningError(
                f"mask of {name!r} has shape {mask.shape}, the dose grid {grid.shape}"
            )
        named[name] = mask
    for obj in objectives:
        key = obj.structure.casefold()
        if key not in lookup:
            raise PlanningError(
                f"objective '{obj.describe()}' names {obj.structure!r}, which is not among the "
                f"structures ({', '.join(masks)})"
            )
        name = lookup[key]
        mask = named[name]
        if max_voxels is not None:
            mask = _thinned(mask, int(max_voxels))
        flat[obj.structure] = np.flatnonzero(mask)
        named.setdefault(obj.structure, named[name])
        if flat[obj.structure].size == 0:
            raise PlanningError(
                f"objective '{obj.describe()}': structure {obj.structure!r} has no voxels on the "
                f"dose grid (spacing {grid.spacing_mm} mm); use a finer dose grid or drop it"
            )
    union = np.zeros(grid.n_voxels, dtype=bool)
    for idx in flat.values():
        union[idx] = True
    subset = np.flatnonzero(union)
    context = VoxelContext(grid, named, flat)
    terms = [
        ObjectiveTerm(obj.prepare(context), np.searchsorted(subset, flat[obj.structure]))
        for obj in objectives
    ]
    return subset, terms


@dataclass(frozen=True)
class OptimizerOptions:
    """How the plan builders run the optimiser: when it stops, and in which precision.

    The default stops when the dose has settled: no objective voxel moved by
    more than ``dose_tol`` (1 %) of the prescription over ``dose_window`` (5)
    iterations (see :func:`optimize_fluence` for each test), with the
    operator's fluence maps in single precision
    (:class:`lattice_plan.dose.engine.VoxelOperator`). :meth:`converged` runs on
    to L-BFGS-B's own tight tests in double precision, for reference plans.
    """

    dose_tol: float = 0.01
    dose_window: int = DEFAULT_DOSE_WINDOW
    stall_tol: float = 0.0
    ftol: float = DEFAULT_FTOL
    gtol: float = DEFAULT_GTOL
    single_precision: bool = True

    def __post_init__(self) -> None:
        for name in ("dose_tol", "stall_tol", "ftol", "gtol"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise PlanningError(
                    f"OptimizerOptions.{name} must be a non-negative number, got {v!r}"
                )
        if int(self.dose_window) != self.dose_window or self.dose_window < 1:
            raise PlanningError(
                f"OptimizerOptions.dose_window must be a positive integer, got {self.dose_window!r}"
            )

    @classmethod
    def converged(cls) -> OptimizerOptions:
        """No early stop (L-BFGS-B's tests at tight tolerances, or the iteration cap), float64."""
        return cls(dose_tol=0.0, stall_tol=0.0, ftol=1e-13, gtol=1e-9, single_precision=False)

    def stop_kwargs(self) -> dict[str, float]:
        """The stopping arguments of :func:`optimize_fluence` that these options set."""
        return {
            "dose_tol": self.dose_tol,
            "dose_window": int(self.dose_window),
            "stall_tol": self.stall_tol,
            "ftol": self.ftol,
            "gtol": self.gtol,
        }


@dataclass(frozen=True, eq=False)
class OptimizationResult:
    """What the optimiser did and found.

    ``x``: optimal beamlet weights; ``history``: the objective before the
    first iteration and after each one; ``stop_reason``: "converged" (relative
    decrease of F below ftol, or projected gradient below gtol), "stalled" (F
    fell by less than stall_tol per iteration over the last iterations),
    "settled" (no objective voxel's dose moved by more than dose_tol of the dose
    scale over the last dose_window iterations), "iteration limit",
    "evaluation limit" or "line search failed" (no further
    decrease found: converged to working precision); ``term_values``: each
    weighted term of F at ``x`` (keyed by its description, plus "smoothness").
    """

    x: NDArray[np.float64]
    history: tuple[float, ...]
    iterations: int
    evaluations: int
    stop_reason: str
    message: str
    time_s: float
    term_values: dict[str, float] = field(default_factory=dict)

    @property
    def final_objective(self) -> float:
        return self.history[-1]

    @property
    def converged(self) -> bool:
        """True when it stopped because F no longer decreased (not at a limit)."""
        return self.stop_reason in ("converged", "stalled", "settled")

    @property
    def time_per_iteration_s(self) -> float:
        return self.time_s / max(self.iterations, 1)

    def report(self) -> dict[str, object]:
        """A JSON-friendly summary for plan info and benchmarks."""
        return {
            "stop_reason": self.stop_reason,
            "message": self.message,
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "time_s": round(self.time_s, 3),
            "time_per_iteration_s": round(self.time_per_iteration_s, 4),
            "initial_objective": self.history[0],
            "final_objective": self.final_objective,
            "history": [float(f"{f:.6g}") for f in self.history],
            "terms": dict(self.term_values),
        }


def _stop_reason(res: optimize.OptimizeResult, max_iterations: int) -> str:
    msg = str(res.message).upper()
    if res.status == 0:
        return "converged"
    if res.status == 1:
        return "iteration limit" if res.nit >= max_iterations else "evaluation limit"
    if "ABNORMAL" in msg or "LINE SEARCH" in msg:
        return "line search failed"
    return "failed"


class FluenceObjective:
    """F(x) and its gradient (call it with x); keeps the last evaluation's weighted terms.

    ``x_ref`` is the fluence scale of the smoothness penalty (a typical beamlet weight).
    """

    def __init__(
        self,
        operator: DoseOperator,
        terms: Sequence[ObjectiveTerm],
        layout: FluenceLayout,
        dose_scale_gy: float,
        smoothness: float,
        x_ref: float,
    ) -> None:
        self.operator = operator
        self.terms = list(terms)
        self.inv_s2 = 1.0 / dose_scale_gy**2
        self.D = layout.difference_matrix()
        self.n_pairs = max(self.D.shape[0], 1)
        self.smooth_coef = smoothness / (self.n_pairs * x_ref**2)
        self.last_terms: dict[str, float] = {}
        self.evaluations = 0
        self._last: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def dose_at(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The dose at the operator's voxels for weights x (the last evaluation's when x is its x)."""
        if self._last is not None and np.array_equal(self._last[0], x):
            return self._last[1]
        return self.operator.forward(x)

    def dose_terms(
        self, dose: NDArray[np.float64]
    ) -> tuple[float, NDArray[np.float64], dict[str, float]]:
        """The weighted objective terms of a dose at the operator's voxels, and their gradient."""
        g_dose = np.zeros_like(dose)
        total = 0.0
        values: dict[str, float] = {}
        for t in self.terms:
            v, g = t.objective.evaluate(dose[t.voxels])
            w = t.objective.weight * self.inv_s2
            total += w * v
            values[t.objective.describe()] = w * v
            g_dose[t.voxels] += w * g  # a term's voxels are distinct
        return total, g_dose, values

    def __call__(self, x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        self.evaluations += 1
        dose = self.operator.forward(x)
        self._last = (np.array(x, dtype=float), dose)
        total, g_dose, values = self.dose_terms(dose)
        grad = self.operator.adjoint(g_dose)
        if self.smooth_coef > 0:
            dx = self.D @ x
            s = self.smooth_coef * float(dx @ dx)
            total += s
            values["smoothness"] = s
            grad = grad + (2.0 * self.smooth_coef) * (self.D.T @ dx)
        self.last_terms = values
        return total, grad


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
    max(|F|, 1), or projected gradient with respect to x / x_ref below ``gtol``), when F stalls (it fell by
    less than ``stall_tol`` relative per iteration, averaged over the last
    5 iterations; 0 disables this), when the dose has settled (no voxel's dose
    moved by more than ``dose_tol`` times ``dose_scale_gy`` over the last
    ``dose_window`` iterations; 0, the default, disables this), or after
    ``max_iterations``; it says which.
    """
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
    if not (np.isfinite(stall_tol) and stall_tol >= 0):
        raise PlanningError(f"stall_tol must be a non-negative number, got {stall_tol!r}")
    if not (np.isfinite(dose_tol) and dose_tol >= 0):
        raise PlanningError(f"dose_tol must be a non-negative fraction, got {dose_tol!r}")
    if int(dose_window) != dose_window or dose_window < 1:
        raise PlanningError(f"dose_window must be a positive integer, got {dose_window!r}")
    if not (np.isfinite(smoothness) and smoothness >= 0):
        raise PlanningError(f"smoothness must be a non-negative number, got {smoothness!r}")
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise PlanningError(f"max_iterations must be a positive integer, got {max_iterations!r}")

    n = layout.n_beamlets
    if active is None:
        free = np.ones(n, dtype=bool)
    else:
        free = np.asarray(active, dtype=bool)
        if free.shape != (n,) or not free.any():
            raise PlanningError(
                f"active must mark at least one of the {n} beamlets (bool array of shape ({n},))"
            )
    if x0 is None:
        # Uniform weights over the active beamlets, scaled by the factor (of 40 log-spaced
        # ones around the scale that gives a mean dose of dose_scale_gy) that minimises F:
        # the dose is linear in the scale, so this costs one operator call.
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
        values = [scan.dose_terms(c * d1)[0] for c in scales]
        x_start = ones * float(scales[int(np.argmin(values))])
    else:
        x_start = np.array(x0, dtype=float)
        if x_start.shape != (n,) or not np.all(np.isfinite(x_start)) or np.any(x_start < 0):
            raise PlanningError(f"x0 must be {n} finite non-negative weights")
        x_start[~free] = 0.0
    x_ref = float(x_start[free].mean())
    if not x_ref > 0:
        raise PlanningError("x0 must have some positive weight")
    problem = FluenceObjective(operator, terms, layout, dose_scale_gy, smoothness, x_ref)
    f0, _ = problem(x_start)
    history = [f0]

    stopped_by = ""
    doses: deque[NDArray[np.float64]] = deque(maxlen=int(dose_window) + 1)
    if dose_tol > 0:
        doses.append(problem.dose_at(x_start))
    dose_step_gy = dose_tol * dose_scale_gy

    def callback(intermediate_result: optimize.OptimizeResult) -> None:
        nonlocal stopped_by
        history.append(float(intermediate_result.fun))
        if progress is not None:
            progress(len(history) - 1, history[-1])
        if stall_tol > 0 and len(history) > STALL_WINDOW:
            drop = history[-1 - STALL_WINDOW] - history[-1]
            if drop <= stall_tol * STALL_WINDOW * abs(history[-1]):
                stopped_by = "stalled"
                raise StopIteration
        if dose_tol > 0:
            doses.append(problem.dose_at(x_ref * intermediate_result.x))
            if len(doses) == doses.maxlen and np.abs(doses[-1] - doses[0]).max() <= dose_step_gy:
                stopped_by = "settled"
                raise StopIteration

    def scaled(y: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        # L-BFGS-B works on y = x / x_ref (weights of order one): its projected-gradient
        # test and its first step are then independent of the MU scale of the beams.
        f, g = problem(x_ref * y)
        return f, x_ref * g

    t0 = time.perf_counter()
    res = optimize.minimize(
        scaled,
        x_start / x_ref,
        jac=True,
        method="L-BFGS-B",
        bounds=optimize.Bounds(np.zeros(n), np.where(free, np.inf, 0.0)),
        callback=callback,
        options={
            "maxiter": int(max_iterations),
            "maxfun": 20 * int(max_iterations) + 20,
            "ftol": ftol,
            "gtol": gtol,
            "maxcor": 20,
        },
    )
    elapsed = time.perf_counter() - t0
    x = np.array(res.x * x_ref, dtype=float)
    x.setflags(write=False)
    final, _ = problem(x)
    if len(history) == 1 or history[-1] != final:
        history.append(final)
    reason = stopped_by or _stop_reason(res, int(max_iterations))
    message = {
        "stalled": f"objective fell by less than {stall_tol:g} per iteration over the last "
        f"{STALL_WINDOW}",
        "settled": f"no voxel's dose moved by more than {dose_step_gy:.3g} Gy over the last "
        f"{int(dose_window)} iterations",
    }.get(stopped_by, str(res.message))
    logger.info(
        "fluence optimisation: %s after %d iterations (%.2f s), objective %.4g -> %.4g",
        reason,
        res.nit,
        elapsed,
        history[0],
        final,
    )
    return OptimizationResult(
        x=x,
        history=tuple(history),
        iterations=int(res.nit),
        evaluations=problem.evaluations,
        stop_reason=reason,
        message=message,
        time_s=elapsed,
        term_values=dict(problem.last_terms),
    )
