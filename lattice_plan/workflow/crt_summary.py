"""The CRT reference plan in the metrics and the report: what it is, what it was planned
against, whether it meets those limits and, where not, the candidates tried.

:func:`crt_limits_for` gives the dose limits a CRT plan is planned against: those of
the protocol arm it will be checked against.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lattice_plan.geometry.patient import Patient
from lattice_plan.planning.crt import DEFAULT_SCHEDULE, schedule_prescription
from lattice_plan.planning.crt_limits import LimitSet
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.spec import PlanSpec
from lattice_plan.qa.lookup import load_protocol_arg, protocol_arm_for


def crt_limits_for(
    patient: Patient, spec: PlanSpec, protocol: str | os.PathLike[str] | None
) -> LimitSet | None:
    """The dose limits of the protocol arm a CRT plan of ``spec`` is checked against (None
    without a protocol; an empty set, named so, when the protocol has no such arm)."""
    from lattice_plan.qa.planning_limits import planning_limits

    proto = load_protocol_arg(protocol)
    if proto is None:
        return None
    rx = spec.resolved_prescription() or schedule_prescription(DEFAULT_SCHEDULE)
    arm_name = protocol_arm_for(proto, "CRT", rx.fractions, rx.total_dose_gy)
    if arm_name is None:
        return LimitSet(
            f"{proto.name}: no arm for CRT {rx.total_dose_gy:g} Gy in {rx.fractions} fraction(s)"
        )
    return planning_limits(proto, arm_name, patient.structures)


def crt_fields(plan: Plan) -> dict[str, Any]:
    """The CRT plan's entries of its ``metrics.json`` summary (none for other arms)."""
    info = plan.info
    if plan.arm is not Arm.CRT or "crt_plan" not in info:
        return {}
    return {
        "crt_plan": info["crt_plan"],
        "crt_schedule": info.get("schedule"),
        "crt_limits_source": info.get("limits_source"),
        "crt_meets_limits": info.get("meets_limits"),
        "crt_limit_failures": info.get("limit_failures", []),
        "crt_candidates": info.get("candidate_lines", []),
    }


def crt_notes(name: str, summary: Mapping[str, Any]) -> list[str]:
    """What a CRT plan is and whether it meets the limits it was planned against; where it
    does not, which limit fails by how much and one line per candidate arrangement tried."""
    if "crt_plan" not in summary:
        return []
    lines = [f"{name} reference plan: {summary['crt_plan']}."]
    source = summary.get("crt_limits_source") or "no dose limits"
    if summary.get("crt_meets_limits"):
        lines.append(f"{name} meets the hot-spot limit and every limit of {source}.")
        return lines
    lines.append(
        f"{name}: no candidate meets every limit of {source}; the best one breaks: "
        + "; ".join(summary.get("crt_limit_failures", []))
    )
    lines += [f"{name} candidate tried: {c}" for c in summary.get("crt_candidates", [])]
    return lines
