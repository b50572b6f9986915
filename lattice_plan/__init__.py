"""lattice_plan: research dose planning for lattice (SFRT) and SCART radiotherapy.

Every plan is compared against a conventional (CRT) plan of the same patient.
Units at every public interface: mm, Gy, degrees; volumes in cc.
Arrays are indexed ``[k, j, i]`` (slice, row, column); see ``geometry.grid``.

The main entry points are importable from here (each loads its module on first
use, so ``lattice-plan --help`` stays fast)::

    from lattice_plan import build_phantom, run_case
    patient = build_phantom()
    result = run_case(patient, ["SFRT", "CRT"], "out/")

- the main job (:mod:`lattice_plan.workflow`): ``plan_case``, ``run_case``,
  ``evaluate_plans``, ``load_dicom_case``, ``evaluate_dicom``;
- patients and geometry: ``build_phantom``, ``Grid``, ``Volume``, ``Structure``,
  ``StructureSet``, ``Patient``;
- dose: ``DoseEngine``, ``BeamModel``, ``Beam``, ``Jaws``;
- planning: ``load_spec``, ``plan_patient``, ``plan_from_spec``, ``Plan``, ``Arm``;
- DICOM: ``read_ct_series``, ``read_rtstruct``, ``read_rtdose``, ``read_rtplan``,
  ``read_rtplan_delivery`` (control points), ``read_patient``, ``write_patient``,
  ``write_rtdose``, ``write_rtplan``;
- secondary check: ``recalc_rtplan`` (the dose of any photon RTPLAN on its CT);
- analysis: ``DVH``, ``compare_plans``, ``gamma_index``, ``evaluate_metric``;
- protocols: ``load_protocol``, ``load_builtin_protocol``, ``check``, ``check_dicom``;
- cohorts: ``load_cohort``, ``run_cohort``.
"""

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> the module that defines it (imported on first access, PEP 562).
_API: dict[str, str] = {
    "plan_case": "lattice_plan.workflow",
    "run_case": "lattice_plan.workflow",
    "evaluate_plans": "lattice_plan.workflow",
    "load_dicom_case": "lattice_plan.workflow",
    "evaluate_dicom": "lattice_plan.workflow",
    "build_phantom": "lattice_plan.phantoms",
    "Grid": "lattice_plan.geometry",
    "Volume": "lattice_plan.geometry",
    "Structure": "lattice_plan.geometry",
    "StructureSet": "lattice_plan.geometry",
    "Patient": "lattice_plan.geometry",
    "DoseEngine": "lattice_plan.dose.engine",
    "BeamModel": "lattice_plan.dose.model",
    "Beam": "lattice_plan.dose.beam",
    "Jaws": "lattice_plan.dose.beam",
    "load_spec": "lattice_plan.planning.spec",
    "plan_patient": "lattice_plan.planning.spec",
    "plan_from_spec": "lattice_plan.planning.spec",
    "Plan": "lattice_plan.planning.plan",
    "Arm": "lattice_plan.planning.plan",
    "read_ct_series": "lattice_plan.io.ct",
    "read_rtstruct": "lattice_plan.io.rtstruct",
    "read_patient": "lattice_plan.io.rtstruct",
    "write_patient": "lattice_plan.io.rtstruct",
    "read_rtdose": "lattice_plan.io.rtdose",
    "write_rtdose": "lattice_plan.io.rtdose",
    "read_rtplan": "lattice_plan.io.rtplan",
    "write_rtplan": "lattice_plan.io.rtplan",
    "read_rtplan_delivery": "lattice_plan.io.rtplan",
    "recalc_rtplan": "lattice_plan.workflow.recalc",
    "DVH": "lattice_plan.analysis",
    "compare_plans": "lattice_plan.analysis",
    "gamma_index": "lattice_plan.analysis",
    "evaluate_metric": "lattice_plan.analysis",
    "load_protocol": "lattice_plan.qa",
    "load_builtin_protocol": "lattice_plan.qa",
    "check": "lattice_plan.qa",
    "check_dicom": "lattice_plan.qa",
    "load_cohort": "lattice_plan.cohort",
    "run_cohort": "lattice_plan.batch",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'lattice_plan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
