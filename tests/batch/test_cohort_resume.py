"""Cohort resume: which tasks a re-run skips and which it redoes, and what it cleans up.

The planning is replaced by a stub that records its calls (the real task takes minutes, and
what is tested here is the bookkeeping around it: task.json, its content hash, the temporary
folders); the tasks run in-process through the real ``execute_task``, which writes the real
task.json. A real local Dask cluster runs in tests/batch/test_batch_run.py.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from dask.distributed import WorkerPlugin

from lattice_plan import batch
from lattice_plan.batch import TASK_RECORD, run_cohort
from lattice_plan.cohort import load_cohort

COHORT = """
name = "resume-test"
arms = ["SCART", "CRT"]

[settings]
"dose.spacing_mm" = SPACING

[[cases]]
id = "a"
ct = "a/CT"
rtstruct = "a/RS.dcm"

[[cases]]
id = "b"
ct = "b/CT"
rtstruct = "b/RS.dcm"
"""


@pytest.fixture
def cohort_dir(tmp_path, monkeypatch):
    """Two DICOM-like cases (tiny files: the fingerprint hashes their bytes) and a stub planner;
    returns (folder, calls) where calls lists the (case folder, arm) of every planning run."""
    for case in ("a", "b"):
        (tmp_path / case / "CT").mkdir(parents=True)
        (tmp_path / case / "CT" / "ct1.dcm").write_bytes(b"ct " + case.encode())
        (tmp_path / case / "RS.dcm").write_bytes(b"rs " + case.encode())
    (tmp_path / "cohort.toml").write_text(textwrap.dedent(COHORT.replace("SPACING", "4.0")))
    calls: list[tuple[str, str]] = []

    def fake_run_case(patient, arms, out, overrides=None, **kwargs):
        out.mkdir(parents=True, exist_ok=True)
        calls.append((out.parent.parent.name, arms[0]))
        return {"plans": {arms[0]: {"total_mu_per_fraction": 100.0}}}

    monkeypatch.setattr(batch, "_load_case", lambda case: (None, {}))
    monkeypatch.setattr("lattice_plan.workflow.run_case", fake_run_case)

    def in_process(pending, settings, out_root, workers, scheduler, done_before, total, progress):
        return [
            batch.TaskRow(**batch.execute_task(t, settings, h, str(out_root))) for t, h in pending
        ]

    monkeypatch.setattr(batch, "_run_on_dask", in_process)
    return tmp_path, calls


def _run(folder):
    result = run_cohort(load_cohort(folder / "cohort.toml"), folder / "out", workers=1)
    return {(r.case, r.arm): r.status for r in result.rows}


ALL_OK = {("a", "SCART"): "ok", ("a", "CRT"): "ok", ("b", "SCART"): "ok", ("b", "CRT"): "ok"}


def test_unchanged_tasks_are_skipped_and_changed_settings_redo_all(cohort_dir):
    folder, calls = cohort_dir
    assert _run(folder) == ALL_OK and len(calls) == 4
    record = json.loads((folder / "out" / "a" / "crt" / "default" / TASK_RECORD).read_text())
    assert len(record["content_hash"]) == 64  # SHA-256 hex digest
    assert set(_run(folder).values()) == {"skipped"} and len(calls) == 4
    # Another dose grid spacing: every task's hash changes, every task is redone.
    cohort = folder / "cohort.toml"
    cohort.write_text(cohort.read_text().replace("= 4.0", "= 3.0"))
    assert _run(folder) == ALL_OK and len(calls) == 8


def test_changed_input_file_redoes_only_that_case(cohort_dir):
    folder, calls = cohort_dir
    _run(folder)
    (folder / "b" / "RS.dcm").write_bytes(b"rs b, re-contoured")
    statuses = _run(folder)
    assert statuses == {
        ("a", "SCART"): "skipped",
        ("a", "CRT"): "skipped",
        ("b", "SCART"): "ok",
        ("b", "CRT"): "ok",
    }
    assert sorted(calls[4:]) == [("b", "CRT"), ("b", "SCART")]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated mid-write by a full disk
        lambda text: "",  # empty
        lambda text: "\x00garbage{",  # corrupt
        lambda text: text.replace('"content_hash"', '"hash"'),  # valid JSON without the hash
    ],
    ids=["truncated", "empty", "corrupt", "no-hash"],
)
def test_damaged_task_record_is_redone_not_trusted(cohort_dir, damage):
    folder, calls = cohort_dir
    _run(folder)
    record = folder / "out" / "a" / "scart" / "default" / TASK_RECORD
    record.write_text(damage(record.read_text()))
    statuses = _run(folder)
    assert statuses[("a", "SCART")] == "ok" and calls[4:] == [("a", "SCART")]
    assert [s for k, s in statuses.items() if k != ("a", "SCART")] == ["skipped"] * 3
    assert json.loads(record.read_text())["content_hash"]  # rewritten whole


def test_temporary_folders_of_killed_tasks_are_removed(cohort_dir):
    """run_case builds in ``.<name>.partial-*`` and swaps via ``.<name>.old-*``: a task killed
    between the two leaves them behind; the next run removes both kinds, and nothing else."""
    folder, _ = cohort_dir
    _run(folder)
    arm_dir = folder / "out" / "a" / "crt"
    stale = [arm_dir / ".default.old-k3j2", arm_dir / ".default.partial-9x1"]
    for d in stale:
        (d / "figures").mkdir(parents=True)
        (d / "figures" / "dvh.png").write_bytes(b"png")
    keep = arm_dir / "notes-old-plan"
    keep.mkdir()
    _run(folder)
    assert [d.exists() for d in stale] == [False, False]
    assert keep.is_dir() and (arm_dir / "default" / TASK_RECORD).is_file()


class _DieOnTask(WorkerPlugin):
    """On every (re)started worker: the task's first step kills the worker process, as the
    kernel's out-of-memory killer or a node failure would."""

    def setup(self, worker):
        import os

        from lattice_plan import batch as worker_batch

        def die(case):
            os._exit(9)

        worker_batch._load_case = die


@pytest.mark.slow
def test_worker_killed_mid_task_is_a_failed_row_and_no_record(tmp_path):
    """A real local Dask cluster whose worker dies inside the task: the cohort still finishes,
    the task is a failed row saying the worker was lost, and no task.json claims it done (so
    the next run redoes it)."""
    import sys

    import cloudpickle
    import dask
    from dask.distributed import LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    (tmp_path / "a" / "CT").mkdir(parents=True)
    (tmp_path / "a" / "CT" / "ct1.dcm").write_bytes(b"ct")
    (tmp_path / "a" / "RS.dcm").write_bytes(b"rs")
    cohort = tmp_path / "cohort.toml"
    text = COHORT.replace("SPACING", "4.0").replace('arms = ["SCART", "CRT"]', 'arms = ["CRT"]')
    cohort.write_text(textwrap.dedent(text.split('[[cases]]\nid = "b"')[0]))
    # A task that has killed one worker is not given to another (the default tries 3 more).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster:
            cluster.get_client().register_plugin(_DieOnTask())
            result = run_cohort(
                load_cohort(cohort), tmp_path / "out", scheduler=cluster.scheduler_address
            )
    (row,) = result.rows
    assert (row.case, row.arm, row.status) == ("a", "CRT", "failed")
    assert row.error.startswith("worker lost")
    assert not (tmp_path / "out" / "a" / "crt" / "default" / TASK_RECORD).exists()
    assert json.loads(result.table_json.read_text())["tasks"] == 1
