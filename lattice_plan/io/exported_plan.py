"""An exported plan from any planning system: its RTDOSE as the dose of the course, with the
fractions and prescription of its RTPLAN.

One loader for the evaluation of exported plans (``lattice-plan evaluate``) and
their protocol check (``lattice-plan qa``), so both apply the same rules:

- the RTDOSE must hold absolute dose (Gy);
- the RTPLAN, when given, must be the plan the RTDOSE references;
- the number of fractions is the one given, else the RTPLAN's; a given number that
  contradicts the RTPLAN's is refused (a protocol judges the planned schedule), unless
  the caller asks for an override (``lattice-plan evaluate --fractions``: what-if
  metrics of another schedule), which is logged;
- an RTDOSE of one fraction (Dose Summation Type FRACTION) is multiplied by the
  number of fractions; a BEAM or other partial dose is refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lattice_plan.errors import ExportedPlanError
from lattice_plan.geometry.volume import Volume
from lattice_plan.io.rtdose import load_rtdose
from lattice_plan.io.rtplan import read_rtplan

log = logging.getLogger(__name__)

#: Dose Summation Types that are the dose of the whole plan.
WHOLE_PLAN_SUMMATIONS = ("PLAN", "MULTI_PLAN", "RECORD")


@dataclass(frozen=True, eq=False)
class ExportedPlan:
    """The dose of the course (Gy) of an exported plan, with what the RTPLAN says about it."""

    dose: Volume
    summation_type: str
    frame_of_reference_uid: str
    plan_name: str
    fractions: int | None
    prescription_gy: float | None


def load_exported_plan(
    rtdose_path: str | os.PathLike[str],
    rtplan_path: str | os.PathLike[str] | None = None,
    *,
    fractions: int | None = None,
    prescription_gy: float | None = None,
    override_rtplan: bool = False,
) -> ExportedPlan:
    """Read an RTDOSE (and its RTPLAN) as the dose of the whole course, by the rules above.

    ``fractions`` and ``prescription_gy`` (Gy, the total) default to the RTPLAN's;
    the plan's name is the RTPLAN's label or name, else the file name. With
    ``override_rtplan`` the given values win over the RTPLAN's instead of being refused.
    Raises :class:`~lattice_plan.errors.ExportedPlanError` when a rule is broken.
    """
    rtdose = load_rtdose(rtdose_path)
    where = f"RTDOSE {str(rtdose_path)!r}"
    if rtdose.volume.unit != "Gy":
        raise ExportedPlanError(
            f"{where} holds a RELATIVE dose; DVH metrics and protocol limits need absolute Gy"
        )
    plan_name = Path(rtdose_path).name
    if rtplan_path is not None:
        rtplan = read_rtplan(rtplan_path)
        plan_name = rtplan.label or rtplan.name or Path(rtplan_path).name
        if rtdose.referenced_rtplan_uid and rtdose.referenced_rtplan_uid != rtplan.sop_instance_uid:
            raise ExportedPlanError(
                f"{where} is the dose of RTPLAN {rtdose.referenced_rtplan_uid}, but "
                f"{str(rtplan_path)!r} is RTPLAN {rtplan.sop_instance_uid}; give the matching plan"
            )
        if rtplan.n_fractions is not None:
            if fractions is not None and fractions != rtplan.n_fractions and override_rtplan:
                log.info(
                    "%s: %d fractions given instead of the %d planned in the RTPLAN",
                    where,
                    fractions,
                    rtplan.n_fractions,
                )
            elif fractions is not None and fractions != rtplan.n_fractions:
                raise ExportedPlanError(
                    f"fractions={fractions} contradicts the {rtplan.n_fractions} fractions planned "
                    f"in RTPLAN {str(rtplan_path)!r}; leave fractions out or correct it"
                )
            else:
                fractions = rtplan.n_fractions
        if prescription_gy is None:
            prescription_gy = rtplan.prescription_dose_gy
    summation = rtdose.summation_type.upper()
    dose = rtdose.volume
    if summation == "FRACTION":
        if fractions is None:
            raise ExportedPlanError(
                f"{where} is the dose of one fraction; give the RTPLAN or the number of fractions "
                "to get the dose of the course"
            )
        dose = Volume(dose.array * fractions, dose.grid, "Gy")
        log.info("%s: dose of one fraction multiplied by %d fractions", where, fractions)
    elif summation not in WHOLE_PLAN_SUMMATIONS:
        raise ExportedPlanError(
            f"{where} has Dose Summation Type {summation or '(none)'!r}, not the dose of the "
            "whole plan; export the PLAN dose (or sum the beam doses)"
        )
    return ExportedPlan(
        dose, summation, rtdose.frame_of_reference_uid, plan_name, fractions, prescription_gy
    )
