"""The main job for one patient: plan the arms, evaluate them side by side, write every output.

One job per module:

- :mod:`~lattice_plan.workflow.overrides`: plan specs by arm (:data:`DEFAULT_SPECS`,
  :func:`resolve_spec`, :func:`apply_overrides`, :func:`spec_to_mapping`);
- :mod:`~lattice_plan.workflow.dicom_case`: a planning case from a CT folder and
  its RTSTRUCT (:func:`load_dicom_case`);
- :mod:`~lattice_plan.workflow.evaluate`: the plans' metrics and comparison
  (:func:`evaluate_plans`, ``metrics.json``);
- :mod:`~lattice_plan.workflow.outputs` (with :mod:`~lattice_plan.workflow.figures`):
  the DICOM objects, metrics, figures, 3D images and report, written atomically
  (:func:`write_case_outputs`);
- :mod:`~lattice_plan.workflow.crt_summary`: the CRT reference plan's limits
  (:func:`crt_limits_for`), metrics entries and report notes (:func:`crt_notes`);
- :mod:`~lattice_plan.workflow.run`: one arm's plan (:func:`plan_case`) and the
  whole job (:func:`run_case`);
- :mod:`~lattice_plan.workflow.exported`: plans exported as DICOM from any system
  (:func:`evaluate_dicom`) and the 3D scene of an output folder (:func:`plan_scene`);
- :mod:`~lattice_plan.workflow.recalc`: the independent dose of any photon RTPLAN
  on its CT (:func:`recalc_rtplan`), the secondary check of ``lattice-plan recalc``.

The command line (``lattice-plan demo``, ``plan``, ``evaluate``, ...) and the
cohort runner call these functions.
"""

from lattice_plan.errors import PlanningError  # noqa: F401 (raised here; the old module had it)
from lattice_plan.files import json_safe as _finite  # noqa: F401 (the old name)
from lattice_plan.planning.plan import ARMS
from lattice_plan.qa.lookup import load_protocol_arg, protocol_arm_for
from lattice_plan.workflow._common import DEFAULT_METRICS, EQD2_METRICS, REPORTED_KINDS, Progress
from lattice_plan.workflow.crt_summary import crt_limits_for, crt_notes
from lattice_plan.workflow.dicom_case import DicomCase, load_dicom_case
from lattice_plan.workflow.evaluate import evaluate_plans, patient_summary
from lattice_plan.workflow.exported import evaluate_dicom, plan_scene
from lattice_plan.workflow.outputs import write_case_outputs
from lattice_plan.workflow.overrides import (
    DEFAULT_SPECS,
    apply_overrides,
    resolve_spec,
    spec_to_mapping,
)
from lattice_plan.workflow.recalc import recalc_rtplan
from lattice_plan.workflow.run import plan_case, run_case

__all__ = [
    "ARMS",
    "DEFAULT_METRICS",
    "DEFAULT_SPECS",
    "EQD2_METRICS",
    "REPORTED_KINDS",
    "DicomCase",
    "Progress",
    "apply_overrides",
    "crt_limits_for",
    "crt_notes",
    "evaluate_dicom",
    "evaluate_plans",
    "load_dicom_case",
    "load_protocol_arg",
    "patient_summary",
    "plan_case",
    "plan_scene",
    "protocol_arm_for",
    "recalc_rtplan",
    "resolve_spec",
    "run_case",
    "spec_to_mapping",
    "write_case_outputs",
]
