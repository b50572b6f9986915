"""Protocol files: arm-specific dose constraints in TOML, read and validated field by field.

A protocol has a name and version, optional structure definitions (synonyms,
unions) and arms. Each arm has its number of fractions, its prescription(s)
and a list of constraints::

    [protocol]
    name = "Example"
    version = "1.0"

    [structures.SpinalCord]            # optional: synonyms and unions
    synonyms = ["Spinal Cord", "Cord"]

    [arms.SFRT]
    fractions = 1
    prescriptions = [{ target = "Vertices", dose = "15 Gy" }]

    [[arms.SFRT.constraints]]
    structure = "SpinalCord"
    metric = "D0.035cc"                 # any metric string of lattice_plan.analysis
    comparison = "<="                   # <, <=, >, >=
    limit = "14 Gy"                     # number and unit: Gy, cGy, cc, %; bare for ratios
    acceptable = "15 Gy"                # optional: beyond limit but within this = minor deviation
    source = "AAPM TG-101 Table 3"
    required = false                    # optional (default true), see below
    alpha_beta = "2 Gy"                 # only, and always, with an EQD2: or BED: metric

Peak-to-valley metrics: ``metric = "PVDR"`` (D10/D90 of ``structure``, the
GTV) reads one structure; ``PVDR[mean]`` (mean vertex over mean valley dose)
and ``PVDR[point]`` (maximum vertex over minimum valley dose) read the vertices
named by ``structure`` and the valley named by ``valley = "Valley"``;
``PVDR[profile]`` reads the dose along the lines joining neighbouring vertex
centres (the centroids of the separate pieces of ``structure``). Their limits
are plain numbers (ratios).

A structure the plan lacks gives a "not evaluated" row; ``required = false``
marks constraints whose organ need not exist for every patient (an oesophagus
limit for a lumbar lesion), so their absence does not hold back the verdict.
Every error names the file, the key (with its line where it can be found)
and what was expected.
"""

from __future__ import annotations

import enum
import math
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lattice_plan.errors import InputFileError, ProtocolError, SpecError
from lattice_plan.qa import _metrics

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
class Quantity:
    """A number with its unit: "Gy", "cc", "%" or "" (dimensionless)."""

    value: float
    unit: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ProtocolError(f"quantity value must be finite, got {self.value!r}")
        if self.unit not in ("Gy", "cc", "%", UNITLESS):
            raise ProtocolError(f"quantity unit must be Gy, cc, % or none, got {self.unit!r}")

    @classmethod
    def parse(cls, text: str | float | int) -> Quantity:
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
    limit: Quantity
    acceptable: Quantity | None = None
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
class Prescription:
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
class Arm:
    """A treatment arm: fractions, prescription(s) and constraints."""

    name: str
    fractions: int
    prescriptions: tuple[Prescription, ...]
    constraints: tuple[Constraint, ...]
    description: str = ""

    def prescription(self, which: str | None = None) -> Prescription:
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
    arms: tuple[Arm, ...]
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

    def arm(self, name: str) -> Arm:
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


# ---------------------------------------------------------------------------------------------
# Reading and validation


