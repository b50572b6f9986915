"""Plan specs: a TOML file that describes one candidate plan, and the dispatcher that builds it.

A spec names the arm, the prescription, the structures, the geometry
parameters of the arm, the beams, the objectives and the dose grid, so that
candidate plans are scripted and versioned. Every field is validated; a
message names the file, the key and what was expected. Example (CRT)::

    [plan]
    name = "CRT 30 Gy/10"
    arm = "CRT"                      # CRT, SFRT or SCART

    [structures]
    gtv = "GTV"
    oars = ["CaudaEquina", "Kidney_L"]   # SFRT/SCART objectives; default: every OAR

    [prescription]
    dose_gy = 30.0                   # whole course (or dose_per_fraction_gy)
    fractions = 10
    target = "PTV"                   # optional; default per arm (PTV, Vertices, STV)
    method = "D95%"                  # optional; default per arm (D95%, Dmean, D95%)

    [crt]                            # CRT only
    ptv_margin_mm = 10.0
    penumbra_margin_mm = 7.0
    schedule = "30Gy/10"             # or "20Gy/5", "8Gy/1" (instead of [prescription])
    arrangements = ["single", "opposed", "near-obliques", "three-field", "box"]
    max_segments_per_beam = 2        # field-in-field segments per field (0: open fields)

    [beams]
    gantry_deg = [0.0, 180.0]        # CRT: any angles (default: chosen from the target)
    weights = [1.0, 1.0]             # CRT: relative dose at the isocentre
    # count = 9, arc_deg = 200.0, beamlet_mm = 5.0   (SFRT and SCART)

    [dose]
    spacing_mm = 2.5

SFRT specs take a ``[lattice]`` table (the fields of
:class:`lattice_plan.geometry.lattice.LatticeParameters`), SCART specs a
``[scart]`` table (the fields of
:class:`lattice_plan.planning.scart.ScartParameters`), both an
``[optimiser]`` table (``max_iterations``) and ``[[objectives]]`` entries::

    [[objectives]]
    type = "max_dose"                # a kind of lattice_plan.planning.objectives
    structure = "CaudaEquina"
    dose_gy = 8.0
    weight = 5.0

Objective types: min_dose, max_dose, uniform_dose, mean_dose, dvh, geud,
peak, valley, edge, falloff; their keys are the constructor arguments of the
matching class (``dose_gy``, ``volume_pct``, ``sense``, ``a``, ``target``,
``high_gy``, ``low_gy``, ``distance_mm``, ``smoothing_gy``, ``weight``).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import InputFileError, LatticePlanError, SpecError
from lattice_plan.geometry.lattice import LatticeParameters
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning import objectives as obj_module
from lattice_plan.planning.beams import BEAMLET_SIZES_MM
from lattice_plan.planning.crt import PTV_NAME, build_crt_plan, schedule_prescription
from lattice_plan.planning.crt_arrangements import check_arrangement_names
from lattice_plan.planning.crt_limits import LimitSet
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription
from lattice_plan.planning.scart import STV, ScartParameters, build_scart_plan
from lattice_plan.planning.sfrt import (
    GTV_EDGE,
    NORMAL_TISSUE,
    RING,
    VALLEY,
    VERTICES,
    build_sfrt_plan,
)

log = logging.getLogger(__name__)

# What each arm is prescribed to when the spec does not say (target structure, method).
DEFAULT_PRESCRIPTION_TARGETS: dict[Arm, tuple[str, str]] = {
    Arm.CRT: (PTV_NAME, "D95%"),
    Arm.SFRT: (VERTICES, "Dmean"),
    Arm.SCART: (STV, "D95%"),
}

# The structures each builder adds to the patient's (objectives and prescriptions may name them).
CREATED_STRUCTURES: dict[Arm, tuple[str, ...]] = {
    Arm.CRT: (PTV_NAME,),
    Arm.SFRT: (VERTICES, VALLEY, GTV_EDGE, RING, NORMAL_TISSUE),
    Arm.SCART: (STV, GTV_EDGE, RING, NORMAL_TISSUE),
}

OBJECTIVE_TYPES: dict[str, type[obj_module.Objective]] = {
    cls.kind: cls
    for cls in (
        obj_module.MinDose,
        obj_module.MaxDose,
        obj_module.UniformDose,
        obj_module.MeanDose,
        obj_module.DVHPoint,
        obj_module.GEUD,
        obj_module.PeakDose,
        obj_module.ValleyDose,
        obj_module.EdgeDose,
        obj_module.RingFallOff,
    )
}

_TABLES_BY_ARM: dict[str, tuple[Arm, ...]] = {
    "crt": (Arm.CRT,),
    "lattice": (Arm.SFRT,),
    "scart": (Arm.SCART,),
    "optimiser": (Arm.SFRT, Arm.SCART),
    "objectives": (Arm.SFRT, Arm.SCART),
}
_TOP_LEVEL = ("plan", "structures", "prescription", "beams", "dose", *_TABLES_BY_ARM)


# ---------------------------------------------------------------------------- the spec objects
@dataclass(frozen=True)
class PrescriptionSpec:
    """The prescription as the spec gives it; target and method fall back to the arm's defaults."""

    dose_per_fraction_gy: float
    fractions: int
    target: str | None = None
    method: str | None = None
    reference_point_lps_mm: tuple[float, float, float] | None = None

    def for_arm(self, arm: Arm) -> Prescription:
        target, method = DEFAULT_PRESCRIPTION_TARGETS[arm]
        return Prescription(
            self.dose_per_fraction_gy,
            self.fractions,
            self.target or target,
            self.method or ("point" if self.reference_point_lps_mm else method),
            self.reference_point_lps_mm,
        )


