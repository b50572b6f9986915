"""Plan specs by arm: the defaults, dotted overrides on top of a spec, and a spec as TOML data.

:func:`resolve_spec` gives the validated plan spec of an arm from a TOML file,
its parsed mapping or a :class:`~lattice_plan.planning.spec.PlanSpec` (by default
the arm's :data:`DEFAULT_SPECS`) with overrides such as
``{"lattice.spacing_mm": 25.0, "dose.spacing_mm": 3.0}``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from lattice_plan.errors import SpecError
from lattice_plan.files import toml_plain
from lattice_plan.planning.plan import Arm
from lattice_plan.planning.spec import PlanSpec, load_spec, parse_spec
from lattice_plan.tables import read_toml_file

#: What each arm is planned with when no spec is given: the prescriptions of the
#: built-in study protocol (SFRT 15 Gy x 1 to the vertices, SCART 15 Gy x 1 to the
#: STV, CRT 30 Gy in 10 fractions to the PTV); everything else is the builder's default.
DEFAULT_SPECS: dict[str, dict[str, Any]] = {
    "SFRT": {
        "plan": {"name": "SFRT", "arm": "SFRT"},
        "prescription": {"dose_gy": 15.0, "fractions": 1, "target": "Vertices", "method": "Dmean"},
    },
    "SCART": {
        "plan": {"name": "SCART", "arm": "SCART"},
        "prescription": {"dose_gy": 15.0, "fractions": 1, "target": "STV", "method": "D95%"},
    },
    "CRT": {
        "plan": {"name": "CRT", "arm": "CRT"},
        "prescription": {"dose_gy": 30.0, "fractions": 10, "target": "PTV", "method": "D95%"},
    },
}


def _dataclass_table(obj: Any) -> dict[str, Any]:
    return {
        f.name: toml_plain(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.init and getattr(obj, f.name) is not None
    }


def spec_to_mapping(spec: PlanSpec) -> dict[str, Any]:
    """The TOML data of ``spec``: ``parse_spec(spec_to_mapping(spec))`` gives the same plan spec."""
    data: dict[str, Any] = {
        "plan": {"name": spec.name, "arm": spec.arm.value, "description": spec.description},
        "structures": {"gtv": spec.gtv},
    }
    if spec.oars is not None:
        data["structures"]["oars"] = list(spec.oars)
    if spec.prescription is not None:
        rx = spec.prescription
        table: dict[str, Any] = {
            "dose_per_fraction_gy": rx.dose_per_fraction_gy,
            "fractions": rx.fractions,
        }
        for key in ("target", "method", "reference_point_lps_mm"):
            if getattr(rx, key) is not None:
                table[key] = toml_plain(getattr(rx, key))
        data["prescription"] = table
    beams = _dataclass_table(spec.beams)
    if beams:
        data["beams"] = beams
    if spec.dose_spacing_mm is not None:
        data["dose"] = {"spacing_mm": spec.dose_spacing_mm}
    crt_keys = {
        "ptv_margin_mm": "ptv_margin_mm",
        "penumbra_margin_mm": "penumbra_margin_mm",
        "crt_schedule": "schedule",
        "crt_arrangements": "arrangements",
        "max_segments_per_beam": "max_segments_per_beam",
    }
    crt = {
        key: toml_plain(getattr(spec, k))
        for k, key in crt_keys.items()
        if getattr(spec, k) is not None
    }
    if crt:
        data["crt"] = crt
    if spec.max_iterations is not None:
        data["optimiser"] = {"max_iterations": spec.max_iterations}
    if spec.lattice is not None:
        data["lattice"] = _dataclass_table(spec.lattice)
    if spec.core is not None:
        data["scart"] = _dataclass_table(spec.core)
    if spec.objectives is not None:
        data["objectives"] = [
            {"type": type(o).kind, **_dataclass_table(o)} for o in spec.objectives
        ]
    return data


def _read_spec_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML data of a plan-spec file (validated by parsing it, so errors name the file)."""
    load_spec(path)  # refuses a missing, unreadable or invalid file with the parser's message
    return read_toml_file(path, "plan spec")[1]


def apply_overrides(
    data: Mapping[str, Any], overrides: Mapping[str, Any], source: str = "<overrides>"
) -> dict[str, Any]:
    """A copy of plan-spec ``data`` with dotted ``overrides`` (``"table.key": value``) set.

    A prescription override of ``dose_gy`` replaces ``dose_per_fraction_gy`` and
    vice versa. The result still has to pass :func:`~lattice_plan.planning.spec.parse_spec`.
    """
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        if len(parts) != 2 or not all(parts):
            raise SpecError(
                f"{source}: override {dotted!r} is not a dotted plan-spec key 'table.key' "
                "(e.g. 'lattice.spacing_mm', 'dose.spacing_mm', 'optimiser.max_iterations')"
            )
        table, key = parts
        if table == "objectives":
            raise SpecError(
                f"{source}: objectives cannot be overridden key by key; give them in a spec file"
            )
        current = out.get(table, {})
        if not isinstance(current, Mapping):
            raise SpecError(f"{source}: [{table}] in the spec is not a table; cannot set {key!r}")
        current = dict(current)
        current[key] = value
        if table == "prescription":
            other = {"dose_gy": "dose_per_fraction_gy", "dose_per_fraction_gy": "dose_gy"}
            if key in other:
                current.pop(other[key], None)
        out[table] = current
    return out


def resolve_spec(
    arm: str,
    spec: Mapping[str, Any] | PlanSpec | str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> PlanSpec:
    """The validated plan spec of ``arm``: ``spec`` (default: DEFAULT_SPECS[arm]) with ``overrides``."""
    arm_value = Arm.parse(arm).value
    if isinstance(spec, PlanSpec) and not overrides:
        parsed = spec
    else:
        data: Mapping[str, Any]
        if spec is None:
            data, source = DEFAULT_SPECS[arm_value], f"default {arm_value} spec"
            if overrides and "crt.schedule" in overrides:
                # A schedule replaces the default spec's prescription (30 Gy in 10).
                data = {k: v for k, v in data.items() if k != "prescription"}
        elif isinstance(spec, PlanSpec):
            data, source = spec_to_mapping(spec), spec.source
        elif isinstance(spec, str | os.PathLike):
            data, source = _read_spec_mapping(spec), str(spec)
        elif isinstance(spec, Mapping):
            data, source = spec, "<spec>"
        else:
            raise SpecError(
                "a plan spec is a TOML file path, its parsed mapping or a PlanSpec, got "
                f"{type(spec).__name__}"
            )
        if overrides:
            data = apply_overrides(data, overrides, source)
            source = f"{source} + overrides {', '.join(sorted(map(str, overrides)))}"
        parsed = parse_spec(data, source=source)
    if parsed.arm.value != arm_value:
        raise SpecError(
            f"{parsed.source}: [plan] arm is {parsed.arm.value!r}, but it was given for the "
            f"{arm_value} arm; use a {arm_value} spec"
        )
    return parsed
