"""Checking a dose against one arm of a protocol: the result table and the overall verdict.

Each constraint of the arm gives one row: the plan structure it was matched
to, the computed value, the limit, the outcome and the source. A structure
the plan lacks (or that cannot be evaluated, e.g. one outside the dose grid)
gives "not evaluated" with the reason, never a silent pass.

The rows are evaluated in :mod:`lattice_plan.qa.rows`, the protocol structures
resolved to plan structures in :mod:`lattice_plan.qa.resolve`, and the result
objects, with the rules of the verdict, live in :mod:`lattice_plan.qa.result`
(re-exported here).

Metric values come from :mod:`lattice_plan.analysis` (DVHs with sub-voxel
sampling; EQD2/BED with the plan's number of fractions and the constraint's
alpha/beta).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from lattice_plan.errors import ProtocolError
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.plan import Plan
from lattice_plan.qa.protocol_model import Protocol, ProtocolArm
from lattice_plan.qa.resolve import StructureResolver
from lattice_plan.qa.result import CSV_COLUMNS, CheckResult, ConstraintResult, Verdict
from lattice_plan.qa.rows import ConstraintEvaluator

__all__ = ["CSV_COLUMNS", "CheckResult", "ConstraintResult", "Verdict", "check"]

log = logging.getLogger(__name__)


def check(
    plan_or_dose: Plan | Volume,
    structures: StructureSet | None,
    protocol: Protocol,
    arm: str | ProtocolArm,
    *,
    fractions: int | None = None,
    plan_name: str = "",
    subdivisions: int | None = None,
    unusable: Mapping[str, str] | None = None,
    allow_partial: bool = False,
) -> CheckResult:
    """Check a plan's dose against the constraints of one arm of ``protocol``.

    ``plan_or_dose`` is a :class:`~lattice_plan.planning.plan.Plan` with its dose
    (its structures and fractions are used unless given) or a dose Volume in Gy
    for the whole course, from any planning system. ``fractions`` is the plan's
    number of fractions (for EQD2/BED metrics and the fractionation check); by
    default the plan's, else the arm's. ``subdivisions`` is passed to the DVH
    sampling (sub-voxels per axis; None chooses by structure size).

    A structure reaching outside the dose grid is "not evaluated" unless
    ``allow_partial``: then it is judged on its part inside the grid and the row's
    note says how much lay outside (a maximum or a volume above a dose found on
    that part is a lower bound). ``unusable`` maps plan structure names to the
    reason they cannot be fully evaluated, for structures already cut to the dose
    grid (an RTSTRUCT rasterised on the RTDOSE grid, see
    :func:`~lattice_plan.qa.dicom_check.rois_outside_grid`), which the DVH itself
    cannot see: "not evaluated" with that reason, or with ``allow_partial``
    judged on what is there with the reason in the note.
    """
    if isinstance(plan_or_dose, Plan):
        plan = plan_or_dose
        dose = plan.require_dose()
        structures = plan.structures if structures is None else structures
        fractions = plan.fractions if fractions is None else fractions
        plan_name = plan_name or plan.name
    elif isinstance(plan_or_dose, Volume):
        dose = plan_or_dose
    else:
        raise ProtocolError(
            f"check needs a Plan or a dose Volume, got {type(plan_or_dose).__name__}"
        )
    if dose.unit != "Gy":
        raise ProtocolError(f"check needs a dose in Gy, got a Volume in {dose.unit!r}")
    if not isinstance(structures, StructureSet):
        raise ProtocolError(f"check needs the plan's StructureSet, got {type(structures).__name__}")
    arm_obj = arm if isinstance(arm, ProtocolArm) else protocol.arm(arm)
    if fractions is None:
        fractions = arm_obj.fractions
    if isinstance(fractions, bool) or int(fractions) != fractions or fractions < 1:
        raise ProtocolError(f"fractions must be a whole number >= 1, got {fractions!r}")
    fractions = int(fractions)
    if fractions != arm_obj.fractions:
        log.warning(
            "plan has %d fraction(s) but arm %s of %s has %d",
            fractions,
            arm_obj.name,
            protocol.name,
            arm_obj.fractions,
        )
    outside = {k.casefold(): v for k, v in (unusable or {}).items()}
    resolver = StructureResolver(protocol, structures, outside, allow_partial)
    evaluator = ConstraintEvaluator(arm_obj, dose, resolver, fractions, subdivisions)
    rows = tuple(evaluator.row(c) for c in arm_obj.constraints)
    return CheckResult(
        protocol=protocol.name,
        protocol_version=protocol.version,
        arm=arm_obj.name,
        fractions=fractions,
        arm_fractions=arm_obj.fractions,
        rows=rows,
        template=protocol.template,
        plan=plan_name,
    )
