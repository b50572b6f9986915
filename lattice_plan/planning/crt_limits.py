"""Dose limits the CRT builder plans against, and their values on a dose grid.

A :class:`DoseLimit` is one protocol constraint made concrete for one patient:
the plan structure it applies to (already matched, unions already built), the
metric (mean, maximum, minimum, dose to a volume, volume above a dose, volume
below a dose), physical or EQD2/BED with its alpha/beta, the comparison and
the limit with its acceptable (minor-deviation) value. The quality-assurance
layer makes them from a protocol arm (:mod:`lattice_plan.qa.planning_limits`);
this module only evaluates them, so planning does not depend on the protocol
format.

Values here are read at dose-grid voxel centres (the planner's quick view).
The protocol check samples each structure below the voxel size; the builder
plans to :data:`PLANNING_MARGIN` inside each limit so that both agree on the
outcome.

EQD2 and BED of a total dose D in n fractions (linear-quadratic model):
BED = D (1 + D / (n alpha/beta)), EQD2 = BED / (1 + 2 / (alpha/beta)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import PlanningError
from lattice_plan.geometry.structure import Structure

LimitKind = Literal["mean", "max", "min", "dose_at_volume", "volume_at_dose", "volume_below_dose"]
LIMIT_KINDS: tuple[str, ...] = (
    "mean",
    "max",
    "min",
    "dose_at_volume",
    "volume_at_dose",
    "volume_below_dose",
)
QUANTITIES: tuple[str, ...] = ("physical", "EQD2", "BED")
#: Planned inside each limit by this fraction (dose limits) or twice it (volume limits).
PLANNING_MARGIN = 0.03

PER_PROTOCOL, MINOR, MAJOR = "per protocol", "minor deviation", "major deviation"


@dataclass(frozen=True)
class LimitSet:
    """The limits a CRT plan is made against: where they come from (e.g. the protocol arm
    "CRT_30Gy_10fx"), the limits, and the constraints left out with the reason."""

    name: str
    limits: tuple[DoseLimit, ...] = ()
    left_out: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, eq=False)
class DoseLimit:
    """One dose constraint on one plan structure (see the module docstring).

    label: how it reads in reports ("Bowel_Small [Bowel] EQD2:V15Gy[cc] < 120 cc").
    structure: the plan structure (CT grid).
    kind: one of LIMIT_KINDS. ``volume``/``volume_unit`` ("cc" or "%") give the x of a
        dose_at_volume metric; ``dose``/``dose_unit`` ("Gy" or "%" of the prescription)
        the threshold of a volume metric.
    unit: the unit of the value and the limit: "Gy", "%" (of the prescription for dose
        metrics, of the structure for volume metrics) or "cc".
    upper: True for "<"/"<=" (the value must stay below the limit); ``strict`` for "<"/">".
    quantity: "physical", "EQD2" or "BED" (then ``alpha_beta_gy`` is required).
    """

    label: str
    structure: Structure
    kind: LimitKind
    unit: str
    upper: bool
    limit: float
    acceptable: float | None = None
    strict: bool = False
    volume: float | None = None
    volume_unit: str | None = None
    dose: float | None = None
    dose_unit: str | None = None
    quantity: str = "physical"
    alpha_beta_gy: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        where = f"dose limit {self.label!r}"
        if self.kind not in LIMIT_KINDS:
            raise PlanningError(f"{where}: kind must be one of {LIMIT_KINDS}, got {self.kind!r}")
        if self.quantity not in QUANTITIES:
            raise PlanningError(f"{where}: quantity must be one of {QUANTITIES}")
        if self.quantity != "physical" and not (
            self.alpha_beta_gy is not None and self.alpha_beta_gy > 0
        ):
            raise PlanningError(f"{where}: {self.quantity} needs a positive alpha_beta_gy")
        if not math.isfinite(self.limit):
            raise PlanningError(f"{where}: the limit must be finite, got {self.limit!r}")
        if self.kind == "dose_at_volume" and (
            self.volume is None or self.volume < 0 or self.volume_unit not in ("cc", "%")
        ):
            raise PlanningError(f"{where}: give a volume >= 0 in 'cc' or '%'")
        if self.kind in ("volume_at_dose", "volume_below_dose") and (
            self.dose is None or self.dose < 0 or self.dose_unit not in ("Gy", "%")
        ):
            raise PlanningError(f"{where}: give a threshold dose >= 0 in 'Gy' or '%'")
        if self.unit not in ("Gy", "%", "cc"):
            raise PlanningError(f"{where}: unit must be Gy, % or cc, got {self.unit!r}")
        if self.acceptable is not None and (
            self.acceptable < self.limit if self.upper else self.acceptable > self.limit
        ):
            raise PlanningError(f"{where}: the acceptable value must be looser than the limit")

    # ------------------------------------------------------------------ dose conversions
    def _factor(self) -> float:
        return 1.0 / (1.0 + 2.0 / self.alpha_beta_gy) if self.quantity == "EQD2" else 1.0  # type: ignore[operator]

    def effective_gy(self, dose_gy: NDArray[np.float64], fractions: int) -> NDArray[np.float64]:
        """The limit's quantity (physical, EQD2 or BED, Gy) of total physical doses."""
        d = np.asarray(dose_gy, dtype=float)
        if self.quantity == "physical":
            return d
        return d * (1.0 + d / (fractions * self.alpha_beta_gy)) * self._factor()  # type: ignore[operator]

    def physical_gy(self, effective_gy: float, fractions: int) -> float:
        """The total physical dose whose quantity (EQD2, BED) is ``effective_gy`` (inverse of
        :meth:`effective_gy`; the LQ dose is monotonic in the physical dose)."""
        if self.quantity == "physical":
            return float(effective_gy)
        nab = fractions * self.alpha_beta_gy  # type: ignore[operator]
        bed = effective_gy / self._factor()
        return float(nab * (math.sqrt(1.0 + 4.0 * bed / nab) - 1.0) / 2.0)

    def _threshold_gy(self, rx_gy: float) -> float:
        return float(self.dose) * (rx_gy / 100.0 if self.dose_unit == "%" else 1.0)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ evaluation
    def value(
        self, dose_gy: NDArray[np.float64], voxel_cc: float, fractions: int, rx_gy: float
    ) -> float:
        """The metric of the structure's voxel doses ``dose_gy`` (total physical Gy, one per
        voxel of ``voxel_cc``) for a plan of ``fractions`` prescribing ``rx_gy``."""
        d = np.asarray(dose_gy, dtype=float)
        if d.size == 0:
            return float("nan")
        e = self.effective_gy(d, fractions)
        if self.kind in ("volume_at_dose", "volume_below_dose"):
            thr = self._threshold_gy(rx_gy)
            n = int(np.count_nonzero(e >= thr if self.kind == "volume_at_dose" else e < thr))
            return 100.0 * n / d.size if self.unit == "%" else n * voxel_cc
        if self.kind == "mean":
            v = float(e.mean())
        elif self.kind == "max":
            v = float(e.max())
        elif self.kind == "min":
            v = float(e.min())
        else:
            v = float(np.sort(e)[::-1][self._rank(d.size, voxel_cc)])
        return 100.0 * v / rx_gy if self.unit == "%" else v

    def _rank(self, n: int, voxel_cc: float) -> int:
        """Index (hottest first) of the voxel whose dose is D(volume)."""
        vol_cc = self.volume * (n * voxel_cc / 100.0 if self.volume_unit == "%" else 1.0)  # type: ignore[operator]
        return int(min(max(math.ceil(vol_cc / voxel_cc - 1e-9) - 1, 0), n - 1))

    def outcome(self, value: float) -> str:
        """ "per protocol", "minor deviation" or "major deviation" of a metric value."""
        if not math.isfinite(value):
            return MAJOR
        if self._holds(value, self.limit):
            return PER_PROTOCOL
        if self.acceptable is not None and self._holds(value, self.acceptable):
            return MINOR
        return MAJOR

    def _holds(self, value: float, limit: float) -> bool:
        if math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-9):
            return not self.strict
        return value < limit if self.upper else value > limit

    def excess(self, value: float) -> float:
        """How far ``value`` lies beyond the limit, as a fraction of the limit (0 when met)."""
        if not math.isfinite(value):
            return math.inf
        over = value - self.limit if self.upper else self.limit - value
        return max(over, 0.0) / max(abs(self.limit), 1e-9)

    # ------------------------------------------------------------------ planning rows
    def planning_rows(
        self,
        current_gy: NDArray[np.float64],
        voxel_cc: float,
        fractions: int,
        rx_gy: float,
    ) -> tuple[NDArray[np.intp], float, bool] | None:
        """Which voxels to bound, the physical bound (Gy) and whether it is an upper bound,
        so that meeting the bound at every such voxel meets the limit with the planning margin.

        ``current_gy``: the voxel doses of the current weights; voxels allowed beyond the
        threshold (a volume limit's allowance) are the ones beyond it now. None for a
        mean limit (see :meth:`mean_row_factor`).
        """
        n = current_gy.size
        m = PLANNING_MARGIN
        order = np.argsort(-current_gy, kind="stable")  # hottest first
        if self.kind == "mean":
            return None
        if self.kind in ("max", "min"):
            target = self._planned_dose(self.limit, rx_gy, m)
            return np.arange(n), self.physical_gy(target, fractions), self.kind == "max"
        if self.kind == "dose_at_volume":
            target = self._planned_dose(self.limit, rx_gy, m)
            k = self._rank(n, voxel_cc)
            idx = order[k:] if self.upper else order[: k + 1]
            return idx, self.physical_gy(target, fractions), self.upper
        # Volume limits: allow the planned volume beyond the threshold, bound the rest.
        thr = self.physical_gy(self._threshold_gy(rx_gy), fractions)
        per_voxel = 100.0 / n if self.unit == "%" else voxel_cc
        planned = self.limit * ((1 - 2 * m) if self.upper else (1 + 2 * m))
        allowed = math.floor(planned / per_voxel) if self.upper else math.ceil(planned / per_voxel)
        allowed = min(max(allowed, 0), n)
        if self.kind == "volume_at_dose":
            # V >= thr at most `allowed` voxels (upper) / at least `allowed` (lower).
            return (order[allowed:], thr, True) if self.upper else (order[:allowed], thr, False)
        # Volume below the threshold: at least `allowed` voxels below it (lower bound on CV).
        if self.upper:
            return order[: max(n - allowed, 0)], thr, False
        return order[n - allowed :], thr, True

    def _planned_dose(self, limit: float, rx_gy: float, margin: float) -> float:
        gy = limit * rx_gy / 100.0 if self.unit == "%" else limit
        return gy * ((1 - margin) if self.upper else (1 + margin))

    def mean_row_factor(
        self, current_gy: NDArray[np.float64], fractions: int, rx_gy: float
    ) -> tuple[NDArray[np.float64], float]:
        """(per-voxel factors f, planned bound) with mean(f * dose) <= bound approximating the
        mean limit: exact for physical dose, the LQ dose linearised at ``current_gy``."""
        if self.quantity == "physical":
            f = np.ones_like(current_gy)
        else:
            f = (1.0 + current_gy / (fractions * self.alpha_beta_gy)) * self._factor()  # type: ignore[operator]
        return f, self._planned_dose(self.limit, rx_gy, PLANNING_MARGIN)