class _Locator:
    """Best-effort line numbers of keys in a TOML text, for messages."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, tuple[str, ...], bool]] = []
        for n, line in enumerate(self.lines):
            m = self._HEADER.match(line)
            if m:
                parts = tuple(p.strip().strip("\"'") for p in m.group(2).split("."))
                self.headers.append((n, parts, m.group(1) == "[["))

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """1-based line of the key at ``path`` (e.g. ("arms", "SFRT", "constraints", 2, "limit"))."""
        *table, key = path
        if isinstance(key, int):
            table, key = [*table, key], None
        names = tuple(p for p in table if isinstance(p, str))
        index = next((p for p in table if isinstance(p, int)), None)
        start = None
        if index is not None:
            hits = [n for n, parts, arr in self.headers if arr and parts == names]
            if index < len(hits):
                start = hits[index]
        else:
            hits = [n for n, parts, arr in self.headers if not arr and parts == names]
            start = hits[0] if hits else None
        if start is None:
            return None
        if key is None:
            return start + 1
        pattern = re.compile(rf"^\s*[\"']?{re.escape(str(key))}[\"']?\s*=")
        for n in range(start + 1, len(self.lines)):
            if self._HEADER.match(self.lines[n]):
                break
            if pattern.match(self.lines[n]):
                return n + 1
        return start + 1


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        out += f" #{p + 1}" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Reader:
    """Validates the decoded TOML dict, raising SpecError with file, key, line and expectation."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.locator = _Locator(text)

    def fail(self, path: Sequence[str | int], problem: str, expected: str) -> SpecError:
        line = self.locator.line_of(path) if path else None
        where = f"{self.source}: {_dotted(path) or '(top level)'}"
        if line is not None:
            where += f" (line {line})"
        return SpecError(f"{where}: {problem}; expected {expected}")

    def table(self, data: Any, path: Sequence[str | int], allowed: set[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(path, f"is a {type(data).__name__}", "a table")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise self.fail(
                [*path, unknown[0]],
                f"unknown key {unknown[0]!r}",
                f"one of {', '.join(sorted(allowed))}",
            )
        return data

    def string(
        self, data: dict, path: Sequence[str | int], key: str, default: str | None = None
    ) -> str:
        if key not in data:
            if default is None:
                raise self.fail([*path, key], "is missing", "a non-empty string")
            return default
        value = data[key]
        if not isinstance(value, str) or (default is None and not value.strip()):
            raise self.fail([*path, key], f"is {value!r}", "a non-empty string")
        return value.strip()

    def string_list(self, data: dict, path: Sequence[str | int], key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail([*path, key], f"is {value!r}", "a list of non-empty strings")
        return tuple(v.strip() for v in value)

    def quantity(
        self, data: dict, path: Sequence[str | int], key: str, units: Sequence[str], what: str
    ) -> Quantity:
        full = [*path, key]
        if key not in data:
            raise self.fail(full, "is missing", what)
        try:
            q = Quantity.parse(data[key])
        except ProtocolError as exc:
            raise self.fail(full, str(exc), what) from None
        if q.unit not in units:
            if q.unit == UNITLESS:
                problem = f"{data[key]!r} has no unit"
                if len(units) == 1 and units[0]:
                    problem += f' (write "{q.value:g} {units[0]}" if that is what is meant)'
            else:
                problem = f"{data[key]!r} is in {q.unit}"
            raise self.fail(full, problem, what)
        return q

    # ---------------------------------------------------------------- sections
    def protocol(self, data: dict[str, Any]) -> Protocol:
        self.table(data, [], {"protocol", "structures", "arms"})
        if "protocol" not in data:
            raise self.fail(["protocol"], "is missing", "a [protocol] table with name and version")
        head = self.table(
            data["protocol"], ["protocol"], {"name", "version", "description", "template"}
        )
        name = self.string(head, ["protocol"], "name")
        version = head.get("version")
        if isinstance(version, int | float) and not isinstance(version, bool):
            version = str(version)
        if not isinstance(version, str) or not version.strip():
            raise self.fail(
                ["protocol", "version"], f"is {version!r}", 'a version string, e.g. "1.0"'
            )
        template = head.get("template", False)
        if not isinstance(template, bool):
            raise self.fail(["protocol", "template"], f"is {template!r}", "true or false")
        structures = self.structures(data.get("structures", {}))
        arms_data = data.get("arms")
        if not isinstance(arms_data, dict) or not arms_data:
            raise self.fail(["arms"], "is missing or empty", "one [arms.NAME] table per arm")
        arms = tuple(self.arm(arm_name, arm_data) for arm_name, arm_data in arms_data.items())
        return Protocol(
            name=name,
            version=version.strip(),
            arms=arms,
            structures=structures,
            description=self.string(head, ["protocol"], "description", default=""),
            template=template,
            source=self.source,
        )

    def structures(self, data: Any) -> tuple[StructureSpec, ...]:
        path: list[str | int] = ["structures"]
        if not isinstance(data, dict):
            raise self.fail(path, f"is a {type(data).__name__}", "[structures.NAME] tables")
        specs = []
        for name, body in data.items():
            sp = [*path, name]
            body = self.table(body, sp, {"synonyms", "union_of"})
            specs.append(
                StructureSpec(
                    name,
                    self.string_list(body, sp, "synonyms"),
                    self.string_list(body, sp, "union_of"),
                )
            )
        names: dict[str, str] = {}
        for s in specs:
            for alias in (s.name, *s.synonyms):
                owner = names.setdefault(alias.casefold(), s.name)
                if owner != s.name:
                    raise self.fail(
                        [*path, s.name, "synonyms"],
                        f"{alias!r} also names structure {owner!r}",
                        "each name and synonym to belong to one structure only",
                    )
        defined = {s.name.casefold() for s in specs}
        for s in specs:
            for part in s.union_of:
                if part.casefold() not in defined or part.casefold() == s.name.casefold():
                    raise self.fail(
                        [*path, s.name, "union_of"],
                        f"names {part!r}, which is not another structure defined here",
                        f"names of other [structures.NAME] tables ({', '.join(sorted(x.name for x in specs))})",
                    )
        return tuple(specs)

    def arm(self, name: str, data: Any) -> Arm:
        path: list[str | int] = ["arms", name]
        data = self.table(data, path, {"description", "fractions", "prescriptions", "constraints"})
        fractions = data.get("fractions")
        if not isinstance(fractions, int) or isinstance(fractions, bool) or fractions < 1:
            raise self.fail(
                [*path, "fractions"], f"is {fractions!r}", "a whole number of fractions >= 1"
            )
        rx_data = data.get("prescriptions")
        if not isinstance(rx_data, list) or not rx_data:
            raise self.fail(
                [*path, "prescriptions"],
                f"is {rx_data!r}",
                'a list of {target = "NAME", dose = "15 Gy"} (total dose over all fractions)',
            )
        prescriptions = []
        for n, rx in enumerate(rx_data):
            rp = [*path, "prescriptions"]
            rx = self.table(rx, rp, {"target", "dose", "name"})
            target = self.string(rx, rp, "target")
            dose = self.quantity(
                rx, rp, "dose", ("Gy",), 'a total dose with its unit, e.g. "15 Gy"'
            )
            if dose.value <= 0:
                raise self.fail(rp, f"prescription {n + 1} dose is {dose}", "a positive dose")
            prescriptions.append(Prescription(target, dose.value, self.string(rx, rp, "name", "")))
        cons_data = data.get("constraints")
        if not isinstance(cons_data, list) or not cons_data:
            raise self.fail(
                [*path, "constraints"],
                "is missing or empty (an arm without constraints would pass any plan)",
                f"at least one [[arms.{name}.constraints]] table",
            )
        arm_stub = Arm(name, fractions, tuple(prescriptions), ())
        constraints = tuple(
            self.constraint(c, [*path, "constraints", n], arm_stub) for n, c in enumerate(cons_data)
        )
        return Arm(
            name,
            fractions,
            tuple(prescriptions),
            constraints,
            self.string(data, path, "description", default=""),
        )

    def constraint(self, data: Any, path: list[str | int], arm: Arm) -> Constraint:
        data = self.table(
            data,
            path,
            {
                "structure",
                "metric",
                "comparison",
                "limit",
                "acceptable",
                "source",
                "required",
                "alpha_beta",
                "prescription",
                "valley",
            },
        )
        structure = self.string(data, path, "structure")
        metric = self.string(data, path, "metric")
        try:
            spec = _metrics.parse(metric)
        except ProtocolError as exc:
            raise self.fail(
                [*path, "metric"],
                str(exc),
                "one of the accepted forms",
            ) from None
        result_unit = _metrics.metric_result_unit(metric)
        comparison_text = data.get("comparison")
        try:
            comparison = Comparison(comparison_text)
        except ValueError:
            raise self.fail(
                [*path, "comparison"], f"is {comparison_text!r}", 'one of "<", "<=", ">", ">="'
            ) from None
        expected = (
            f"a number with unit {result_unit} (what {metric} gives)"
            if result_unit
            else f"a plain number ({metric} is a ratio)"
        )
        limit = self.quantity(data, path, "limit", (result_unit,), expected)
        acceptable = (
            self.quantity(data, path, "acceptable", (result_unit,), expected)
            if "acceptable" in data
            else None
        )
        required = data.get("required", True)
        if not isinstance(required, bool):
            raise self.fail([*path, "required"], f"is {required!r}", "true or false")
        is_eqd2 = spec.needs_fractionation
        alpha_beta = None
        if "alpha_beta" in data:
            if not is_eqd2:
                raise self.fail(
                    [*path, "alpha_beta"],
                    f"is given but {metric} is a physical-dose metric",
                    "alpha_beta only with an EQD2: or BED: metric",
                )
            ab = self.quantity(
                data, path, "alpha_beta", ("Gy",), 'an alpha/beta with unit, e.g. "3 Gy"'
            )
            if ab.value <= 0:
                raise self.fail([*path, "alpha_beta"], f"is {ab}", "a positive alpha/beta in Gy")
            alpha_beta = ab.value
        elif is_eqd2:
            raise self.fail(
                [*path, "alpha_beta"],
                f"is missing for {metric}",
                'the alpha/beta to use, e.g. "3 Gy"',
            )
        prescription = data.get("prescription")
        if prescription is not None:
            if not isinstance(prescription, str):
                raise self.fail(
                    [*path, "prescription"], f"is {prescription!r}", "a prescription name or target"
                )
            try:
                arm.prescription(prescription)
            except ProtocolError as exc:
                raise self.fail(
                    [*path, "prescription"], str(exc), "a prescription of this arm"
                ) from None
        elif spec.needs_prescription and len(arm.prescriptions) > 1:
            raise self.fail(
                [*path, "prescription"],
                f"is missing: {metric} is relative to a prescription and the arm has "
                f"{len(arm.prescriptions)}",
                "the name or target of the prescription to use",
            )
        valley = None
        needs_valley = spec.kind == "pvdr" and spec.pvdr_variant in ("mean", "point")
        if needs_valley:
            if "valley" not in data:
                raise self.fail(
                    [*path, "valley"],
                    f"is missing: {metric} compares the vertices ({structure}) with a valley",
                    'the valley structure, e.g. valley = "Valley"',
                )
            valley = self.string(data, path, "valley")
        elif "valley" in data:
            raise self.fail(
                [*path, "valley"],
                f"is given but {metric} does not use a valley structure",
                "valley only with PVDR[mean] or PVDR[point]",
            )
        try:
            return Constraint(
                structure=structure,
                metric=metric,
                comparison=comparison,
                limit=limit,
                acceptable=acceptable,
                source=self.string(data, path, "source", default=""),
                required=required,
                alpha_beta_gy=alpha_beta,
                prescription=prescription,
                valley=valley,
                where=f"{self.source}: {_dotted(path)}",
                result_unit=result_unit,
            )
        except ProtocolError as exc:
            raise self.fail(
                [*path, "acceptable"], str(exc).split(": ", 2)[-1], "a looser limit"
            ) from None


def parse_protocol(text: str, source: str = "<string>") -> Protocol:
    """Read a protocol from TOML ``text``; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}; fix the syntax at that line") from None
    return _Reader(source, text).protocol(data)


def load_protocol(path: str | os.PathLike[str]) -> Protocol:
    """Read and validate a protocol TOML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"protocol file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read protocol file {str(p)!r}: {exc}") from None
    return parse_protocol(text, source=str(p))


__all__ = [
    "AT_LIMIT_RTOL",
    "Arm",
    "Comparison",
    "Constraint",
    "Outcome",
    "Prescription",
    "Protocol",
    "Quantity",
    "StructureSpec",
    "load_protocol",
    "parse_protocol",
]