@dataclass(frozen=True)
class BeamSpec:
    """Beams: CRT gantry angles and weights, or the count, arc and beamlet size of optimised arms."""

    gantry_deg: tuple[float, ...] | None = None
    weights: tuple[float, ...] | None = None
    count: int | None = None
    arc_deg: float | None = None
    beamlet_mm: float | None = None


@dataclass(frozen=True, eq=False)
class PlanSpec:
    """One candidate plan, as read from a spec file (``source`` names it in messages)."""

    name: str
    arm: Arm
    gtv: str = "GTV"
    oars: tuple[str, ...] | None = None
    prescription: PrescriptionSpec | None = None
    ptv_margin_mm: float | None = None
    penumbra_margin_mm: float | None = None
    crt_schedule: str | None = None
    crt_arrangements: tuple[str, ...] | None = None
    max_segments_per_beam: int | None = None
    beams: BeamSpec = BeamSpec()
    lattice: LatticeParameters | None = None
    core: ScartParameters | None = None
    objectives: tuple[obj_module.Objective, ...] | None = None
    dose_spacing_mm: float | None = None
    max_iterations: int | None = None
    description: str = ""
    source: str = "<spec>"

    def resolved_prescription(self) -> Prescription | None:
        if self.prescription is None:
            return None if self.crt_schedule is None else schedule_prescription(self.crt_schedule)
        return self.prescription.for_arm(self.arm)

    def check_structures(self, structures: StructureSet) -> None:
        """Refuse a spec whose GTV, OARs or prescription target the structure set lacks."""
        where = self.source
        if self.gtv not in structures:
            raise SpecError(
                f"{where}: [structures] gtv = {self.gtv!r} is not among the structures "
                f"({', '.join(structures.names)}); name the GTV as it is in the structure set"
            )
        for oar in self.oars or ():
            if oar not in structures:
                raise SpecError(
                    f"{where}: [structures] oars: {oar!r} is not among the structures "
                    f"({', '.join(structures.names)})"
                )
        created = CREATED_STRUCTURES[self.arm]

        def known(n: str) -> bool:
            return n in structures or n.casefold() in {c.casefold() for c in created}

        if self.prescription is not None and self.prescription.target is not None:
            target = self.prescription.target
            if not known(target):
                raise SpecError(
                    f"{where}: [prescription] target = {target!r} is neither among the structures "
                    f"nor one that a {self.arm.value} plan creates ({', '.join(created)})"
                )
        for n, obj in enumerate(self.objectives or ()):
            names = [("structure", obj.structure)]
            if isinstance(obj, obj_module.RingFallOff):
                names.append(("target", obj.target))
            for key, value in names:
                if not known(value):
                    raise SpecError(
                        f"{where}: [objectives #{n + 1}] {key} = {value!r} is neither among the "
                        f"structures ({', '.join(structures.names)}) nor one that a "
                        f"{self.arm.value} plan creates ({', '.join(created)})"
                    )

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the arm's builder (only those the spec sets)."""
        kw: dict[str, Any] = {"name": self.name}
        rx = self.resolved_prescription()
        if rx is not None:
            kw["prescription"] = rx
        if self.dose_spacing_mm is not None:
            kw["dose_spacing_mm"] = self.dose_spacing_mm
        if self.arm is Arm.CRT:
            for key in ("ptv_margin_mm", "penumbra_margin_mm"):
                if getattr(self, key) is not None:
                    kw[key] = getattr(self, key)
            if self.beams.gantry_deg is not None:
                kw["gantry_deg"] = self.beams.gantry_deg
            if self.beams.weights is not None:
                kw["weights"] = self.beams.weights
            if self.crt_arrangements is not None:
                kw["arrangements"] = self.crt_arrangements
            if self.max_segments_per_beam is not None:
                kw["max_segments_per_beam"] = self.max_segments_per_beam
            return kw
        if self.oars is not None:
            kw["oars"] = self.oars
        if self.beams.count is not None:
            kw["n_beams"] = self.beams.count
        if self.beams.arc_deg is not None:
            kw["arc_deg"] = self.beams.arc_deg
        if self.beams.beamlet_mm is not None:
            kw["beamlet_mm"] = self.beams.beamlet_mm
        if self.objectives is not None:
            kw["objectives"] = self.objectives
        if self.max_iterations is not None:
            kw["max_iterations"] = self.max_iterations
        if self.arm is Arm.SFRT and self.lattice is not None:
            kw["lattice"] = self.lattice
        if self.arm is Arm.SCART and self.core is not None:
            kw["core"] = self.core
        return kw


