"""Reading protocol files: the decoded TOML validated field by field, with line numbers.

Every error names the file, the key (with its line where it can be found) and
what was expected; the format is described in :mod:`lattice_plan.qa.protocol`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lattice_plan.errors import ProtocolError, SpecError
from lattice_plan.qa import metric_bridge
from lattice_plan.qa.protocol_model import (
    UNITLESS,
    Comparison,
    Constraint,
    ConstraintQuantity,
    Protocol,
    ProtocolArm,
    ProtocolPrescription,
    StructureSpec,
)


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


class ProtocolReader:
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
    ) -> ConstraintQuantity:
        full = [*path, key]
        if key not in data:
            raise self.fail(full, "is missing", what)
        try:
            q = ConstraintQuantity.parse(data[key])
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

    def arm(self, name: str, data: Any) -> ProtocolArm:
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
            prescriptions.append(
                ProtocolPrescription(target, dose.value, self.string(rx, rp, "name", ""))
            )
        cons_data = data.get("constraints")
        if not isinstance(cons_data, list) or not cons_data:
            raise self.fail(
                [*path, "constraints"],
                "is missing or empty (an arm without constraints would pass any plan)",
                f"at least one [[arms.{name}.constraints]] table",
            )
        arm_stub = ProtocolArm(name, fractions, tuple(prescriptions), ())
        constraints = tuple(
            self.constraint(c, [*path, "constraints", n], arm_stub) for n, c in enumerate(cons_data)
        )
        return ProtocolArm(
            name,
            fractions,
            tuple(prescriptions),
            constraints,
            self.string(data, path, "description", default=""),
        )

    def constraint(self, data: Any, path: list[str | int], arm: ProtocolArm) -> Constraint:
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
            spec = metric_bridge.parse(metric)
        except ProtocolError as exc:
            raise self.fail(
                [*path, "metric"],
                str(exc),
                "one of the accepted forms",
            ) from None
        result_unit = metric_bridge.metric_result_unit(metric)
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
