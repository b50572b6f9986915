"""A small cohort on a local Dask cluster: rows, failures, skipping and redoing tasks."""

import json
import shutil
import textwrap

import pytest

from lattice_plan.batch import TASK_RECORD, run_cohort
from lattice_plan.cli import main
from lattice_plan.cohort import load_cohort
from lattice_plan.phantoms import build_phantom
from lattice_plan.workflow import run_case

# Coarse but complete: 5 mm phantom, 6 mm dose grid, few optimiser iterations.
PHANTOM = "spacing_mm = [5.0, 5.0, 5.0], length_mm = 140.0"
SETTINGS = {"dose.spacing_mm": 6.0, "optimiser.max_iterations": 6}
COHORT = f"""
name = "test-cohort"
arms = ["SCART", "CRT"]

[settings]
"dose.spacing_mm" = 6.0
"optimiser.max_iterations" = 6

[[cases]]
id = "small"
phantom = {{ {PHANTOM}, mass_diameters_mm = [56.0, 50.0, 60.0] }}

[[cases]]
id = "default"
phantom = {{ {PHANTOM} }}

[[cases]]
id = "large"
phantom = {{ {PHANTOM}, mass_diameters_mm = [70.0, 60.0, 74.0] }}

[[cases]]
id = "broken"
ct = "missing/CT"
rtstruct = "missing/RS.dcm"
"""


# Regression values (recorded 2026-12-06): the verdicts of the six tasks on this coarse set-up.
# Six optimiser iterations on a 6 mm grid leave every plan short of some row of its arm (the
# demo's finer plans meet SCART's, tests/qa/test_qa_phantom_plans.py), so each is a major
# deviation; a verdict that changes means the planning or the QA changed, and is worth a look.
REGRESSION_VERDICTS = {
    (case, arm): "major deviation"
    for case in ("small", "default", "large")
    for arm in ("SCART", "CRT")
}


def _first_run(root):
    path = root / "cohort.toml"
    path.write_text(textwrap.dedent(COHORT))
    seen = []
    result = run_cohort(
        load_cohort(path), root / "out", workers=2, progress=lambda d, t, r: seen.append((d, t))
    )
    return root, path, result, seen


@pytest.mark.slow
def test_cohort_on_a_local_cluster(tmp_path, capsys):
    """One cohort run (the expensive part), then every check on it in order.

    xdist does not keep a module's tests on one worker here, so the checks are
    steps of one test rather than tests sharing a module fixture.
    """
    first = _first_run(tmp_path)
    _check_rows_and_broken_case(first)
    _check_rows_equal_the_single_patient_command(first, tmp_path)
    _check_rerun_skips_completed_and_redoes_interrupted(first)
    _check_batch_command(first, capsys)


def _check_rows_and_broken_case(first_run):
    _, _, result, seen = first_run
    assert len(result.rows) == 8  # 4 cases x 2 arms
    assert result.counts == {"ok": 6, "failed": 2, "skipped": 0}
    broken = [r for r in result.rows if r.case == "broken"]
    assert all(r.status == "failed" and "does not exist" in r.error for r in broken)
    assert seen[-1] == (8, 8) and [d for d, _ in seen] == list(range(1, 9))
    table = json.loads(result.table_json.read_text())
    assert table["tasks"] == 8
    header = result.table_csv.read_text().splitlines()[0].split(",")
    for column in ("case", "arm", "params", "status", "runtime_s", "qa_verdict", "modulation"):
        assert column in header
    for r in result.rows:
        if r.status == "ok":
            folder = result.table_csv.parent / r.case / r.arm.lower() / "default"
            assert (folder / TASK_RECORD).is_file()
            # The row carries the verdict of the task's own QA (its metrics.json) ...
            qa = json.loads((folder / "metrics.json").read_text())["qa"]
            assert r.qa_verdict == next(iter(qa.values()))["verdict"]
    # ... and the verdicts are what the arms give on these phantoms: REGRESSION_VERDICTS.
    verdicts = {(r.case, r.arm): r.qa_verdict for r in result.rows if r.status == "ok"}
    assert verdicts == REGRESSION_VERDICTS


def _check_rows_equal_the_single_patient_command(first_run, tmp_path):
    """The cohort row of one task has the metrics that run_case gives for the same inputs."""
    _, _, result, _ = first_run
    row = next(r for r in result.rows if r.case == "default" and r.arm == "SCART")
    patient = build_phantom(spacing_mm=(5.0, 5.0, 5.0), length_mm=140.0)
    metrics = run_case(
        patient,
        ["SCART"],
        tmp_path / "single",
        overrides=SETTINGS,
        write_ct=True,
        figures=False,
        scene=False,
        report=False,
    )
    single = next(iter(metrics["plans"].values()))
    assert row.metrics["total_mu_per_fraction"] == pytest.approx(
        single["total_mu_per_fraction"], rel=1e-9
    )
    stv = row.metrics["structures"]["STV"]
    assert stv["D95%"] == pytest.approx(single["structures"]["STV"]["D95%"], rel=1e-9)


def _check_rerun_skips_completed_and_redoes_interrupted(first_run):
    root, path, _, _ = first_run
    out = root / "out"
    again = run_cohort(load_cohort(path), out, workers=2)
    assert again.counts == {"ok": 0, "failed": 2, "skipped": 6}
    # Simulate a task killed before it completed: its record is gone and a partial folder is left.
    victim = out / "small" / "crt" / "default"
    (victim / TASK_RECORD).unlink()
    partial = out / "small" / "crt" / ".default.partial-x1"
    partial.mkdir()
    third = run_cohort(load_cohort(path), out, workers=1)
    assert third.counts == {"ok": 1, "failed": 2, "skipped": 5}
    redone = next(r for r in third.rows if r.case == "small" and r.arm == "CRT")
    assert redone.status == "ok" and (victim / TASK_RECORD).is_file()
    assert not partial.exists()
    shutil.rmtree(out / "small" / "scart")
    fourth = run_cohort(load_cohort(path), out, workers=1)
    assert fourth.counts["ok"] == 1


def _check_batch_command(first_run, capsys):
    """`lattice-plan batch` on the completed cohort: nothing redone, exit 1 for the broken case."""
    root, path, _, _ = first_run
    capsys.readouterr()
    assert main(["batch", str(path), "--out", str(root / "out"), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "0 done" in out and "2 failed" in out and "results.csv" in out


def test_batch_command_bad_input_is_one_line(tmp_path, capsys):
    assert main(["-q", "batch", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert main(["-q", "batch", str(tmp_path / "x.toml"), "--out", "o", "--workers", "0"]) == 2
