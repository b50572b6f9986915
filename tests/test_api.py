"""The top-level API: every listed name resolves lazily to the object its module defines."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import lattice_plan

WORKFLOW = ("plan_case", "run_case", "evaluate_plans", "load_dicom_case", "evaluate_dicom")


@pytest.mark.parametrize("name", sorted(lattice_plan._API))
def test_each_api_name_is_its_modules_object(name):
    module = importlib.import_module(lattice_plan._API[name])
    assert getattr(lattice_plan, name) is getattr(module, name)
    assert name in lattice_plan.__all__ and name in dir(lattice_plan)


def test_workflow_names_are_reachable_on_the_workflow_module():
    import lattice_plan.workflow as workflow

    for name in WORKFLOW:
        assert getattr(lattice_plan, name) is getattr(workflow, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'run_cse'"):
        lattice_plan.run_cse  # noqa: B018


def test_importing_the_package_loads_no_module_of_it():
    """``import lattice_plan`` (as the CLI does first) loads neither numpy nor any submodule."""
    code = (
        "import sys, lattice_plan; "
        "print(sorted(m for m in sys.modules if m.startswith('lattice_plan.') or m == 'numpy'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "package",
    ["analysis", "dose", "geometry", "io", "kernels", "planning", "qa", "viz"],
)
def test_every_subpackage_lists_its_public_names(package):
    mod = importlib.import_module(f"lattice_plan.{package}")
    assert mod.__all__
    for name in mod.__all__:
        if not hasattr(mod, name):  # a submodule, listed by name and loaded on import *
            importlib.import_module(f"{mod.__name__}.{name}")
