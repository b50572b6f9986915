"""The whole job for one patient: plan the arms, evaluate them side by side, write every output.

:func:`run_case` is :func:`plan_case` for each arm, then
:func:`~lattice_plan.workflow.evaluate.evaluate_plans`, then
:func:`~lattice_plan.workflow.outputs.write_case_outputs`. Progress is reported
through ``progress(task, done, total)`` (``total`` None when unknown); the CLI
turns it into progress bars.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lattice_plan.errors import PlanningError
from lattice_plan.geometry.patient import Patient
from lattice_plan.io.atomic import refuse_foreign_dir
from lattice_plan.io.ct import CTSeries
from lattice_plan.planning.plan import ARMS, Arm, Plan, spec_key_applies
from lattice_plan.planning.spec import PlanSpec, load_spec, plan_patient
from lattice_plan.workflow._common import Progress, report_progress
from lattice_plan.workflow.crt_summary import crt_limits_for
from lattice_plan.workflow.evaluate import evaluate_plans
from lattice_plan.workflow.outputs import COMPLETE_MARKER, write_case_outputs
from lattice_plan.workflow.overrides import resolve_spec

log = logging.getLogger(__name__)


def plan_case(
    patient: Patient,
    arm: str,
    *,
    spec: Mapping[str, Any] | PlanSpec | str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    protocol: str | os.PathLike[str] | None = None,
) -> Plan:
    """The plan of one ``arm`` ("SFRT", "SCART" or "CRT") for ``patient``.

    ``spec`` is a plan-spec file, its parsed TOML mapping or a PlanSpec
    (default: :data:`DEFAULT_SPECS`); ``overrides`` are dotted plan-spec keys set
    on top of it (``{"lattice.spacing_mm": 25.0, "optimiser.max_iterations": 50}``).
    Overrides of tables that do not apply to the arm (``lattice.*`` except for
    SFRT, ``scart.*`` except for SCART, ``crt.*`` except for CRT, ``optimiser.*``
    for CRT) are left out, so one set of overrides serves every arm.
    ``progress("<plan>: optimising", iteration, max_iterations)`` reports the
    optimiser of SFRT and SCART plans. ``protocol`` ("builtin", a built-in name or a
    TOML file): a CRT plan is planned against the dose limits of the protocol arm it
    will be checked against (:func:`~lattice_plan.workflow.crt_summary.crt_limits_for`).
    """
    arm_value = Arm.parse(arm).value
    own = {k: v for k, v in (overrides or {}).items() if spec_key_applies(str(k), arm_value)}
    if len(own) < len(overrides or {}):
        log.debug(
            "%s: overrides not for this arm left out: %s",
            arm_value,
            sorted(set(overrides or {}) - set(own)),
        )
    s = resolve_spec(arm_value, spec, own)
    task = f"{s.name}: optimising"
    total = s.max_iterations

    def on_iteration(iteration: int, objective: float) -> None:
        report_progress(progress, task, int(iteration), total)

    t0 = time.perf_counter()
    limits = crt_limits_for(patient, s, protocol) if s.arm is Arm.CRT else None
    plan = plan_patient(patient, s, progress=on_iteration if progress else None, crt_limits=limits)
    log.info("planned %s (%s) in %.1f s", plan.name, plan.arm.value, time.perf_counter() - t0)
    return plan


def _spec_for(
    arm: str, spec_files: Mapping[str, Any] | Sequence[Any] | None
) -> str | os.PathLike[str] | None:
    if spec_files is None:
        return None
    if isinstance(spec_files, Mapping):
        for key, value in spec_files.items():
            if str(key).upper() == arm:
                return value
        return None
    for f in spec_files:
        if load_spec(f).arm.value == arm:
            return f
    return None


def run_case(
    patient: Patient,
    arms: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    spec_files: Mapping[str, Any] | Sequence[Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    protocol: str | Path | None = "builtin",
    write_ct: bool = False,
    progress: Progress | None = None,
    ct_series: CTSeries | None = None,
    source_rtstruct: str | os.PathLike[str] | None = None,
    figures: bool = True,
    scene: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Plan every arm, evaluate the plans and write the outputs into ``out_dir``; returns the metrics.

    ``spec_files`` maps arm -> plan-spec file (or lists spec files, each used
    for the arm it names); arms without one use :data:`DEFAULT_SPECS`.
    ``overrides`` (dotted plan-spec keys) apply to every arm they fit (see
    :func:`plan_case`). Per-plan figures are in ``metrics["plans"][plan name]``.
    """
    arm_list = [Arm.parse(a).value for a in arms]
    if not arm_list:
        raise PlanningError(f"give at least one arm of {', '.join(ARMS)}")
    if len(set(arm_list)) != len(arm_list):
        raise PlanningError(f"each arm once, got {arm_list}")
    refuse_foreign_dir(out_dir, COMPLETE_MARKER)
    plans = []
    for arm in arm_list:
        report_progress(progress, f"planning {arm}", 0, 1)
        plans.append(
            plan_case(
                patient,
                arm,
                spec=_spec_for(arm, spec_files),
                overrides=overrides,
                progress=progress,
                protocol=protocol,
            )
        )
        report_progress(progress, f"planning {arm}", 1, 1)
    report_progress(progress, "evaluating", 0, 1)
    metrics = evaluate_plans(patient, plans, protocol=protocol)
    report_progress(progress, "evaluating", 1, 1)
    inputs = {
        "arms": ", ".join(arm_list),
        "overrides": json.dumps(dict(overrides or {})) if overrides else "none",
    }
    write_case_outputs(
        patient,
        plans,
        out_dir,
        metrics=metrics,
        write_ct=write_ct,
        figures=figures,
        scene=scene,
        report=report,
        progress=progress,
        ct_series=ct_series,
        source_rtstruct=source_rtstruct,
        inputs=inputs,
    )
    return metrics
