"""The plan-spec objects (what a spec TOML file describes) and the per-arm defaults they use.

The file format is described in :mod:`lattice_plan.planning.spec`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from lattice_plan.errors import SpecError
from lattice_plan.geometry.lattice import LatticeParameters
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.planning import objectives as obj_module
from lattice_plan.planning.arcs import Arc
from lattice_plan.planning.crt import PTV_NAME, schedule_prescription
from lattice_plan.planning.deliverable import DeliverySpec
from lattice_plan.planning.plan import ARM_ONLY_SPEC_TABLES, Arm
from lattice_plan.planning.prescription import Prescription
from lattice_plan.planning.scart import STV, ScartParameters
from lattice_plan.planning.sfrt import (
    GTV_EDGE,
    NORMAL_TISSUE,
    RING,
    VALLEY,
    VERTICES,
)

# What each arm is prescribed to when the spec does not say (target structure, method).
DEFAULT_PRESCRIPTION_TARGETS: dict[Arm, tuple[str, str]] = {
    Arm.CRT: (PTV_NAME, "D95%"),
    Arm.SFRT: (VERTICES, "Dmean"),
    Arm.SCART: (STV, "D95%"),
}

# The structures each builder adds to the patient's (objectives and prescriptions may name them).
CREATED_STRUCTURES: dict[Arm, tuple[str, ...]] = {
    Arm.CRT: (PTV_NAME,),
    Arm.SFRT: (VERTICES, VALLEY, GTV_EDGE, RING, NORMAL_TISSUE),
    Arm.SCART: (STV, GTV_EDGE, RING, NORMAL_TISSUE),
}

OBJECTIVE_TYPES: dict[str, type[obj_module.Objective]] = {
    cls.kind: cls
    for cls in (
        obj_module.MinDose,
        obj_module.MaxDose,
        obj_module.UniformDose,
        obj_module.MeanDose,
        obj_module.DVHPoint,
        obj_module.GEUD,
        obj_module.PeakDose,
        obj_module.ValleyDose,
        obj_module.EdgeDose,
        obj_module.RingFallOff,
    )
}

# Tables that configure some arms only: the one map in planning.plan, as Arm members.
TABLES_BY_ARM: dict[str, tuple[Arm, ...]] = {
    table: tuple(Arm(a) for a in arms) for table, arms in ARM_ONLY_SPEC_TABLES.items()
}
TOP_LEVEL_TABLES = ("plan", "structures", "prescription", "beams", "dose", *TABLES_BY_ARM)


# ---------------------------------------------------------------------------- the spec objects
@dataclass(frozen=True)
class PrescriptionSpec:
    """The prescription as the spec gives it; target and method fall back to the arm's defaults."""

    dose_per_fraction_gy: float
    fractions: int
    target: str | None = None
    method: str | None = None
    reference_point_lps_mm: tuple[float, float, float] | None = None

    def for_arm(self, arm: Arm) -> Prescription:
        target, method = DEFAULT_PRESCRIPTION_TARGETS[arm]
        return Prescription(
            self.dose_per_fraction_gy,
            self.fractions,
            self.target or target,
            self.method or ("point" if self.reference_point_lps_mm else method),
            self.reference_point_lps_mm,
        )


@dataclass(frozen=True)
class BeamSpec:
    """Beams: CRT gantry angles and weights, or the count, arc and beamlet size of optimised arms."""

    gantry_deg: tuple[float, ...] | None = None
    weights: tuple[float, ...] | None = None
    count: int | None = None
    arc_deg: float | None = None
    beamlet_mm: float | None = None


