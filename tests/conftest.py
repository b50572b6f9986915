"""Shared fixtures: the reference data folder and the built-in phantom."""

from __future__ import annotations

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
