"""The result of checking a dose against one arm: one row per constraint and the verdict.

The verdict is

- "major deviation" if any row is a major deviation (or the plan's number of
  fractions differs from the arm's);
- else "incomplete" if a required constraint was not evaluated;
- else "minor deviation" if any row is a minor deviation;
- else "per protocol".

The result writes itself as JSON, CSV and a plain-text table.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lattice_plan.files import atomic_output_path, json_safe
from lattice_plan.qa.protocol_model import Outcome

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
        """The fields by name (the keys of :data:`CSV_COLUMNS`), the outcome as its text."""
        return {**asdict(self), "outcome": self.outcome.value}


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
        return json.dumps(json_safe(self.to_dict()), indent=2) + "\n"

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