@dataclass(frozen=True, eq=False)
class PlanSpec:
    """One candidate plan, as read from a spec file (``source`` names it in messages)."""

    name: str
    arm: Arm
    gtv: str = "GTV"
    oars: tuple[str, ...] | None = None
    prescription: PrescriptionSpec | None = None
    ptv_margin_mm: float | None = None
    penumbra_margin_mm: float | None = None
    crt_schedule: str | None = None
    crt_arrangements: tuple[str, ...] | None = None
    max_segments_per_beam: int | None = None
    beams: BeamSpec = BeamSpec()
    lattice: LatticeParameters | None = None
    core: ScartParameters | None = None
    objectives: tuple[obj_module.Objective, ...] | None = None
    dose_spacing_mm: float | None = None
    max_iterations: int | None = None
    delivery: DeliverySpec | None = None
    arcs: tuple[Arc, ...] | None = None
    description: str = ""
    source: str = "<spec>"

    def resolved_prescription(self) -> Prescription | None:
        if self.prescription is None:
            return None if self.crt_schedule is None else schedule_prescription(self.crt_schedule)
        return self.prescription.for_arm(self.arm)

    def check_structures(self, structures: StructureSet) -> None:
        """Refuse a spec whose GTV, OARs or prescription target the structure set lacks."""
        where = self.source
        if self.gtv not in structures:
            raise SpecError(
                f"{where}: [structures] gtv = {self.gtv!r} is not among the structures "
                f"({', '.join(structures.names)}); name the GTV as it is in the structure set"
            )
        for oar in self.oars or ():
            if oar not in structures:
                raise SpecError(
                    f"{where}: [structures] oars: {oar!r} is not among the structures "
                    f"({', '.join(structures.names)})"
                )
        created = CREATED_STRUCTURES[self.arm]

        def known(n: str) -> bool:
            return n in structures or n.casefold() in {c.casefold() for c in created}

        if self.prescription is not None and self.prescription.target is not None:
            target = self.prescription.target
            if not known(target):
                raise SpecError(
                    f"{where}: [prescription] target = {target!r} is neither among the structures "
                    f"nor one that a {self.arm.value} plan creates ({', '.join(created)})"
                )
        for n, obj in enumerate(self.objectives or ()):
            names = [("structure", obj.structure)]
            if isinstance(obj, obj_module.RingFallOff):
                names.append(("target", obj.target))
            for key, value in names:
                if not known(value):
                    raise SpecError(
                        f"{where}: [objectives #{n + 1}] {key} = {value!r} is neither among the "
                        f"structures ({', '.join(structures.names)}) nor one that a "
                        f"{self.arm.value} plan creates ({', '.join(created)})"
                    )

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the arm's builder (only those the spec sets)."""
        kw: dict[str, Any] = {"name": self.name}
        rx = self.resolved_prescription()
        if rx is not None:
            kw["prescription"] = rx
        if self.dose_spacing_mm is not None:
            kw["dose_spacing_mm"] = self.dose_spacing_mm
        if self.arm is Arm.CRT:
            for key in ("ptv_margin_mm", "penumbra_margin_mm"):
                if getattr(self, key) is not None:
                    kw[key] = getattr(self, key)
            if self.beams.gantry_deg is not None:
                kw["gantry_deg"] = self.beams.gantry_deg
            if self.beams.weights is not None:
                kw["weights"] = self.beams.weights
            if self.crt_arrangements is not None:
                kw["arrangements"] = self.crt_arrangements
            if self.max_segments_per_beam is not None:
                kw["max_segments_per_beam"] = self.max_segments_per_beam
            return kw
        if self.oars is not None:
            kw["oars"] = self.oars
        if self.beams.count is not None:
            kw["n_beams"] = self.beams.count
        if self.beams.arc_deg is not None:
            kw["arc_deg"] = self.beams.arc_deg
        if self.beams.beamlet_mm is not None:
            kw["beamlet_mm"] = self.beams.beamlet_mm
        if self.objectives is not None:
            kw["objectives"] = self.objectives
        if self.max_iterations is not None:
            kw["max_iterations"] = self.max_iterations
        if self.delivery is not None:
            # a VMAT plan re-plans the arm's ideal fluence plan (lattice_plan.planning.vmat)
            vmat = self.delivery.method == "vmat"
            kw["delivery"] = replace(self.delivery, method="ideal") if vmat else self.delivery
        if self.arm is Arm.SFRT and self.lattice is not None:
            kw["lattice"] = self.lattice
        if self.arm is Arm.SCART and self.core is not None:
            kw["core"] = self.core
        return kw
