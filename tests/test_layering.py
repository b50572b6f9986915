"""The layering of DESIGN.md section 2, as the import-linter contracts in pyproject.toml.

The contracts are run on the package as it is (must hold) and on a copy with one
import that breaks the layers (must fail), so the check itself is checked.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import lattice_plan

ROOT = Path(__file__).resolve().parents[1]
_LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(no_cache=True, no_logo=True))"
)


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` in ``cwd`` (its pyproject.toml, its lattice_plan first on the path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", _LINT], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_import_contracts_hold() -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 kept, 0 broken" in res.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "lattice_plan",
        tmp_path / "lattice_plan",
        ignore=shutil.ignore_patterns("__pycache__", "data"),
    )
    hu = tmp_path / "lattice_plan" / "dose" / "hu.py"
    hu.write_text(hu.read_text() + "\nfrom lattice_plan.io import rtdose  # noqa\n")
    res = _lint(tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "lattice_plan.dose.hu -> lattice_plan.io.rtdose" in res.stdout


def test_kernels_contract_forbids_every_other_top_level_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (kernels,) = [c for c in config["contracts"] if c["type"] == "forbidden"]
    top = {f"lattice_plan.{m.name}" for m in pkgutil.iter_modules(lattice_plan.__path__)}
    assert set(kernels["forbidden_modules"]) == top - {"lattice_plan.kernels"}
