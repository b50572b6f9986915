"""Side-by-side metrics of several plans of one patient, with a reference (CRT) column.

The table is plain data (tuples of rows), with JSON and CSV views. Each row is
one structure and one metric string; physical and EQD2 rows differ only by the
``EQD2:`` prefix of the metric, evaluated with each plan's number of fractions
and the structure's alpha/beta (:func:`default_alpha_beta_gy` unless given).
Differences are plan value minus reference value, in the metric's unit.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lattice_plan.analysis.dvh import DVH, evaluate_metric
from lattice_plan.analysis.metric_strings import parse_metric
from lattice_plan.analysis.radiobiology import default_alpha_beta_gy
from lattice_plan.errors import AnalysisError
from lattice_plan.files import atomic_output_path
from lattice_plan.geometry.structure import Structure, StructureKind
from lattice_plan.geometry.volume import Volume

TARGET_METRICS: tuple[str, ...] = (
    "Dmean",
    "D98%",
    "D95%",
    "D50%",
    "D2%",
    "Dmax",
    "EQD2:Dmean",
    "EQD2:D95%",
    "EQD2:D2%",
)
OAR_METRICS: tuple[str, ...] = ("Dmax", "D0.03cc", "D2cc", "Dmean", "EQD2:D0.03cc", "EQD2:Dmean")

_TARGET_KINDS = (StructureKind.GTV, StructureKind.CTV, StructureKind.PTV)


def standard_metrics(structure: Structure) -> tuple[str, ...]:
    """The default metric set of a structure: target metrics for GTV/CTV/PTV, else OAR metrics."""
    return TARGET_METRICS if structure.kind in _TARGET_KINDS else OAR_METRICS


@dataclass(frozen=True)
class PlanDose:
    """A plan's dose (Gy, total over ``n_fractions``) and prescription (Gy, total) for comparison."""

    name: str
    dose: Volume
    n_fractions: int
    prescription_gy: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise AnalysisError(f"plan name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.dose, Volume) or self.dose.unit != "Gy":
            raise AnalysisError(f"plan {self.name!r}: dose must be a Volume in Gy")
        if (
            isinstance(self.n_fractions, bool)
            or int(self.n_fractions) != self.n_fractions
            or (self.n_fractions < 1)
        ):
            raise AnalysisError(
                f"plan {self.name!r}: n_fractions must be a positive whole number, got {self.n_fractions!r}"
            )


@dataclass(frozen=True)
class ComparisonRow:
    """One structure and metric: a value per plan and the difference from the reference plan."""

    structure: str
    metric: str
    unit: str
    values: tuple[float, ...]
    differences: tuple[float, ...]


@dataclass(frozen=True)
class ComparisonTable:
    """Metrics of several plans; ``reference`` names the column the differences refer to."""

    plan_names: tuple[str, ...]
    reference: str
    rows: tuple[ComparisonRow, ...]

    def __post_init__(self) -> None:
        if self.reference not in self.plan_names:
            raise AnalysisError(
                f"reference plan {self.reference!r} is not among the plans {list(self.plan_names)}"
            )

    def value(self, structure: str, metric: str, plan: str) -> float:
        """The value of ``metric`` for ``structure`` in ``plan``."""
        col = self._column(plan)
        for row in self.rows:
            if row.structure.casefold() == structure.casefold() and row.metric == metric:
                return row.values[col]
        raise AnalysisError(f"the table has no row for {structure!r} / {metric!r}")

    def _column(self, plan: str) -> int:
        if plan not in self.plan_names:
            raise AnalysisError(f"no plan {plan!r} in the table; plans: {list(self.plan_names)}")
        return self.plan_names.index(plan)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: plans, reference and one entry per row (None for NaN)."""
        return {
            "plans": list(self.plan_names),
            "reference": self.reference,
            "rows": [
                {
                    "structure": r.structure,
                    "metric": r.metric,
                    "unit": r.unit,
                    "values": dict(zip(self.plan_names, map(_finite, r.values), strict=True)),
                    "difference_from_reference": {
                        p: _finite(d)
                        for p, d in zip(self.plan_names, r.differences, strict=True)
                        if p != self.reference
                    },
                }
                for r in self.rows
            ],
        }

    def as_mapping(self) -> dict[str, dict[str, float | None]]:
        """``"structure metric [unit]" -> plan -> value`` (the shape the HTML report takes)."""
        return {
            f"{r.structure} {r.metric} [{r.unit}]": dict(
                zip(self.plan_names, map(_finite, r.values), strict=True)
            )
            for r in self.rows
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The table as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with atomic_output_path(path) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        return text

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """CSV: structure, metric, unit, one column per plan, then 'plan - reference' columns."""
        others = [p for p in self.plan_names if p != self.reference]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [
                "structure",
                "metric",
                "unit",
                *self.plan_names,
                *(f"{p} - {self.reference}" for p in others),
            ]
        )
        for r in self.rows:
            diffs = [
                d
                for p, d in zip(self.plan_names, r.differences, strict=True)
                if p != self.reference
            ]
            w.writerow([r.structure, r.metric, r.unit, *map(_fmt, r.values), *map(_fmt, diffs)])
        text = buf.getvalue()
        if path is not None:
            with atomic_output_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
        return text


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def _fmt(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.6g}"


def compare_plans(
    plans: Sequence[PlanDose],
    structures: Sequence[Structure],
    metrics: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    reference: str = "CRT",
    alpha_beta_gy: Mapping[str, float] | None = None,
) -> ComparisonTable:
    """Evaluate the same metrics on every plan and tabulate them against ``reference``.

    ``metrics``: one list for every structure, or a mapping structure name -> list;
    by default :func:`standard_metrics` of each structure. ``alpha_beta_gy``
    overrides the default alpha/beta (Gy) by structure name for ``EQD2:``/``BED:``
    metrics. Metrics relative to the prescription use each plan's ``prescription_gy``.
    """
    plans = list(plans)
    if not plans:
        raise AnalysisError("compare_plans needs at least one plan")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise AnalysisError(f"plan names must be unique, got {names}")
    if reference not in names:
        raise AnalysisError(
            f"reference plan {reference!r} is not among the plans {names}; pass reference=<name>"
        )
    ab_given = {k.casefold(): float(v) for k, v in (alpha_beta_gy or {}).items()}
    by_name = {s.name.casefold(): s for s in structures}
    unknown = sorted(k for k in ab_given if k not in by_name)
    if unknown:
        raise AnalysisError(f"alpha/beta given for unknown structures {unknown}")
    if isinstance(metrics, Mapping):
        missing = sorted(k for k in metrics if k.casefold() not in by_name)
        if missing:
            raise AnalysisError(
                f"metrics given for structures {missing} that are not in {[s.name for s in structures]}"
            )
    ref_col = names.index(reference)
    rows: list[ComparisonRow] = []
    for s in structures:
        if isinstance(metrics, Mapping):
            wanted = next((v for k, v in metrics.items() if k.casefold() == s.name.casefold()), ())
        elif metrics is None:
            wanted = standard_metrics(s)
        else:
            wanted = metrics
        if not wanted:
            continue
        specs = [parse_metric(m) for m in wanted]
        ab = ab_given.get(s.name.casefold(), default_alpha_beta_gy(s))
        dvhs = [DVH.from_dose(p.dose, s) for p in plans]
        for spec in specs:
            values = tuple(
                evaluate_metric(dvh, spec, p.prescription_gy, p.n_fractions, ab)
                for dvh, p in zip(dvhs, plans, strict=True)
            )
            diffs = tuple(v - values[ref_col] for v in values)
            rows.append(ComparisonRow(s.name, spec.text, spec.output_unit, values, diffs))
    return ComparisonTable(tuple(names), reference, tuple(rows))
