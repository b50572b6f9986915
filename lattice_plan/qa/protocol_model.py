"""The protocol objects: constraint quantities and comparisons, constraints, arms, protocols.

The file format is described in :mod:`lattice_plan.qa.protocol`. The protocol-side
classes are named apart from the planning ones (``ProtocolArm`` is not
``planning.plan.Arm``, ``ProtocolPrescription`` not ``planning.prescription.Prescription``).
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

from lattice_plan.errors import ProtocolError

# Relative tolerance within which a value counts as exactly at its limit (floating-point
# noise of volumes summed from voxels), so "<=" passes and "<" fails there.
AT_LIMIT_RTOL = 1e-9

_UNIT_ALIASES = {
    "gy": ("Gy", 1.0),
    "cgy": ("Gy", 0.01),
    "cc": ("cc", 1.0),
    "cm3": ("cc", 1.0),
    "ml": ("cc", 1.0),
    "%": ("%", 1.0),
}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z%0-9]*)\s*$")
UNITLESS = ""


class Comparison(enum.Enum):
    """How a metric value must relate to its limit."""

    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    @property
    def is_upper_bound(self) -> bool:
        """True for < and <= (the value must stay below the limit)."""
        return self in (Comparison.LT, Comparison.LE)

    def holds(self, value: float, limit: float) -> bool:
        """Whether ``value`` satisfies the comparison against ``limit``.

        A value within ``AT_LIMIT_RTOL`` (relative) of the limit is treated as
        equal to it: "<=" and ">=" hold there, "<" and ">" do not.
        """
        at_limit = math.isclose(value, limit, rel_tol=AT_LIMIT_RTOL, abs_tol=AT_LIMIT_RTOL)
        if at_limit:
            return self in (Comparison.LE, Comparison.GE)
        return value < limit if self.is_upper_bound else value > limit


class Outcome(enum.Enum):
    """The outcome of one constraint."""

    PER_PROTOCOL = "per protocol"
    MINOR_DEVIATION = "minor deviation"
    MAJOR_DEVIATION = "major deviation"
    NOT_EVALUATED = "not evaluated"


@dataclass(frozen=True)
class ConstraintQuantity:
    """A number with its unit: "Gy", "cc", "%" or "" (dimensionless)."""

    value: float
    unit: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ProtocolError(f"quantity value must be finite, got {self.value!r}")
        if self.unit not in ("Gy", "cc", "%", UNITLESS):
            raise ProtocolError(f"quantity unit must be Gy, cc, % or none, got {self.unit!r}")

    @classmethod
    def parse(cls, text: str | float | int) -> ConstraintQuantity:
        """Read "14 Gy", "1400 cGy" (stored as 14 Gy), "0.35 cc", "95 %", or a bare number."""
        if isinstance(text, bool):
            raise ProtocolError(f"expected a number with a unit, got {text!r}")
        if isinstance(text, int | float):
            return cls(float(text), UNITLESS)
        m = _QUANTITY.match(str(text))
        if not m:
            raise ProtocolError(f"cannot read {text!r} as a number and a unit (e.g. '14 Gy')")
        number, unit = float(m.group(1)), m.group(2)
        if not unit:
            return cls(number, UNITLESS)
        if unit.casefold() not in _UNIT_ALIASES:
            raise ProtocolError(
                f"unknown unit {unit!r} in {text!r}; use Gy, cGy, cc (cm3, ml) or %"
            )
        canonical, factor = _UNIT_ALIASES[unit.casefold()]
        return cls(number * factor, canonical)

    def __str__(self) -> str:
        number = f"{self.value:g}"
        if not self.unit:
            return number
        return f"{number} %" if self.unit == "%" else f"{number} {self.unit}"


@dataclass(frozen=True)
class StructureSpec:
    """A protocol structure: its name, synonyms, and optionally the union it may be built from.

    ``union_of`` names other protocol structures (e.g. Kidneys = Kidney_L + Kidney_R)
    whose masks are combined when the plan has no structure of this name.
    """

    name: str
    synonyms: tuple[str, ...] = ()
    union_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class Constraint:
    """One dose constraint of an arm.

    ``where`` locates it in its file (``arms.SFRT.constraints #2``) for messages.
    ``result_unit`` is the unit the metric gives ("Gy", "cc", "%" or "").
    ``valley`` names the valley structure of PVDR[mean] and PVDR[point], whose
    ``structure`` is then the vertices.
    """

    structure: str
    metric: str
    comparison: Comparison
    limit: ConstraintQuantity
    acceptable: ConstraintQuantity | None = None
    source: str = ""
    required: bool = True
    alpha_beta_gy: float | None = None
    prescription: str | None = None
    valley: str | None = None
    where: str = ""
    result_unit: str = "Gy"

    def __post_init__(self) -> None:
        if self.limit.unit != self.result_unit:
            raise ProtocolError(
                f"{self.where or 'constraint'}: limit {self.limit} has unit "
                f"{self.limit.unit or 'none'!r} but {self.metric} gives "
                f"{self.result_unit or 'a ratio (no unit)'!r}"
            )
        if self.acceptable is not None:
            if self.acceptable.unit != self.limit.unit:
                raise ProtocolError(
                    f"{self.where or 'constraint'}: acceptable {self.acceptable} must have the "
                    f"limit's unit ({self.limit.unit or 'none'})"
                )
            looser = (
                self.acceptable.value > self.limit.value
                if self.comparison.is_upper_bound
                else self.acceptable.value < self.limit.value
            )
            if not looser:
                raise ProtocolError(
                    f"{self.where or 'constraint'}: acceptable {self.acceptable} must be looser "
                    f"than the limit {self.limit} for {self.comparison.value} "
                    f"({'above' if self.comparison.is_upper_bound else 'below'} it)"
                )

    @property
    def text(self) -> str:
        """The constraint as a clinician writes it, e.g. "SpinalCord D0.035cc <= 14 Gy"."""
        return f"{self.structure} {self.metric} {self.comparison.value} {self.limit}"

    def outcome(self, value: float) -> Outcome:
        """Per protocol when the limit holds; minor deviation when only the acceptable
        limit holds (same comparison); major deviation otherwise (also for NaN)."""
        if not math.isfinite(value):
            return Outcome.MAJOR_DEVIATION
        if self.comparison.holds(value, self.limit.value):
            return Outcome.PER_PROTOCOL
        if self.acceptable is not None and self.comparison.holds(value, self.acceptable.value):
            return Outcome.MINOR_DEVIATION
        return Outcome.MAJOR_DEVIATION


@dataclass(frozen=True)
class ProtocolPrescription:
    """The total dose prescribed to a target over the arm's fractions."""

    target: str
    dose_gy: float
    name: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.dose_gy) or self.dose_gy <= 0:
            raise ProtocolError(
                f"prescription dose for {self.target!r} must be positive, got {self.dose_gy}"
            )


