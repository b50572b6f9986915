"""Reading plan specs: a TOML file or mapping to a validated :class:`PlanSpec`.

The file format is described in :mod:`lattice_plan.planning.spec`; the
messages name the file, the [table] and key, and the value expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lattice_plan.errors import LatticePlanError, SpecError
from lattice_plan.geometry.lattice import LatticeParameters
from lattice_plan.planning import objectives as obj_module
from lattice_plan.planning.arcs import Arc, check_arcs
from lattice_plan.planning.beams import BEAMLET_SIZES_MM
from lattice_plan.planning.crt_spec import CrtTable, parse_crt_table
from lattice_plan.planning.deliverable import DeliverySpec
from lattice_plan.planning.plan import Arm
from lattice_plan.planning.scart import ScartParameters
from lattice_plan.planning.spec_model import (
    OBJECTIVE_TYPES,
    TABLES_BY_ARM,
    TOP_LEVEL_TABLES,
    BeamSpec,
    PlanSpec,
    PrescriptionSpec,
)
from lattice_plan.tables import TomlTable, dataclass_from_table, read_toml_file

#: Allowed range (inclusive) of every numeric plan-spec key, [table] -> key -> (low, high):
#: wide enough for any clinical plan, narrow enough that a typo (100000 beams, a 0.01 mm dose
#: grid) is refused before it runs for hours.
NUMERIC_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "prescription": {
        "dose_gy": (0.1, 150.0),
        "dose_per_fraction_gy": (0.1, 40.0),
        "fractions": (1, 60),
    },
    "beams": {"count": (1, 360), "arc_deg": (1.0, 360.0)},
    "dose": {"spacing_mm": (0.5, 20.0)},
    "crt": {
        "ptv_margin_mm": (0.0, 50.0),
        "penumbra_margin_mm": (0.0, 50.0),
        "max_segments_per_beam": (0, 20),
    },
    "optimiser": {"max_iterations": (1, 10000)},
    "lattice": {
        "spacing_mm": (1.0, 200.0),
        "si_spacing_mm": (1.0, 200.0),
        "gtv_margin_mm": (0.0, 50.0),
        "oar_clearance_mm": (0.0, 100.0),
        "max_vertices": (1, 500),
        "z_rule_window_mm": (0.0, 200.0),
        "z_rule_lateral_mm": (0.0, 200.0),
        "offset_step_mm": (0.5, 50.0),
        "rotation_step_deg": (1.0, 180.0),
    },
    "scart": {
        "periphery_dose_gy": (0.1, 40.0),
        "core_dose_gy": (0.1, 40.0),
        "margin_mm": (0.0, 50.0),
        "volume_fraction": (0.01, 1.0),
        "si_trim_mm": (0.0, 100.0),
    },
    "delivery": {
        "levels": (1, 100),
        "gantry_step_deg": (0.5, 30.0),
        "min_segment_mu": (0.0, 100.0),
        "min_segment_area_mm2": (0.0, 10000.0),
    },
}


def _check_ranges(data: Mapping[str, Any], source: str) -> None:
    """Refuse a numeric value outside :data:`NUMERIC_RANGES`, naming the key, value and range."""
    for table, ranges in NUMERIC_RANGES.items():
        t = data.get(table)
        if not isinstance(t, Mapping):
            continue
        for key, (low, high) in ranges.items():
            v = t.get(key)
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue  # absent, or of the wrong type: the table's parser says so
            if not low <= v <= high:
                raise SpecError(
                    f"{source}: [{table}] {key}: expected a number from {low:g} to {high:g}, "
                    f"got {v!r}"
                )


def _parse_prescription(t: TomlTable) -> PrescriptionSpec:
    fractions = t.integer("fractions")
    if t.has("dose_gy") == t.has("dose_per_fraction_gy"):
        raise SpecError(
            f"{t.source}: [{t.path}] needs exactly one of 'dose_gy' (whole course) and "
            "'dose_per_fraction_gy'"
        )
    if t.has("dose_gy"):
        per_fraction = t.number("dose_gy", positive=True) / fractions
    else:
        per_fraction = t.number("dose_per_fraction_gy", positive=True)
    target = t.string("target", None)
    method = t.string("method", None)
    point = t.numbers("reference_point_lps_mm", None)
    if point is not None and len(point) != 3:
        raise t.fail("reference_point_lps_mm", "three numbers (x, y, z in mm)", list(point))
    t.finish()
    spec = PrescriptionSpec(per_fraction, fractions, target, method, point)
    try:
        spec.for_arm(Arm.CRT)  # validates dose, fractions and method (target is a placeholder)
    except LatticePlanError as exc:
        raise SpecError(f"{t.source}: [{t.path}]: {exc}") from exc
    return spec


def _parse_beams(t: TomlTable, arm: Arm) -> BeamSpec:
    if arm is Arm.CRT:
        for key in ("count", "arc_deg", "beamlet_mm"):
            if t.has(key):
                raise t.fail(
                    key, "no such key in a CRT spec (give gantry_deg and weights)", t.raw(key)
                )
        gantry = t.numbers("gantry_deg", None)
        weights = t.numbers("weights", None, non_negative=True)
        if weights is not None:
            if gantry is None:
                raise t.fail("weights", "gantry_deg as well (one weight per gantry angle)")
            if len(weights) != len(gantry):
                raise t.fail(
                    "weights", f"{len(gantry)} weights, one per gantry angle", list(weights)
                )
            if sum(weights) <= 0:
                raise t.fail("weights", "at least one positive weight", list(weights))
        t.finish()
        return BeamSpec(gantry_deg=gantry, weights=weights)
    for key in ("gantry_deg", "weights"):
        if t.has(key):
            raise t.fail(
                key,
                f"no such key in a {arm.value} spec (give count, arc_deg, beamlet_mm)",
                t.raw(key),
            )
    count = t.integer("count", None, minimum=1)
    arc = t.number("arc_deg", None, positive=True)
    if arc is not None and arc < 360 and count == 1:
        raise t.fail("count", "at least 2 beams to approximate an arc", count)
    beamlet = t.number("beamlet_mm", None, positive=True)
    if beamlet is not None and beamlet not in BEAMLET_SIZES_MM:
        sizes = " or ".join(f"{b:g}" for b in BEAMLET_SIZES_MM)
        raise t.fail("beamlet_mm", f"{sizes} (mm)", beamlet)
    t.finish()
    return BeamSpec(count=count, arc_deg=arc, beamlet_mm=beamlet)


def _parse_objective(t: TomlTable) -> obj_module.Objective:
    kind = t.string("type")
    cls = OBJECTIVE_TYPES.get(kind)
    if cls is None:
        raise t.fail("type", f"one of {', '.join(OBJECTIVE_TYPES)}", kind)
    return dataclass_from_table(cls, t)


def parse_spec(data: Mapping[str, Any], source: str = "<spec>") -> PlanSpec:
    """A :class:`PlanSpec` from the parsed TOML ``data``; ``source`` names the file in messages."""
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{source}: a plan spec is a TOML document (a table), got {type(data).__name__}"
        )
    extra = sorted(set(data) - set(TOP_LEVEL_TABLES))
    if extra:
        raise SpecError(
            f"{source}: unknown table(s) {', '.join(map(repr, extra))}; valid tables: "
            f"{', '.join(TOP_LEVEL_TABLES)}"
        )
    _check_ranges(data, source)
    plan_t = TomlTable(data.get("plan", {}), "plan", source)
    arm_name = plan_t.string("arm")
    try:
        arm = Arm.parse(arm_name)
    except LatticePlanError:
        raise plan_t.fail("arm", "one of CRT, SFRT, SCART", arm_name) from None
    name = plan_t.string("name", arm.value)
    description = plan_t.string("description", "", allow_empty=True)
    plan_t.finish()
    for table, arms in TABLES_BY_ARM.items():
        if table in data and arm not in arms:
            raise SpecError(
                f"{source}: [{table}] applies to {' and '.join(a.value for a in arms)} plans, "
                f"not to this {arm.value} plan; remove it or change [plan] arm"
            )

    st = TomlTable(data.get("structures", {}), "structures", source)
    gtv = st.string("gtv", "GTV")
    oars = st.strings("oars", None)
    st.finish()

    rx = (
        _parse_prescription(TomlTable(data["prescription"], "prescription", source))
        if "prescription" in data
        else None
    )
    beams = _parse_beams(TomlTable(data.get("beams", {}), "beams", source), arm)

    dose_t = TomlTable(data.get("dose", {}), "dose", source)
    dose_spacing = dose_t.number("spacing_mm", None, positive=True)
    dose_t.finish()

    crt = CrtTable()
    if "crt" in data:
        crt = parse_crt_table(
            TomlTable(data["crt"], "crt", source),
            None if rx is None else rx.dose_per_fraction_gy,
            None if rx is None else rx.fractions,
        )

    max_iterations = None
    if "optimiser" in data:
        ot = TomlTable(data["optimiser"], "optimiser", source)
        max_iterations = ot.integer("max_iterations", None, minimum=1)
        ot.finish()

    objectives = None
    if "objectives" in data:
        raw = data["objectives"]
        if not isinstance(raw, list) or not raw:
            raise SpecError(
                f"{source}: objectives must be one or more [[objectives]] tables, got {raw!r}"
            )
        objectives = tuple(
            _parse_objective(TomlTable(item, f"objectives #{n + 1}", source))
            for n, item in enumerate(raw)
        )
        try:
            obj_module.check_objectives(objectives)
        except LatticePlanError as exc:
            raise SpecError(f"{source}: [[objectives]]: {exc}") from exc

    delivery = None
    if "delivery" in data:
        delivery = dataclass_from_table(
            DeliverySpec, TomlTable(data["delivery"], "delivery", source)
        )

    arcs = None
    if "arcs" in data:
        raw_arcs = data["arcs"]
        if not isinstance(raw_arcs, list) or not raw_arcs:
            raise SpecError(f"{source}: arcs must be one or more [[arcs]] tables, got {raw_arcs!r}")
        if delivery is None or delivery.method != "vmat":
            raise SpecError(
                f'{source}: [[arcs]] describe a VMAT plan; add [delivery] method = "vmat" '
                "or remove them"
            )
        arcs = tuple(
            dataclass_from_table(Arc, TomlTable(item, f"arcs #{n + 1}", source))
            for n, item in enumerate(raw_arcs)
        )
        try:
            check_arcs(arcs)
        except LatticePlanError as exc:
            raise SpecError(f"{source}: [[arcs]]: {exc}") from exc

    lattice = core = None
    if "lattice" in data:
        lattice = dataclass_from_table(
            LatticeParameters, TomlTable(data["lattice"], "lattice", source)
        )
    if "scart" in data:
        core = dataclass_from_table(ScartParameters, TomlTable(data["scart"], "scart", source))

    return PlanSpec(
        name=name,
        arm=arm,
        gtv=gtv,
        oars=oars,
        prescription=rx,
        ptv_margin_mm=crt.ptv_margin_mm,
        penumbra_margin_mm=crt.penumbra_margin_mm,
        crt_schedule=crt.schedule,
        crt_arrangements=crt.arrangements,
        max_segments_per_beam=crt.max_segments_per_beam,
        beams=beams,
        lattice=lattice,
        core=core,
        objectives=objectives,
        dose_spacing_mm=dose_spacing,
        max_iterations=max_iterations,
        delivery=delivery,
        arcs=arcs,
        description=description,
        source=source,
    )


def load_spec(path: str | os.PathLike[str]) -> PlanSpec:
    """Read and validate a plan-spec TOML file."""
    p, data = read_toml_file(path, "plan spec")
    return parse_spec(data, source=str(p))


def as_spec(spec: PlanSpec | str | os.PathLike[str] | Mapping[str, Any]) -> PlanSpec:
    """``spec`` as a PlanSpec: a PlanSpec as it is, a path loaded, a mapping parsed."""
    if isinstance(spec, PlanSpec):
        return spec
    if isinstance(spec, str | os.PathLike):
        return load_spec(spec)
    if isinstance(spec, Mapping):
        return parse_spec(spec)
    raise SpecError(
        f"a plan spec is a PlanSpec, a TOML file path or a parsed mapping, got {type(spec).__name__}"
    )
