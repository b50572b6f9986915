"""Shared fixtures: the reference data folder and the built-in phantom."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from lattice_plan.phantoms import build_phantom

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


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
    """(output folder, stdout) of one ``lattice-plan demo --fast`` run, shared by the session.

    Tests that use it belong to ``@pytest.mark.xdist_group("demo")`` so that it runs once.
    """
    from lattice_plan.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo-out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--fast", "--out", str(out)])
    assert code == 0, "lattice-plan demo --fast failed"
    return out, buf.getvalue()


@pytest.fixture(scope="session")
def demo_out(demo_run):
    """The folder written by the fast demo."""
    return demo_run[0]


@pytest.fixture(scope="session")
def demo_metrics(demo_out):
    """metrics.json of the fast demo."""
    return json.loads((demo_out / "metrics.json").read_text())
