"""When the fluence optimiser stops: the plan builders' options, the stopping rules, the result.

Stopping in dose terms (``dose_tol`` > 0): the plan has settled when no voxel
of the objectives moved by more than ``dose_tol`` times the dose scale over the
last ``dose_window`` iterations. The objective itself keeps falling slowly long
after that (by fractions of a percent per iteration) while the doses a planner
reads hardly change; the plan builders use this rule. The objective-stall rule
(``stall_tol`` > 0) stops when F fell by less than ``stall_tol`` relative per
iteration, averaged over the last :data:`STALL_WINDOW` iterations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from lattice_plan.errors import PlanningError

DEFAULT_FTOL = 1e-7
DEFAULT_GTOL = 1e-6
DEFAULT_STALL_TOL = 2e-3
STALL_WINDOW = 5
DEFAULT_DOSE_WINDOW = 5
DEFAULT_DOSE_TOL = 0.0075
DEFAULT_ACTIVE_MARGIN = 0.1


@dataclass(frozen=True)
class OptimizerOptions:
    """How the plan builders run the optimiser: when it stops, on which voxels, in which precision.

    The default stops when the dose has settled: no objective voxel moved by
    more than ``dose_tol`` (0.75 %) of the prescription over ``dose_window`` (5)
    iterations; it evaluates a ceiling objective (a maximum, valley or fall-off)
    only at the voxels within ``active_margin`` (10 %) of the prescription of
    their ceiling, checking all of them every few iterations
    (:mod:`lattice_plan.planning.active_set`); and the operator's fluence maps
    are in single precision (:class:`lattice_plan.dose.engine.VoxelOperator`).
    :meth:`converged` runs on every voxel to L-BFGS-B's own tight tests in
    double precision, for reference plans.
    """

    dose_tol: float = DEFAULT_DOSE_TOL
    dose_window: int = DEFAULT_DOSE_WINDOW
    stall_tol: float = 0.0
    ftol: float = DEFAULT_FTOL
    gtol: float = DEFAULT_GTOL
    active_margin: float = DEFAULT_ACTIVE_MARGIN
    single_precision: bool = True

    def __post_init__(self) -> None:
        for name in ("dose_tol", "stall_tol", "ftol", "gtol", "active_margin"):
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
        """No early stop (L-BFGS-B's tests at tight tolerances, or the iteration cap), all voxels, float64."""
        return cls(
            dose_tol=0.0,
            stall_tol=0.0,
            ftol=1e-13,
            gtol=1e-9,
            active_margin=0.0,
            single_precision=False,
        )

    def stop_kwargs(self) -> dict[str, float]:
        """The stopping (and active-set) arguments of :func:`optimize_fluence` that these options set."""
        return {
            "dose_tol": self.dose_tol,
            "dose_window": int(self.dose_window),
            "stall_tol": self.stall_tol,
            "ftol": self.ftol,
            "gtol": self.gtol,
            "active_margin": self.active_margin,
        }


def check_stop_arguments(
    stall_tol: float, dose_tol: float, dose_window: int, active_margin: float
) -> None:
    """Refuse negative or non-finite tolerances and a window that is not a positive integer."""
    if not (np.isfinite(stall_tol) and stall_tol >= 0):
        raise PlanningError(f"stall_tol must be a non-negative number, got {stall_tol!r}")
    if not (np.isfinite(dose_tol) and dose_tol >= 0):
        raise PlanningError(f"dose_tol must be a non-negative fraction, got {dose_tol!r}")
    if int(dose_window) != dose_window or dose_window < 1:
        raise PlanningError(f"dose_window must be a positive integer, got {dose_window!r}")
    if not (np.isfinite(active_margin) and active_margin >= 0):
        raise PlanningError(f"active_margin must be a non-negative fraction, got {active_margin!r}")


class DoseSettled:
    """The dose rule: true once no voxel moved by more than ``tol_gy`` over ``window`` iterations.

    A NaN dose (a voxel not evaluated then, see :mod:`lattice_plan.planning.active_set`)
    takes no part in the comparison.
    """

    def __init__(self, tol_gy: float, window: int) -> None:
        self.tol_gy = float(tol_gy)
        self.window = int(window)
        self._doses: deque[NDArray[np.float64]] = deque(maxlen=self.window + 1)

    def reset(self, dose: NDArray[np.float64]) -> None:
        """Start over from ``dose`` (the voxels changed, or a new start)."""
        self._doses.clear()
        self._doses.append(np.array(dose, dtype=float))

    def settled(self, dose: NDArray[np.float64]) -> bool:
        """Record the dose after one more iteration; true when the rule holds."""
        self._doses.append(np.array(dose, dtype=float))
        if len(self._doses) < self._doses.maxlen:  # type: ignore[operator]
            return False
        moved = np.abs(self._doses[-1] - self._doses[0])
        moved = moved[~np.isnan(moved)]
        return moved.size > 0 and bool(moved.max() <= self.tol_gy)


def stalled(history: Sequence[float], stall_tol: float) -> bool:
    """The stall rule on the objective history (``stall_tol`` 0 disables it)."""
    if stall_tol <= 0 or len(history) <= STALL_WINDOW:
        return False
    drop = history[-1 - STALL_WINDOW] - history[-1]
    return drop <= stall_tol * STALL_WINDOW * abs(history[-1])


def lbfgsb_stop_reason(res: optimize.OptimizeResult, iterations_left: int) -> str:
    """Our name for why L-BFGS-B itself stopped."""
    msg = str(res.message).upper()
    if res.status == 0:
        return "converged"
    if res.status == 1:
        return "iteration limit" if res.nit >= iterations_left else "evaluation limit"
    if "ABNORMAL" in msg or "LINE SEARCH" in msg:
        return "line search failed"
    return "failed"


def stop_message(reason: str, stall_tol: float, dose_step_gy: float, dose_window: int) -> str:
    """One line on the rule that stopped the optimiser (our rules; L-BFGS-B's own say their own)."""
    if reason == "stalled":
        return (
            f"objective fell by less than {stall_tol:g} per iteration over the last {STALL_WINDOW}"
        )
    if reason == "settled":
        return (
            f"no voxel's dose moved by more than {dose_step_gy:.3g} Gy over the last "
            f"{int(dose_window)} iterations"
        )
    return ""


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
    decrease found: converged to working precision); ``time_s``: the whole
    optimisation, the start included; ``term_values``: each weighted term of
    the exact F at ``x`` (keyed by its description, plus "smoothness");
    ``evaluated_voxels``: the voxels evaluated each iteration at the end (the
    active set's, see :mod:`lattice_plan.planning.active_set`).
    """

    x: NDArray[np.float64]
    history: tuple[float, ...]
    iterations: int
    evaluations: int
    stop_reason: str
    message: str
    time_s: float
    term_values: dict[str, float] = field(default_factory=dict)
    evaluated_voxels: int = 0

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
            "evaluated_voxels": self.evaluated_voxels,
        }
