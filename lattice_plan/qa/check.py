"""Checking a dose against one arm of a protocol: the result table and the overall verdict.

Each constraint of the arm gives one row: the plan structure it was matched
to, the computed value, the limit, the outcome and the source. A structure
the plan lacks (or that cannot be evaluated, e.g. one outside the dose grid)
gives "not evaluated" with the reason, never a silent pass. The verdict is

- "major deviation" if any row is a major deviation (or the plan's number of
  fractions differs from the arm's);
- else "incomplete" if a required constraint was not evaluated;
- else "minor deviation" if any row is a minor deviation;
- else "per protocol".

Metric values come from :mod:`lattice_plan.analysis` (DVHs with sub-voxel
sampling; EQD2/BED with the plan's number of fractions and the constraint's
alpha/beta).
"""

from __future__ import annotations

import csv
import enum
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lattice_plan.analysis.dvh import DVH, evaluate_metric
from lattice_plan.analysis.metric_strings import MetricSpec
from lattice_plan.analysis.sfrt import evaluate_pvdr
from lattice_plan.errors import AnalysisError, ProtocolError
from lattice_plan.files import atomic_output_path
from lattice_plan.geometry.morphology import connected_components
from lattice_plan.geometry.morphology import union as union_of
from lattice_plan.geometry.structure import Structure, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.plan import Plan
from lattice_plan.qa import _metrics
from lattice_plan.qa.matching import match_structure
from lattice_plan.qa.protocol_model import Constraint, Outcome, Protocol, ProtocolArm

log = logging.getLogger(__name__)

CSV_COLUMNS: tuple[str, ...] = (
    "structure",
    "plan_structure",
    "metric",
    "comparison",
    "limit",
    "acceptable",
    "value",
    "unit",
    "outcome",
    "required",
    "source",
    "note",
)


class Verdict(enum.Enum):
    """The overall result of a plan against an arm."""

    PER_PROTOCOL = "per protocol"
    MINOR_DEVIATION = "minor deviation"
    MAJOR_DEVIATION = "major deviation"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class ConstraintResult:
    """One row of the result table.

    ``value`` is in ``unit`` ("Gy", "cc", "%" or "" for ratios), None when not
    evaluated; ``note`` says how the structure was matched or why it was not evaluated.
    """

    structure: str
    plan_structure: str | None
    metric: str
    comparison: str
    limit: str
    acceptable: str | None
    value: float | None
    unit: str
    outcome: Outcome
    required: bool
    source: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "structure": self.structure,
            "plan_structure": self.plan_structure,
            "metric": self.metric,
            "comparison": self.comparison,
            "limit": self.limit,
            "acceptable": self.acceptable,
            "value": self.value,
            "unit": self.unit,
            "outcome": self.outcome.value,
            "required": self.required,
            "source": self.source,
            "note": self.note,
        }