# ---------------------------------------------------------------------------- field validation
_MISSING = object()


class _Table:
    """One TOML table being read: hands out its keys with checks, then refuses leftovers."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{source}: [{path}] must be a table, got {type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def fail(self, key: str, expected: str, value: Any = _MISSING) -> SpecError:
        got = "" if value is _MISSING else f", got {value!r}"
        return SpecError(f"{self.source}: [{self.path}] {key}: expected {expected}{got}")

    def has(self, key: str) -> bool:
        return key in self.data

    def take(self, key: str, default: Any = _MISSING) -> tuple[bool, Any]:
        """(True, value) if the table has ``key``, else (False, default); a required key
        (no default) that is missing is an error."""
        self.used.add(key)
        if key in self.data:
            return True, self.data[key]
        if default is _MISSING:
            raise SpecError(f"{self.source}: [{self.path}] is missing the key {key!r}")
        return False, default

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        return self.take(key, default)[1]

    def string(self, key: str, default: Any = _MISSING, *, allow_empty: bool = False) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if not isinstance(v, str) or not (allow_empty or v.strip()):
            raise self.fail(key, "a string" if allow_empty else "a non-empty string", v)
        return v

    def number(
        self, key: str, default: Any = _MISSING, *, positive: bool = False, minimum: float = -np.inf
    ) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            raise self.fail(key, "a number", v)
        if positive and v <= 0:
            raise self.fail(key, "a positive number", v)
        if v < minimum:
            raise self.fail(key, f"a number >= {minimum:g}", v)
        return float(v)

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int = 1) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.fail(key, f"an integer >= {minimum}", v)
        return int(v)

    def numbers(self, key: str, default: Any = _MISSING, *, non_negative: bool = False) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        what = (
            "a non-empty list of non-negative numbers"
            if non_negative
            else "a non-empty list of numbers"
        )
        if not isinstance(v, list) or not v:
            raise self.fail(key, what, v)
        for item in v:
            if isinstance(item, bool) or not isinstance(item, int | float) or not np.isfinite(item):
                raise self.fail(key, what, v)
            if non_negative and item < 0:
                raise self.fail(key, what, v)
        return tuple(float(item) for item in v)

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if not isinstance(v, list) or not all(isinstance(s, str) and s.strip() for s in v):
            raise self.fail(key, "a list of structure names (strings)", v)
        return tuple(v)

    def finish(self, allowed_hint: Sequence[str] | None = None) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            valid = sorted(allowed_hint if allowed_hint is not None else self.used)
            raise SpecError(
                f"{self.source}: [{self.path}] has unknown key(s) {', '.join(map(repr, extra))}; "
                f"valid keys: {', '.join(valid)}"
            )


def _coerce(table: _Table, key: str, value: Any, hint: Any) -> Any:
    """``value`` from TOML converted to the annotated type ``hint`` of a dataclass field."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        errors = []
        for arg in args:
            try:
                return _coerce(table, key, value, arg)
            except SpecError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is typing.Literal:
        options = typing.get_args(hint)
        if value not in options:
            raise table.fail(key, f"one of {', '.join(map(repr, options))}", value)
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise table.fail(key, "a list", value)
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(table, key, v, args[0]) for v in value)
        if len(args) != len(value):
            raise table.fail(key, f"a list of {len(args)} values", value)
        return tuple(_coerce(table, key, v, a) for v, a in zip(value, args, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            raise table.fail(key, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise table.fail(key, "an integer", value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise table.fail(key, "a number", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise table.fail(key, "a string", value)
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            try:
                return hint[str(value).upper()]
            except KeyError:
                options = ", ".join(repr(m.value) for m in hint)
                raise table.fail(key, f"one of {options}", value) from None
    return value  # other annotations: the constructor validates


def _dataclass_from_table(cls: type, table: _Table) -> Any:
    """An instance of dataclass ``cls`` from the table's keys (its field names), validated."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if not table.has(name):
            if required:
                table.raw(name)  # raises: missing key
            continue
        kwargs[name] = _coerce(table, name, table.raw(name), hints.get(name, Any))
    table.finish(allowed_hint=list(fields))
    try:
        return cls(**kwargs)
    except (LatticePlanError, TypeError, ValueError) as exc:
        raise SpecError(f"{table.source}: [{table.path}]: {exc}") from exc


# ---------------------------------------------------------------------------- the parser
def _parse_prescription(t: _Table) -> PrescriptionSpec:
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


def _parse_beams(t: _Table, arm: Arm) -> BeamSpec:
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
    if arc is not None and arc > 360:
        raise t.fail("arc_deg", "an arc of at most 360 degrees", arc)
    if arc is not None and arc < 360 and count == 1:
        raise t.fail("count", "at least 2 beams to approximate an arc", count)
    beamlet = t.number("beamlet_mm", None, positive=True)
    if beamlet is not None and beamlet not in BEAMLET_SIZES_MM:
        sizes = " or ".join(f"{b:g}" for b in BEAMLET_SIZES_MM)
        raise t.fail("beamlet_mm", f"{sizes} (mm)", beamlet)
    t.finish()
    return BeamSpec(count=count, arc_deg=arc, beamlet_mm=beamlet)


def _parse_objective(t: _Table) -> obj_module.Objective:
    kind = t.string("type")
    cls = OBJECTIVE_TYPES.get(kind)
    if cls is None:
        raise t.fail("type", f"one of {', '.join(OBJECTIVE_TYPES)}", kind)
    return _dataclass_from_table(cls, t)


def parse_spec(data: Mapping[str, Any], source: str = "<spec>") -> PlanSpec:
    """A :class:`PlanSpec` from the parsed TOML ``data``; ``source`` names the file in messages."""
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{source}: a plan spec is a TOML document (a table), got {type(data).__name__}"
        )
    extra = sorted(set(data) - set(_TOP_LEVEL))
    if extra:
        raise SpecError(
            f"{source}: unknown table(s) {', '.join(map(repr, extra))}; valid tables: "
            f"{', '.join(_TOP_LEVEL)}"
        )
    plan_t = _Table(data.get("plan", {}), "plan", source)
    arm_name = plan_t.string("arm")
    try:
        arm = Arm.parse(arm_name)
    except LatticePlanError:
        raise plan_t.fail("arm", "one of CRT, SFRT, SCART", arm_name) from None
    name = plan_t.string("name", arm.value)
    description = plan_t.string("description", "", allow_empty=True)
    plan_t.finish()
    for table, arms in _TABLES_BY_ARM.items():
        if table in data and arm not in arms:
            raise SpecError(
                f"{source}: [{table}] applies to {' and '.join(a.value for a in arms)} plans, "
                f"not to this {arm.value} plan; remove it or change [plan] arm"
            )

    st = _Table(data.get("structures", {}), "structures", source)
    gtv = st.string("gtv", "GTV")
    oars = st.strings("oars", None)
    st.finish()

    rx = (
        _parse_prescription(_Table(data["prescription"], "prescription", source))
        if "prescription" in data
        else None
    )
    beams = _parse_beams(_Table(data.get("beams", {}), "beams", source), arm)

    dose_t = _Table(data.get("dose", {}), "dose", source)
    dose_spacing = dose_t.number("spacing_mm", None, positive=True)
    dose_t.finish()

    ptv_margin = penumbra = schedule = arrangements = segments = None
    if "crt" in data:
        ct = _Table(data["crt"], "crt", source)
        ptv_margin = ct.number("ptv_margin_mm", None, minimum=0.0)
        penumbra = ct.number("penumbra_margin_mm", None, minimum=0.0)
        schedule = ct.string("schedule", None)
        arrangements = ct.raw("arrangements", None)
        segments = ct.integer("max_segments_per_beam", None, minimum=0)
        ct.finish()
        try:
            if schedule is not None:
                sched_rx = schedule_prescription(schedule)
                if rx is not None and (
                    rx.fractions != sched_rx.fractions
                    or abs(rx.dose_per_fraction_gy - sched_rx.dose_per_fraction_gy) > 1e-9
                ):
                    raise SpecError(
                        f"schedule {schedule!r} disagrees with [prescription] "
                        f"({rx.dose_per_fraction_gy * rx.fractions:g} Gy in {rx.fractions}); "
                        "give one of them"
                    )
            if arrangements is not None:
                if not isinstance(arrangements, list) or not all(
                    isinstance(a, str) for a in arrangements
                ):
                    raise ct.fail("arrangements", "a list of arrangement names", arrangements)
                arrangements = check_arrangement_names(arrangements)
        except LatticePlanError as exc:
            if isinstance(exc, SpecError) and str(exc).startswith(source):
                raise
            raise SpecError(f"{source}: [crt]: {exc}") from exc

    max_iterations = None
    if "optimiser" in data:
        ot = _Table(data["optimiser"], "optimiser", source)
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
            _parse_objective(_Table(item, f"objectives #{n + 1}", source))
            for n, item in enumerate(raw)
        )
        try:
            obj_module.check_objectives(objectives)
        except LatticePlanError as exc:
            raise SpecError(f"{source}: [[objectives]]: {exc}") from exc

    lattice = core = None
    if "lattice" in data:
        lattice = _dataclass_from_table(
            LatticeParameters, _Table(data["lattice"], "lattice", source)
        )
    if "scart" in data:
        core = _dataclass_from_table(ScartParameters, _Table(data["scart"], "scart", source))

    return PlanSpec(
        name=name,
        arm=arm,
        gtv=gtv,
        oars=oars,
        prescription=rx,
        ptv_margin_mm=ptv_margin,
        penumbra_margin_mm=penumbra,
        crt_schedule=schedule,
        crt_arrangements=arrangements,
        max_segments_per_beam=segments,
        beams=beams,
        lattice=lattice,
        core=core,
        objectives=objectives,
        dose_spacing_mm=dose_spacing,
        max_iterations=max_iterations,
        description=description,
        source=source,
    )


def load_spec(path: str | os.PathLike[str]) -> PlanSpec:
    """Read and validate a plan-spec TOML file."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"plan spec {str(p)!r} does not exist; check the path") from None
    except OSError as exc:
        raise InputFileError(f"cannot read plan spec {str(p)!r}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a UTF-8 text file; a plan spec is TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: not valid TOML: {exc}") from None
    return parse_spec(data, source=str(p))


def _as_spec(spec: PlanSpec | str | os.PathLike[str] | Mapping[str, Any]) -> PlanSpec:
    if isinstance(spec, PlanSpec):
        return spec
    if isinstance(spec, str | os.PathLike):
        return load_spec(spec)
    if isinstance(spec, Mapping):
        return parse_spec(spec)
    raise SpecError(
        f"a plan spec is a PlanSpec, a TOML file path or a parsed mapping, got {type(spec).__name__}"
    )


# ---------------------------------------------------------------------------- the dispatcher
def plan_patient(
    patient: Patient,
    spec: PlanSpec | str | os.PathLike[str] | Mapping[str, Any],
    *,
    engine: DoseEngine | None = None,
    progress: Callable[[int, float], None] | None = None,
    crt_limits: LimitSet | None = None,
) -> Plan:
    """Build the plan that ``spec`` describes for ``patient`` with the arm's builder.

    ``engine`` (a DoseEngine bound to the patient's CT) is reused when given;
    ``progress(iteration, objective)`` is passed to the optimised arms; ``crt_limits``
    (e.g. :func:`lattice_plan.qa.planning_limits` of the protocol arm) to the CRT builder.
    """
    s = _as_spec(spec)
    s.check_structures(patient.structures)
    kwargs = s.builder_kwargs()
    if engine is not None:
        kwargs["engine"] = engine
    log.info("building %s plan %r from %s", s.arm.value, s.name, s.source)
    if s.arm is Arm.CRT:
        plan = build_crt_plan(patient, s.gtv, limits=crt_limits, **kwargs)
    elif s.arm is Arm.SFRT:
        plan = build_sfrt_plan(patient, s.gtv, progress=progress, **kwargs)
    else:
        plan = build_scart_plan(patient, s.gtv, progress=progress, **kwargs)
    return replace(plan, info={**plan.info, "spec_source": s.source})


def plan_from_spec(
    spec: PlanSpec | str | os.PathLike[str] | Mapping[str, Any],
    ct: Volume,
    structures: StructureSet,
    *,
    engine: DoseEngine | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Plan:
    """Build the plan of ``spec`` on a CT (HU) and its structure set (same grid)."""
    if ct.unit != "HU":
        raise SpecError(f"plan_from_spec needs the CT in HU, got a volume in {ct.unit!r}")
    return plan_patient(Patient(ct, structures), spec, engine=engine, progress=progress)
