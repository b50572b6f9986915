"""Shared fixtures: the reference data folder and the built-in phantom."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
from pathlib import Path

import pytest

from lattice_plan.phantoms import build_phantom

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def one_error_line(capsys, *needles: str) -> str:
    """The one line a CLI error prints on stderr; it holds every one of ``needles``."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def reference_path(*parts: str) -> Path:
    """Path inside ../shared/reference; fails the test with a clear message when absent."""
    path = REFERENCE_DIR.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"reference data {path} is missing: the tests expect ../shared/reference beside the "
            "project checkout (as in CI)"
        )
    return path


@pytest.fixture(scope="session")
def phantom():
    """The default built-in patient (built once per test session)."""
    return build_phantom()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """(output folder, stdout) of one ``lattice-plan demo --fast`` run, shared by the test run.

    Under pytest-xdist the workers share it through the run's common temporary
    folder and a file lock: the first worker to need it runs the demo, the
    others wait and read its output (``--dist loadgroup`` does not keep the
    tests together with pytest 9 / xdist 3.8).
    """
    from lattice_plan.cli import main

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "demo-fast"
    out, log = folder / "demo-out", folder / "stdout.txt"
    with open(root / "demo-fast.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not log.is_file():
            folder.mkdir(exist_ok=True)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                code = main(["demo", "--fast", "--out", str(out)])
            assert code == 0, "lattice-plan demo --fast failed"
            log.write_text(buf.getvalue())
    return out, log.read_text()


@pytest.fixture(scope="session")
def demo_out(demo_run):
    """The folder written by the fast demo."""
    return demo_run[0]


@pytest.fixture(scope="session")
def demo_metrics(demo_out):
    """metrics.json of the fast demo."""
    return json.loads((demo_out / "metrics.json").read_text())


def finished_pid() -> int:
    """The process id of a process that has ended (for staging names of killed runs)."""
    import subprocess
    import sys

    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait(timeout=60)
    return proc.pid
