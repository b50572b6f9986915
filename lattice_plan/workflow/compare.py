"""Side-by-side tables of plans: from output folders (their ``metrics.json``) or from RTDOSE files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lattice_plan.errors import InputFileError
from lattice_plan.workflow._common import DEFAULT_METRICS
from lattice_plan.workflow.exported import evaluate_dicom


@dataclass(frozen=True)
class PlanTable:
    """Rows: metric -> column (plan) -> value (None where a plan has none); columns in order."""

    columns: tuple[str, ...]
    rows: dict[str, dict[str, Any]]


def compare_folders(dirs: Sequence[str | os.PathLike[str]]) -> PlanTable:
    """The comparison rows (plan, physical, EQD2) of output folders written by ``run_case``.

    One folder: a column per plan; several: columns ``<folder>/<plan>``.
    """
    rows: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    for d in dirs:
        folder = Path(d)
        if not folder.is_dir():
            raise InputFileError(f"plan folder {str(d)!r} does not exist or is not a folder")
        path = folder / "metrics.json"
        if not path.is_file():
            raise InputFileError(
                f"{str(d)!r} holds no metrics.json; give folders written by 'lattice-plan plan' "
                "or 'demo'"
            )
        metrics = json.loads(path.read_text(encoding="utf-8"))
        for plan in metrics["plans"]:
            col = plan if len(dirs) == 1 else f"{folder.name}/{plan}"
            columns.append(col)
            for part in ("plan", "physical", "eqd2"):
                for metric, per in metrics["comparison"][part].items():
                    rows.setdefault(metric, {})[col] = per.get(plan)
    return PlanTable(tuple(columns), rows)


def compare_rtdose(
    rtdose_paths: Sequence[str | os.PathLike[str]],
    rtstruct_path: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    end_cap: str = "half-slice",
) -> PlanTable:
    """DVH ``metrics`` of every ROI of ``rtstruct_path`` under each RTDOSE (rows ``"<ROI> <metric>"``).

    ``names`` label the columns (default: the RTDOSE file names without suffix).
    """
    labels = list(names) if names else [Path(p).stem for p in rtdose_paths]
    if len(labels) != len(rtdose_paths):
        raise InputFileError(
            f"--names gives {len(labels)} names for {len(rtdose_paths)} --rtdose files"
        )
    rows: dict[str, dict[str, Any]] = {}
    for name, dose_path in zip(labels, rtdose_paths, strict=True):
        if not Path(dose_path).is_file():
            raise InputFileError(f"RTDOSE {str(dose_path)!r} does not exist or is not a file")
        result = evaluate_dicom(dose_path, rtstruct_path, metrics=metrics, end_cap=end_cap)
        for roi, entry in result["structures"].items():
            for m in metrics:
                rows.setdefault(f"{roi} {m}", {})[name] = entry.get(m)
    return PlanTable(tuple(labels), rows)
