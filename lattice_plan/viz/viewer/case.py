"""The viewer of plans held in memory: the patient's CT and structures with each plan's dose."""

from __future__ import annotations

from collections.abc import Sequence

from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import Structure
from lattice_plan.planning.plan import Plan
from lattice_plan.viz.viewer.payload import ViewerPlan, viewer_payload


def viewer_plan(plan: Plan) -> ViewerPlan:
    """A computed :class:`Plan` as a :class:`ViewerPlan` (total dose, total prescription)."""
    return ViewerPlan(
        plan.name,
        plan.arm.value,
        plan.require_dose(),
        plan.fractions,
        plan.prescription.total_dose_gy,
        tuple(plan.beams),
    )


def case_payload(
    patient: Patient, plans: Sequence[Plan], reference_plan: str | None = "CRT", title: str = ""
) -> dict:
    """:func:`viewer_payload` of ``plans`` on ``patient``: its structures, then the plans' own."""
    structures: list[Structure] = list(patient.structures)
    names = {s.name.casefold() for s in structures}
    for plan in plans:
        for s in plan.structures:
            if s.name.casefold() not in names:
                structures.append(s)
                names.add(s.name.casefold())
    return viewer_payload(
        patient.ct, structures, [viewer_plan(p) for p in plans], title, reference_plan
    )
