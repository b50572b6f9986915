"""Optimisation objectives: penalties on the dose of one structure's voxels, with weights.

Every objective names the structure it applies to and has a ``weight`` (> 0,
keyword only). ``evaluate(dose_gy)`` takes the dose (Gy, whole course) of that
structure's voxels on the dose grid, as a 1D array, and returns the penalty
(Gy^2, averaged over the voxels so that large and small structures weigh
alike) and its gradient with respect to each voxel's dose (Gy). The weight is
applied by the optimiser, not by ``evaluate``.

Constructor API (the plan-spec parser maps TOML objectives onto these)::

    MinDose(structure, dose_gy, weight=1.0)          every voxel at least dose_gy
    MaxDose(structure, dose_gy, weight=1.0)          every voxel at most dose_gy
    UniformDose(structure, dose_gy, weight=1.0)      every voxel at dose_gy
    MeanDose(structure, dose_gy, sense="max", weight=1.0)
    DVHPoint(structure, dose_gy, volume_pct, sense="max", smoothing_gy=None, weight=1.0)
    GEUD(structure, dose_gy, a, sense="max", weight=1.0)
    PeakDose(structure, dose_gy, weight=1.0)         SFRT: vertices high
    ValleyDose(structure, dose_gy, weight=1.0)       SFRT: valley kept low
    EdgeDose(structure, dose_gy, weight=1.0)         GTV edge held near a level
    RingFallOff(structure, target, high_gy, low_gy, distance_mm, weight=1.0)

``sense`` is "max" (penalise above the level), "min" (below) or "target"
(both sides). MinDose/MaxDose/UniformDose/PeakDose/ValleyDose/EdgeDose are
one-sided or two-sided quadratic penalties on each voxel; MeanDose and GEUD
penalise a summary of the structure's dose; DVHPoint penalises the volume
fraction above a dose (a "V20Gy <= 5 %" constraint) through a logistic
approximation of the step function so that it has a gradient.

:func:`check_objectives` refuses objectives that cannot all hold (a minimum
above a maximum on one structure, ...).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.special import expit

from lattice_plan.errors import PlanningError
from lattice_plan.geometry.grid import Grid

SENSES = ("max", "min", "target")


def _check_level(owner: str, name: str, value: float, allow_zero: bool = True) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        need = "non-negative" if allow_zero else "positive"
        raise PlanningError(f"{owner}: {name} must be a {need} dose in Gy, got {value!r}")
    return v


def _check_sense(owner: str, sense: str) -> None:
    if sense not in SENSES:
        raise PlanningError(f"{owner}: sense must be one of {', '.join(SENSES)}, got {sense!r}")


def _hinge(diff: NDArray[np.float64], sense: str) -> NDArray[np.float64]:
    """The part of ``diff = value - level`` that the sense penalises."""
    if sense == "max":
        return np.maximum(diff, 0.0)
    if sense == "min":
        return np.minimum(diff, 0.0)
    return diff


@dataclass(frozen=True)
class VoxelContext:
    """What an objective may need besides the dose: the dose grid and the structures on it.

    ``masks`` maps structure names (as given in the objectives) to boolean
    masks [k, j, i] on ``grid``; ``flat_index`` maps each structure name to the
    flat (C-order) indices of its voxels, in the order the dose is passed to
    ``evaluate``.
    """

    grid: Grid
    masks: dict[str, NDArray[np.bool_]]
    flat_index: dict[str, NDArray[np.int64]]


@dataclass(frozen=True)
class Objective(ABC):
    """A penalty on the dose of the voxels of ``structure``."""

    structure: str
    weight: float = field(default=1.0, kw_only=True)

    kind: ClassVar[str] = "objective"

    def __post_init__(self) -> None:
        if not isinstance(self.structure, str) or not self.structure.strip():
            raise PlanningError(
                f"{type(self).__name__}: structure must name a structure, got {self.structure!r}"
            )
        w = float(self.weight)
        if not np.isfinite(w) or w <= 0:
            raise PlanningError(
                f"{type(self).__name__} on {self.structure!r}: weight must be a positive number, "
                f"got {self.weight!r}"
            )

    @property
    def lower_bound_gy(self) -> float | None:
        """A dose that the objective asks every voxel (or a mean of them) to reach, if any."""
        return None

    @property
    def upper_bound_gy(self) -> float | None:
        """A dose that the objective asks every voxel (or a mean of them) to stay under, if any."""
        return None

    @property
    def voxel_ceiling_gy(self) -> float | NDArray[np.float64] | None:
        """The per-voxel maximum of a separable ceiling (a voxel below it adds nothing), else None."""
        return None

    def prepare(self, context: VoxelContext) -> Objective:
        """The objective ready to evaluate on the voxels of ``context`` (most need nothing)."""
        return self

    @abstractmethod
    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        """Penalty (Gy^2, unweighted) and its gradient (Gy) for the structure's voxel doses."""

    @abstractmethod
    def describe(self) -> str:
        """One line for reports, e.g. ``MaxDose CaudaEquina <= 10 Gy (w 5)``."""


