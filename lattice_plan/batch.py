"""Cohort runs on Dask: every case, every arm, every parameter set.

With no scheduler address a local Dask cluster is started, sized to the
machine (one single-threaded worker process per core, fewer if memory is
short); with ``scheduler="tcp://host:8786"`` tasks go to a running cluster
(``dask scheduler`` and ``dask worker`` on the department's machines).

Each task plans and evaluates one case/arm/parameter set with
:func:`lattice_plan.workflow.run_case` and writes its outputs under
``OUT/<case>/<arm>/<params>/``. Outputs are built in a hidden temporary
folder beside the final one and renamed into place when complete, with a
``task.json`` recording the content hash of the inputs and parameters, so:

- a re-run skips tasks whose folder holds a ``task.json`` with the same hash;
- a task that was interrupted (killed worker, Ctrl-C) left no final folder, or
  an older one without a matching hash, and is redone;
- a task that fails is recorded with its error and does not stop the others.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lattice_plan.cohort import CaseSource, Cohort, CohortTask
from lattice_plan.errors import LatticePlanError
from lattice_plan.files import atomic_output_path, prepare_output_dir, remove_stale_staging
from lattice_plan.geometry.patient import Patient

log = logging.getLogger(__name__)

TASK_RECORD = "task.json"
# Temporary folders of run_case (".<name>.partial-*", ".<name>.old-*") left by a killed task.
# Peak memory of one planning task on the built-in phantom (2.5 mm grid, 9 beams) is
# about 1.5 GB (benchmarks/bench_planning.py); leave room for the worker process itself.
MEMORY_PER_TASK_BYTES = 3 * 1024**3


@dataclass
class TaskRow:
    """One row of the cohort results table."""

    case: str
    arm: str
    params: dict[str, Any]
    status: str  # "ok", "failed" or "skipped" (completed in an earlier run)
    runtime_s: float = 0.0
    qa_verdict: str = ""
    error: str = ""
    output_dir: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "case": self.case,
            "arm": self.arm,
            "params": json.dumps(self.params, sort_keys=True),
            "status": self.status,
            "runtime_s": round(self.runtime_s, 3),
            "qa_verdict": self.qa_verdict,
            "error": self.error,
            "output_dir": self.output_dir,
        }
        row.update(_flatten(self.metrics))
        return row


@dataclass
class CohortResult:
    rows: list[TaskRow]
    table_csv: Path
    table_json: Path

    @property
    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0, "skipped": 0}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def default_worker_count() -> int:
    """One worker per core, capped so that every worker has MEMORY_PER_TASK_BYTES available."""
    cores = os.cpu_count() or 1
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except ImportError:
        avail = cores * MEMORY_PER_TASK_BYTES
    return max(1, min(cores, int(avail // MEMORY_PER_TASK_BYTES)))


def _load_case(case: CaseSource) -> tuple[Patient, dict[str, Any]]:
    """The patient and the run_case arguments that tie the outputs to its CT.

    The phantom's CT series is written with the plans; a DICOM case's outputs
    reference the CT it was read from and copy its RTSTRUCT's ROIs.
    """
    if case.is_phantom:
        from lattice_plan.phantoms import build_phantom

        return build_phantom(**(case.phantom or {})), {"write_ct": True}
    from lattice_plan.workflow import load_dicom_case

    loaded = load_dicom_case(case.ct_dir, case.rtstruct, gtv=case.gtv, oars=case.oars)
    return loaded.patient, {"ct_series": loaded.ct, "source_rtstruct": loaded.rtstruct_path}


def _task_overrides(task: CohortTask, settings: dict[str, Any]) -> dict[str, Any]:
    overrides = dict(settings)
    overrides.update(dict(task.params))
    overrides.setdefault("structures.gtv", task.case.gtv)
    if task.case.oars is not None:
        overrides.setdefault("structures.oars", list(task.case.oars))
    return overrides


def execute_task(
    task: CohortTask, settings: dict[str, Any], content_hash: str, out_root: str
) -> dict[str, Any]:
    """Run one task (on a Dask worker); never raises for a bad case: returns a row dict.

    :func:`~lattice_plan.workflow.run_case` builds the outputs in a temporary
    sibling folder and swaps it in when complete; ``task.json`` (with the
    content hash) is written last, so a task killed at any point is redone.
    """
    from lattice_plan.workflow import run_case

    final = Path(out_root) / task.relative_dir
    t0 = time.perf_counter()
    row = TaskRow(task.case.case_id, task.arm, dict(task.params), "ok", output_dir=str(final))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        (final / TASK_RECORD).unlink(missing_ok=True)
        patient, case_kwargs = _load_case(task.case)
        metrics = run_case(
            patient, [task.arm], final, overrides=_task_overrides(task, settings), **case_kwargs
        )
        plan_metrics = next(iter(metrics.get("plans", {}).values()), {})
        row.metrics = {k: v for k, v in plan_metrics.items() if k != "qa"}
        row.qa_verdict = str((plan_metrics.get("qa") or {}).get("verdict") or "")
        row.runtime_s = time.perf_counter() - t0
        with atomic_output_path(final / TASK_RECORD) as tmp:
            tmp.write_text(
                json.dumps(
                    {"content_hash": content_hash, "row": row.__dict__}, indent=2, default=str
                )
            )
    except Exception as exc:  # one bad case must not stop the cohort
        row.status = "failed"
        row.runtime_s = time.perf_counter() - t0
        row.error = (
            f"{type(exc).__name__}: {exc}"
            if isinstance(exc, LatticePlanError)
            else "".join(traceback.format_exception_only(type(exc), exc)).strip()
        )
        log.warning("task %s failed: %s", task.relative_dir, row.error)
    return row.__dict__


def _completed_row(task: CohortTask, content_hash: str, out_root: Path) -> TaskRow | None:
    record_path = out_root / task.relative_dir / TASK_RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("content_hash") != content_hash:
        return None
    row = TaskRow(**record["row"])
    row.status = "skipped"
    return row


def run_cohort(
    cohort: Cohort,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int, TaskRow], None] | None = None,
) -> CohortResult:
    """Plan and evaluate every task of ``cohort`` on Dask; write the results table (CSV and JSON).

    ``workers``: local worker processes (default: :func:`default_worker_count`);
    ``scheduler``: address of a running Dask scheduler (then ``workers`` is ignored);
    ``progress(done, total, row)`` is called as each task finishes or is skipped.
    """
    out_root = prepare_output_dir(out_dir)
    remove_stale_staging(out_root)
    tasks = cohort.tasks()
    total = len(tasks)
    rows: list[TaskRow] = []
    fingerprints: dict[str, str | Exception] = {}
    pending: list[tuple[CohortTask, str]] = []
    for task in tasks:
        cid = task.case.case_id
        if cid not in fingerprints:
            try:
                fingerprints[cid] = task.case.fingerprint()
            except (OSError, LatticePlanError) as exc:
                fingerprints[cid] = exc
        fp = fingerprints[cid]
        if isinstance(fp, Exception):
            row = TaskRow(
                cid,
                task.arm,
                dict(task.params),
                "failed",
                error=f"{type(fp).__name__}: {fp}",
            )
            rows.append(row)
            if progress:
                progress(len(rows), total, row)
            continue
        h = task.content_hash(fp, cohort.settings)
        done = _completed_row(task, h, out_root)
        if done is not None:
            rows.append(done)
            if progress:
                progress(len(rows), total, done)
        else:
            pending.append((task, h))

    if pending:
        rows.extend(
            _run_on_dask(
                pending, cohort.settings, out_root, workers, scheduler, len(rows), total, progress
            )
        )
    order = {
        (t.case.case_id, t.arm, json.dumps(dict(t.params), sort_keys=True)): n
        for n, t in enumerate(tasks)
    }
    rows.sort(key=lambda r: order.get((r.case, r.arm, json.dumps(r.params, sort_keys=True)), 0))
    csv_path, json_path = _write_tables(rows, out_root, cohort)
    return CohortResult(rows, csv_path, json_path)


def _run_on_dask(
    pending: list[tuple[CohortTask, str]],
    settings: dict[str, Any],
    out_root: Path,
    workers: int | None,
    scheduler: str | None,
    done_before: int,
    total: int,
    progress: Callable[[int, int, TaskRow], None] | None,
) -> list[TaskRow]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        n = workers or default_worker_count()
        threads = max(1, (os.cpu_count() or 1) // n)
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: several clusters may run at once
            memory_limit=MEMORY_PER_TASK_BYTES,
            env={"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)},
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    rows: list[TaskRow] = []
    try:
        futures, task_of = [], {}
        for task, h in pending:
            fut = client.submit(
                execute_task, task, settings, h, str(out_root), pure=False, retries=1
            )
            futures.append(fut)
            task_of[fut.key] = task
        for fut in as_completed(futures):
            try:
                row = TaskRow(**fut.result())
            except Exception as exc:  # the worker died (e.g. killed for memory) twice
                task = task_of[fut.key]
                row = TaskRow(
                    task.case.case_id,
                    task.arm,
                    dict(task.params),
                    "failed",
                    error=f"worker lost: {exc}",
                )
            rows.append(row)
            if progress:
                progress(done_before + len(rows), total, row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return rows


def _write_tables(rows: list[TaskRow], out_root: Path, cohort: Cohort) -> tuple[Path, Path]:
    flat = [r.flat() for r in rows]
    columns: list[str] = []
    for r in flat:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(flat)
    csv_path = out_root / "results.csv"
    json_path = out_root / "results.json"
    with atomic_output_path(csv_path) as tmp:
        tmp.write_text(buf.getvalue())
    summary = {"cohort": cohort.name, "tasks": len(rows), "rows": flat}
    with atomic_output_path(json_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    return csv_path, json_path