@dataclass(frozen=True)
class CheckResult:
    """The rows of one plan checked against one arm, and the verdict."""

    protocol: str
    protocol_version: str
    arm: str
    fractions: int
    arm_fractions: int
    rows: tuple[ConstraintResult, ...]
    template: bool = False
    plan: str = ""

    @property
    def fractions_match(self) -> bool:
        return self.fractions == self.arm_fractions

    @property
    def verdict(self) -> Verdict:
        outcomes = [r.outcome for r in self.rows]
        if Outcome.MAJOR_DEVIATION in outcomes or not self.fractions_match:
            return Verdict.MAJOR_DEVIATION
        if any(r.outcome is Outcome.NOT_EVALUATED and r.required for r in self.rows):
            return Verdict.INCOMPLETE
        if Outcome.MINOR_DEVIATION in outcomes:
            return Verdict.MINOR_DEVIATION
        return Verdict.PER_PROTOCOL

    def counts(self) -> dict[str, int]:
        """Number of rows per outcome."""
        return {o.value: sum(r.outcome is o for r in self.rows) for o in Outcome}

    # ---------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "protocol_version": self.protocol_version,
            "template": self.template,
            "plan": self.plan,
            "arm": self.arm,
            "fractions": self.fractions,
            "arm_fractions": self.arm_fractions,
            "verdict": self.verdict.value,
            "counts": self.counts(),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self) -> str:
        """The result as JSON (NaN written as null)."""
        data = self.to_dict()
        for row in data["rows"]:
            if row["value"] is not None and not math.isfinite(row["value"]):
                row["value"] = None
        return json.dumps(data, indent=2) + "\n"

    def to_csv(self) -> str:
        """The result table as CSV, one row per constraint (columns: :data:`CSV_COLUMNS`)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.rows:
            d = r.to_dict()
            d["value"] = "" if r.value is None else f"{r.value:.10g}"
            d["acceptable"] = d["acceptable"] or ""
            d["plan_structure"] = d["plan_structure"] or ""
            d["required"] = "yes" if r.required else "no"
            writer.writerow([d[c] for c in CSV_COLUMNS])
        return buf.getvalue()

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` atomically; returns the path."""
        return _write(path, self.to_json())

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_csv` to ``path`` atomically; returns the path."""
        return _write(path, self.to_csv())

    def display_rows(self) -> list[dict[str, str]]:
        """The rows as short texts for a report table: structure (with the plan's name when it
        differs), constraint (with the acceptable limit), value, outcome, source or reason."""
        out = []
        for r in self.rows:
            constraint = f"{r.metric} {r.comparison} {r.limit}"
            if r.acceptable:
                constraint += f" (acceptable {r.acceptable})"
            name = r.structure
            if r.plan_structure not in (None, r.structure):
                name += f" [{r.plan_structure}]"
            out.append(
                {
                    "structure": name,
                    "constraint": constraint,
                    "value": "-" if r.value is None else f"{r.value:.4g} {r.unit}".rstrip(),
                    "outcome": r.outcome.value + ("" if r.required else " (optional)"),
                    "source / reason": r.note if r.outcome is Outcome.NOT_EVALUATED else r.source,
                }
            )
        return out

    def format_table(self) -> str:
        """A plain-text table for the terminal, with the verdict last."""
        header = ("structure", "constraint", "value", "outcome", "source / reason")
        lines = [tuple(row[h] for h in header) for row in self.display_rows()]
        widths = [max([len(h)] + [len(line[n]) for line in lines]) for n, h in enumerate(header)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
        out = [
            f"{self.protocol} v{self.protocol_version}"
            + (" (TEMPLATE)" if self.template else "")
            + f", arm {self.arm}, {self.fractions} fraction(s)"
            + ("" if self.fractions_match else f" - the arm has {self.arm_fractions}"),
            fmt.format(*header),
        ]
        out += [fmt.format(*line) for line in lines]
        out.append(f"verdict: {self.verdict.value}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format_table()


def _write(path: str | os.PathLike[str], text: str) -> Path:
    target = Path(path)
    with atomic_output_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


# ---------------------------------------------------------------------------------------------
# Checking


class _StructureResolver:
    """Finds (and caches) the plan structure for each protocol structure, building unions."""

    def __init__(
        self,
        protocol: Protocol,
        structures: StructureSet,
        outside_grid: Mapping[str, str],
        allow_partial: bool,
    ) -> None:
        self.protocol = protocol
        self.structures = structures
        self.outside_grid = outside_grid
        self.allow_partial = allow_partial
        self.cache: dict[str, tuple[Structure | None, str]] = {}

    def resolve(self, name: str) -> tuple[Structure | None, str]:
        key = name.casefold()
        if key not in self.cache:
            self.cache[key] = self._resolve(name, ())
        return self.cache[key]

    def _resolve(self, name: str, seen: Sequence[str]) -> tuple[Structure | None, str]:
        spec = self.protocol.structure(name)
        match = match_structure(spec.name, spec.synonyms, self.structures.names)
        if match.plan_name is not None:
            return self.structures.get(match.plan_name), f"matched by {match.how}"
        if not spec.union_of or spec.name.casefold() in seen:
            return None, f"the plan has no structure {spec.name!r}" + (
                f" (or {', '.join(repr(s) for s in spec.synonyms)})" if spec.synonyms else ""
            )
        parts = []
        for part in spec.union_of:
            s, why = self._resolve(part, (*seen, spec.name.casefold()))
            if s is None:
                return None, (
                    f"the plan has no structure {spec.name!r}, and its union "
                    f"{' + '.join(spec.union_of)} lacks {part!r}: {why}"
                )
            if s.name.casefold() in self.outside_grid and not self.allow_partial:
                return None, (
                    f"the plan has no structure {spec.name!r}, and its union part {s.name!r} "
                    f"is not evaluable: {self.outside_grid[s.name.casefold()]}"
                )
            parts.append(s)
        union = union_of(*parts, name=" + ".join(s.name for s in parts))
        how = f"union of {' + '.join(s.name for s in parts)}"
        for s in parts:
            if s.name.casefold() in self.outside_grid:
                how += f"; {s.name}: {_partial_note(self.outside_grid[s.name.casefold()])}"
        return union, how


def check(
    plan_or_dose: Plan | Volume,
    structures: StructureSet | None,
    protocol: Protocol,
    arm: str | ProtocolArm,
    *,
    fractions: int | None = None,
    plan_name: str = "",
    subdivisions: int | None = None,
    unusable: Mapping[str, str] | None = None,
    allow_partial: bool = False,
) -> CheckResult:
    """Check a plan's dose against the constraints of one arm of ``protocol``.

    ``plan_or_dose`` is a :class:`~lattice_plan.planning.plan.Plan` with its dose
    (its structures and fractions are used unless given) or a dose Volume in Gy
    for the whole course, from any planning system. ``fractions`` is the plan's
    number of fractions (for EQD2/BED metrics and the fractionation check); by
    default the plan's, else the arm's. ``subdivisions`` is passed to the DVH
    sampling (sub-voxels per axis; None chooses by structure size).

    A structure reaching outside the dose grid is "not evaluated" unless
    ``allow_partial``: then it is judged on its part inside the grid and the row's
    note says how much lay outside (a maximum or a volume above a dose found on
    that part is a lower bound). ``unusable`` maps plan structure names to the
    reason they cannot be fully evaluated, for structures already cut to the dose
    grid (an RTSTRUCT rasterised on the RTDOSE grid, see
    :func:`~lattice_plan.qa.dicom_check.rois_outside_grid`), which the DVH itself
    cannot see: "not evaluated" with that reason, or with ``allow_partial``
    judged on what is there with the reason in the note.
    """
    if isinstance(plan_or_dose, Plan):
        plan = plan_or_dose
        dose = plan.require_dose()
        structures = plan.structures if structures is None else structures
        fractions = plan.fractions if fractions is None else fractions
        plan_name = plan_name or plan.name
    elif isinstance(plan_or_dose, Volume):
        dose = plan_or_dose
    else:
        raise ProtocolError(
            f"check needs a Plan or a dose Volume, got {type(plan_or_dose).__name__}"
        )
    if dose.unit != "Gy":
        raise ProtocolError(f"check needs a dose in Gy, got a Volume in {dose.unit!r}")
    if not isinstance(structures, StructureSet):
        raise ProtocolError(f"check needs the plan's StructureSet, got {type(structures).__name__}")
    arm_obj = arm if isinstance(arm, ProtocolArm) else protocol.arm(arm)
    if fractions is None:
        fractions = arm_obj.fractions
    if isinstance(fractions, bool) or int(fractions) != fractions or fractions < 1:
        raise ProtocolError(f"fractions must be a whole number >= 1, got {fractions!r}")
    fractions = int(fractions)
    if fractions != arm_obj.fractions:
        log.warning(
            "plan has %d fraction(s) but arm %s of %s has %d",
            fractions,
            arm_obj.name,
            protocol.name,
            arm_obj.fractions,
        )
    outside = {k.casefold(): v for k, v in (unusable or {}).items()}
    resolver = _StructureResolver(protocol, structures, outside, allow_partial)
    evaluator = _Evaluator(arm_obj, dose, resolver, outside, fractions, subdivisions, allow_partial)
    rows = tuple(evaluator.row(c) for c in arm_obj.constraints)
    return CheckResult(
        protocol=protocol.name,
        protocol_version=protocol.version,
        arm=arm_obj.name,
        fractions=fractions,
        arm_fractions=arm_obj.fractions,
        rows=rows,
        template=protocol.template,
        plan=plan_name,
    )


def _partial_note(outside: str) -> str:
    return f"judged on the part inside the dose grid only ({outside})"


def _row(
    c: Constraint, plan_structure: str | None, value: float | None, outcome: Outcome, note: str
) -> ConstraintResult:
    return ConstraintResult(
        structure=c.structure,
        plan_structure=plan_structure,
        metric=c.metric,
        comparison=c.comparison.value,
        limit=str(c.limit),
        acceptable=None if c.acceptable is None else str(c.acceptable),
        value=value,
        unit=c.result_unit,
        outcome=outcome,
        required=c.required,
        source=c.source,
        note=note,
    )


class _Evaluator:
    """Evaluates the constraints of one arm on one dose, one DVH per plan structure."""

    def __init__(
        self,
        arm: ProtocolArm,
        dose: Volume,
        resolver: _StructureResolver,
        outside_grid: Mapping[str, str],
        fractions: int,
        subdivisions: int | None,
        allow_partial: bool,
    ) -> None:
        self.arm = arm
        self.dose = dose
        self.resolver = resolver
        self.outside_grid = outside_grid
        self.dvhs: dict[str, DVH | str] = {} if allow_partial else dict(outside_grid)
        self.fractions = fractions
        self.subdivisions = subdivisions
        self.allow_partial = allow_partial

    def dvh(self, protocol_name: str) -> tuple[DVH | None, str | None, str]:
        """(DVH or None, plan structure name or None, how it matched or why it cannot be used)."""
        structure, how = self.resolver.resolve(protocol_name)
        if structure is None:
            return None, None, how
        key = structure.name.casefold()
        if key not in self.dvhs:
            try:
                self.dvhs[key] = DVH.from_dose(
                    self.dose,
                    structure,
                    subdivisions=self.subdivisions,
                    allow_partial=self.allow_partial,
                )
            except AnalysisError as exc:
                self.dvhs[key] = str(exc)
        dvh = self.dvhs[key]
        if isinstance(dvh, str):
            return None, structure.name, f"not evaluable: {dvh}"
        if dvh.covered_fraction < 1.0:
            lost = 100.0 * (1.0 - dvh.covered_fraction)
            how += f"; {_partial_note(f'{lost:.1f} % of it lies outside the dose grid')}"
        elif key in self.outside_grid:
            how += f"; {_partial_note(self.outside_grid[key])}"
        return dvh, structure.name, how

    def row(self, c: Constraint) -> ConstraintResult:
        spec = _metrics.parse(c.metric)
        if spec.kind == "pvdr" and spec.pvdr_variant == "profile":
            vertices, how = self.resolver.resolve(c.structure)
            if vertices is None:
                return _row(c, None, None, Outcome.NOT_EVALUATED, how)
            return self._profile_row(c, spec, vertices, how)
        dvh, plan_name, how = self.dvh(c.structure)
        if dvh is None:
            return _row(c, plan_name, None, Outcome.NOT_EVALUATED, how)
        if spec.kind == "pvdr":
            return self._pvdr_row(c, spec, dvh, plan_name, how)
        prescription_gy = (
            self.arm.prescription(c.prescription).dose_gy if spec.needs_prescription else None
        )
        value = evaluate_metric(
            dvh,
            spec,
            prescription_gy=prescription_gy,
            n_fractions=self.fractions if spec.needs_fractionation else None,
            alpha_beta_gy=c.alpha_beta_gy,
        )
        if spec.output_unit == "cGy":
            value /= 100.0
        return _row(c, plan_name, float(value), c.outcome(float(value)), how)

    def _pvdr_row(
        self, c: Constraint, spec: MetricSpec, peak: DVH, plan_name: str | None, how: str
    ) -> ConstraintResult:
        """PVDR as GTV D10/D90, mean vertex / mean valley dose, or max vertex / min valley dose
        (the definitions of the analysis module's SFRT metrics), from the cached DVHs; EQD2/BED
        variants map the DVH dose axes as the other EQD2/BED metrics do."""
        if spec.pvdr_variant == "D10/D90":
            dvh = self._quantity(spec, c, peak)
            high, low = dvh.dose_at_volume_percent(10.0), dvh.dose_at_volume_percent(90.0)
            what = f"{plan_name} D90"
        else:
            valley, valley_name, valley_how = self.dvh(str(c.valley))
            if valley is None:
                return _row(c, plan_name, None, Outcome.NOT_EVALUATED, f"valley: {valley_how}")
            plan_name = f"{plan_name} / {valley_name}"
            how = f"{how}; valley {valley_how}"
            peak, valley = self._quantity(spec, c, peak), self._quantity(spec, c, valley)
            if spec.pvdr_variant == "mean":
                high, low, what = peak.mean_gy, valley.mean_gy, f"{valley_name} mean dose"
            else:
                high, low, what = peak.max_gy, valley.min_gy, f"{valley_name} minimum dose"
        if not low > 0:
            return _row(
                c, plan_name, None, Outcome.NOT_EVALUATED, f"{what} is {low:g} Gy: no ratio"
            )
        value = high / low
        return _row(c, plan_name, value, c.outcome(value), how)

    def _profile_row(
        self, c: Constraint, spec: MetricSpec, vertices: Structure, how: str
    ) -> ConstraintResult:
        """Profile PVDR (analysis.sfrt) between the centroids of the vertices' separate pieces."""
        pieces = connected_components(vertices)
        if len(pieces) < 2:
            return _row(
                c,
                vertices.name,
                None,
                Outcome.NOT_EVALUATED,
                f"{len(pieces)} separate vertex in {vertices.name!r}; a profile needs two or more",
            )
        centres = np.array([p.centroid_lps_mm() for p in pieces])
        kwargs = {}
        if spec.needs_fractionation:
            kwargs = {"n_fractions": self.fractions, "alpha_beta_gy": float(c.alpha_beta_gy)}
        try:
            value = evaluate_pvdr(self.dose, spec, vertex_centers_lps_mm=centres, **kwargs)
        except AnalysisError as exc:
            return _row(c, vertices.name, None, Outcome.NOT_EVALUATED, f"not evaluable: {exc}")
        note = f"{how}; between {len(pieces)} vertex centres"
        return _row(c, vertices.name, value, c.outcome(value), note)

    def _quantity(self, spec: MetricSpec, c: Constraint, dvh: DVH) -> DVH:
        if spec.quantity == "EQD2":
            return dvh.to_eqd2(self.fractions, float(c.alpha_beta_gy))
        if spec.quantity == "BED":
            return dvh.to_bed(self.fractions, float(c.alpha_beta_gy))
        return dvh