@dataclass(frozen=True)
class ProtocolArm:
    """A treatment arm: fractions, prescription(s) and constraints."""

    name: str
    fractions: int
    prescriptions: tuple[ProtocolPrescription, ...]
    constraints: tuple[Constraint, ...]
    description: str = ""

    def prescription(self, which: str | None = None) -> ProtocolPrescription:
        """The prescription called ``which`` (by name or target), or the only one."""
        if which is None:
            if len(self.prescriptions) != 1:
                raise ProtocolError(
                    f"arm {self.name!r} has {len(self.prescriptions)} prescriptions; "
                    "name the one to use (by name or target)"
                )
            return self.prescriptions[0]
        for p in self.prescriptions:
            if which.casefold() in (p.name.casefold(), p.target.casefold()):
                return p
        raise ProtocolError(
            f"arm {self.name!r} has no prescription {which!r}; it has "
            f"{', '.join(repr(p.name or p.target) for p in self.prescriptions) or 'none'}"
        )


@dataclass(frozen=True)
class Protocol:
    """A validated protocol: structures (with synonyms) and arms of constraints."""

    name: str
    version: str
    arms: tuple[ProtocolArm, ...]
    structures: tuple[StructureSpec, ...] = ()
    description: str = ""
    template: bool = False
    source: str = "<string>"
    _by_name: dict[str, StructureSpec] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ProtocolError(f"{self.source}: a protocol needs at least one arm")
        self._by_name.update({s.name.casefold(): s for s in self.structures})

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def arm(self, name: str) -> ProtocolArm:
        """The arm called ``name`` (case-insensitive); a clear error lists the arms."""
        for a in self.arms:
            if a.name.casefold() == str(name).casefold():
                return a
        raise ProtocolError(
            f"protocol {self.name!r} ({self.source}) has no arm {name!r}; "
            f"its arms are {', '.join(self.arm_names)}"
        )

    def structure(self, name: str) -> StructureSpec:
        """The structure definition for ``name`` (a bare one when the file defines none)."""
        return self._by_name.get(name.casefold(), StructureSpec(name))