def _require_voxels(obj: Objective, dose_gy: NDArray[np.float64]) -> NDArray[np.float64]:
    d = np.asarray(dose_gy, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise PlanningError(
            f"{type(obj).__name__} on {obj.structure!r}: needs the dose of at least one voxel as a "
            f"1D array, got shape {d.shape}; is the structure empty on the dose grid?"
        )
    return d


@dataclass(frozen=True)
class _VoxelQuadratic(Objective):
    """Mean over the voxels of the squared deviation from ``dose_gy`` on the penalised side."""

    dose_gy: float
    sense: ClassVar[str] = "target"
    symbol: ClassVar[str] = "="

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_level(f"{type(self).__name__} on {self.structure!r}", "dose_gy", self.dose_gy)

    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        d = _require_voxels(self, dose_gy)
        dev = _hinge(d - self.dose_gy, self.sense)
        n = d.size
        return float(np.dot(dev, dev) / n), (2.0 / n) * dev

    @property
    def lower_bound_gy(self) -> float | None:
        return self.dose_gy if self.sense in ("min", "target") else None

    @property
    def upper_bound_gy(self) -> float | None:
        return self.dose_gy if self.sense in ("max", "target") else None

    @property
    def voxel_ceiling_gy(self) -> float | None:
        return self.dose_gy if self.sense == "max" else None

    def describe(self) -> str:
        return f"{type(self).__name__} {self.structure} {self.symbol} {self.dose_gy:g} Gy (w {self.weight:g})"


@dataclass(frozen=True)
class MinDose(_VoxelQuadratic):
    """Every voxel at least ``dose_gy``: mean squared shortfall below it."""

    sense: ClassVar[str] = "min"
    symbol: ClassVar[str] = ">="
    kind: ClassVar[str] = "min_dose"


@dataclass(frozen=True)
class MaxDose(_VoxelQuadratic):
    """Every voxel at most ``dose_gy``: mean squared excess above it (OAR maxima)."""

    sense: ClassVar[str] = "max"
    symbol: ClassVar[str] = "<="
    kind: ClassVar[str] = "max_dose"


@dataclass(frozen=True)
class UniformDose(_VoxelQuadratic):
    """Every voxel at ``dose_gy``: mean squared deviation on both sides."""

    sense: ClassVar[str] = "target"
    symbol: ClassVar[str] = "="
    kind: ClassVar[str] = "uniform_dose"


@dataclass(frozen=True)
class PeakDose(_VoxelQuadratic):
    """SFRT peak: every vertex voxel at least ``dose_gy`` (the vertices high)."""

    sense: ClassVar[str] = "min"
    symbol: ClassVar[str] = ">="
    kind: ClassVar[str] = "peak"


@dataclass(frozen=True)
class ValleyDose(_VoxelQuadratic):
    """SFRT valley: every voxel between the vertices at most ``dose_gy`` (kept low)."""

    sense: ClassVar[str] = "max"
    symbol: ClassVar[str] = "<="
    kind: ClassVar[str] = "valley"


@dataclass(frozen=True)
class EdgeDose(_VoxelQuadratic):
    """GTV edge (outer shell of the GTV) held near ``dose_gy`` from both sides."""

    sense: ClassVar[str] = "target"
    symbol: ClassVar[str] = "~"
    kind: ClassVar[str] = "edge"


@dataclass(frozen=True)
class MeanDose(Objective):
    """The structure's mean dose at most ("max"), at least ("min") or at ("target") ``dose_gy``."""

    dose_gy: float
    sense: str = "max"
    kind: ClassVar[str] = "mean_dose"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"MeanDose on {self.structure!r}"
        _check_level(owner, "dose_gy", self.dose_gy)
        _check_sense(owner, self.sense)

    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        d = _require_voxels(self, dose_gy)
        dev = float(_hinge(np.array([d.mean() - self.dose_gy]), self.sense)[0])
        return dev * dev, np.full(d.size, 2.0 * dev / d.size)

    @property
    def lower_bound_gy(self) -> float | None:
        return self.dose_gy if self.sense in ("min", "target") else None

    @property
    def upper_bound_gy(self) -> float | None:
        return self.dose_gy if self.sense in ("max", "target") else None

    def describe(self) -> str:
        op = {"max": "<=", "min": ">=", "target": "="}[self.sense]
        return f"MeanDose {self.structure} {op} {self.dose_gy:g} Gy (w {self.weight:g})"


@dataclass(frozen=True)
class DVHPoint(Objective):
    """A DVH point: the volume receiving at least ``dose_gy`` at most/at least ``volume_pct`` %.

    "V20Gy <= 5 %" is ``DVHPoint(s, 20.0, 5.0, "max")``. The volume fraction
    above the dose is approximated by the mean of a logistic step of width
    ``smoothing_gy`` (default 3 % of ``dose_gy``, at least 0.05 Gy), and the
    penalty is the squared excess of that fraction over ``volume_pct`` / 100,
    scaled by ``dose_gy``^2 so that it is in Gy^2 like the others.
    """

    dose_gy: float
    volume_pct: float
    sense: str = "max"
    smoothing_gy: float | None = None
    kind: ClassVar[str] = "dvh"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"DVHPoint on {self.structure!r}"
        _check_level(owner, "dose_gy", self.dose_gy, allow_zero=False)
        if not (np.isfinite(self.volume_pct) and 0 <= self.volume_pct <= 100):
            raise PlanningError(f"{owner}: volume_pct must be 0-100 %, got {self.volume_pct!r}")
        if self.sense not in ("max", "min"):
            raise PlanningError(f"{owner}: sense must be 'max' or 'min', got {self.sense!r}")
        if self.smoothing_gy is not None:
            _check_level(owner, "smoothing_gy", self.smoothing_gy, allow_zero=False)

    @property
    def width_gy(self) -> float:
        if self.smoothing_gy is not None:
            return float(self.smoothing_gy)
        return max(0.03 * self.dose_gy, 0.05)

    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        d = _require_voxels(self, dose_gy)
        w = self.width_gy
        s = expit((d - self.dose_gy) / w)
        frac = float(s.mean())
        dev = float(_hinge(np.array([frac - self.volume_pct / 100.0]), self.sense)[0])
        scale = self.dose_gy**2
        grad = (2.0 * dev * scale / (d.size * w)) * s * (1.0 - s)
        return scale * dev * dev, grad

    def describe(self) -> str:
        op = "<=" if self.sense == "max" else ">="
        return f"DVHPoint {self.structure} V{self.dose_gy:g}Gy {op} {self.volume_pct:g} % (w {self.weight:g})"


@dataclass(frozen=True)
class GEUD(Objective):
    """Generalised equivalent uniform dose (Niemierko) ``(mean d^a)^(1/a)`` against ``dose_gy``.

    ``a`` >= 1 for serial/parallel OARs with sense "max" (a = 1 is the mean,
    large a approaches the maximum); ``a`` < 0 for targets with sense "min"
    (cold spots dominate). Voxel doses are floored at 1e-6 Gy for a < 0.
    """

    dose_gy: float
    a: float
    sense: str = "max"
    kind: ClassVar[str] = "geud"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"GEUD on {self.structure!r}"
        _check_level(owner, "dose_gy", self.dose_gy)
        _check_sense(owner, self.sense)
        if not np.isfinite(self.a) or self.a == 0:
            raise PlanningError(f"{owner}: the volume parameter a must be finite and non-zero")

    def geud_gy(self, dose_gy: NDArray[np.float64]) -> float:
        d = np.maximum(np.asarray(dose_gy, dtype=float), 1e-6)
        return float(np.mean(d**self.a) ** (1.0 / self.a))

    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        d = np.maximum(_require_voxels(self, dose_gy), 1e-6)
        g = self.geud_gy(d)
        dev = float(_hinge(np.array([g - self.dose_gy]), self.sense)[0])
        # dg/dd_i = (1/n) d_i^(a-1) g^(1-a)
        dg = (d ** (self.a - 1.0)) * g ** (1.0 - self.a) / d.size
        grad = 2.0 * dev * dg
        if self.a < 0:
            grad = np.where(np.asarray(dose_gy) > 1e-6, grad, 0.0)
        return dev * dev, grad

    @property
    def lower_bound_gy(self) -> float | None:
        return self.dose_gy if self.sense in ("min", "target") else None

    @property
    def upper_bound_gy(self) -> float | None:
        return self.dose_gy if self.sense in ("max", "target") else None

    def describe(self) -> str:
        op = {"max": "<=", "min": ">=", "target": "="}[self.sense]
        return f"GEUD(a={self.a:g}) {self.structure} {op} {self.dose_gy:g} Gy (w {self.weight:g})"


@dataclass(frozen=True)
class RingFallOff(Objective):
    """Dose fall-off outside a target: a maximum that drops with distance from ``target``.

    A voxel of ``structure`` (usually a ring around the target) at distance
    ``r`` mm from the target's voxels may receive at most
    ``high_gy - (high_gy - low_gy) * min(1, r / distance_mm)``; the penalty is
    the mean squared excess over that level.
    """

    target: str
    high_gy: float
    low_gy: float
    distance_mm: float
    kind: ClassVar[str] = "falloff"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"RingFallOff on {self.structure!r}"
        _check_level(owner, "high_gy", self.high_gy)
        _check_level(owner, "low_gy", self.low_gy)
        if self.low_gy > self.high_gy:
            raise PlanningError(
                f"{owner}: low_gy ({self.low_gy} Gy) must not exceed high_gy ({self.high_gy} Gy)"
            )
        if not (np.isfinite(self.distance_mm) and self.distance_mm > 0):
            raise PlanningError(f"{owner}: distance_mm must be positive, got {self.distance_mm!r}")
        if not isinstance(self.target, str) or not self.target:
            raise PlanningError(f"{owner}: target must name a structure, got {self.target!r}")

    @property
    def upper_bound_gy(self) -> float | None:
        return self.high_gy

    def levels_gy(self, distance_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """The allowed dose at distances ``distance_mm`` from the target."""
        t = np.minimum(np.asarray(distance_mm, dtype=float) / self.distance_mm, 1.0)
        return self.high_gy - (self.high_gy - self.low_gy) * t

    def prepare(self, context: VoxelContext) -> Objective:
        if self.target not in context.masks:
            raise PlanningError(
                f"RingFallOff on {self.structure!r}: its target {self.target!r} is not among the "
                f"structures on the dose grid ({', '.join(context.masks)})"
            )
        target = context.masks[self.target]
        if not target.any():
            raise PlanningError(
                f"RingFallOff on {self.structure!r}: target {self.target!r} has no voxels on the "
                "dose grid"
            )
        dist = ndimage.distance_transform_edt(~target, sampling=context.grid.spacing_mm)
        r = dist.ravel()[context.flat_index[self.structure]]
        return _PerVoxelMax(
            self.structure, weight=self.weight, levels=self.levels_gy(r), source=self.describe()
        )

    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        raise PlanningError(
            f"RingFallOff on {self.structure!r} needs the voxel distances from {self.target!r}: "
            "call prepare(context) and evaluate the result"
        )

    def describe(self) -> str:
        return (
            f"RingFallOff {self.structure} from {self.high_gy:g} to {self.low_gy:g} Gy over "
            f"{self.distance_mm:g} mm from {self.target} (w {self.weight:g})"
        )


@dataclass(frozen=True, eq=False)
class _PerVoxelMax(Objective):
    """Mean squared excess over a per-voxel maximum (a prepared :class:`RingFallOff`)."""

    levels: NDArray[np.float64] = field(kw_only=True)
    source: str = field(kw_only=True)
    kind: ClassVar[str] = "falloff"

    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        d = _require_voxels(self, dose_gy)
        if d.shape != self.levels.shape:
            raise PlanningError(
                f"{self.source}: got the dose of {d.size} voxels, prepared for {self.levels.size}"
            )
        dev = np.maximum(d - self.levels, 0.0)
        return float(np.dot(dev, dev) / d.size), (2.0 / d.size) * dev

    @property
    def voxel_ceiling_gy(self) -> NDArray[np.float64]:
        return self.levels

    def describe(self) -> str:
        return self.source


def check_objectives(objectives: Sequence[Objective]) -> None:
    """Refuse objectives that cannot hold together, or a list with none.

    On one structure, a lower bound (minimum, uniform level, minimum mean or
    gEUD, peak, edge) above an upper bound (maximum, valley, maximum mean or
    gEUD, fall-off ceiling) cannot be met: every mean and gEUD lies between the
    smallest and the largest voxel dose.
    """
    if not objectives:
        raise PlanningError("no objectives given; an optimised plan needs at least one")
    for obj in objectives:
        if not isinstance(obj, Objective):
            raise PlanningError(f"objectives must be Objective instances, got {type(obj).__name__}")
    by_structure: dict[str, list[Objective]] = {}
    for obj in objectives:
        by_structure.setdefault(obj.structure.casefold(), []).append(obj)
    for objs in by_structure.values():
        lows = [(o.lower_bound_gy, o) for o in objs if o.lower_bound_gy is not None]
        highs = [(o.upper_bound_gy, o) for o in objs if o.upper_bound_gy is not None]
        if not lows or not highs:
            continue
        lo, lo_obj = max(lows, key=lambda t: t[0])
        hi, hi_obj = min(highs, key=lambda t: t[0])
        if lo > hi and not math.isclose(lo, hi, rel_tol=1e-9):
            raise PlanningError(
                f"conflicting objectives on {lo_obj.structure!r}: '{lo_obj.describe()}' asks for at "
                f"least {lo:g} Gy but '{hi_obj.describe()}' allows at most {hi:g} Gy; lower the "
                "minimum or raise the maximum"
            )
