"""A treatment plan: arm, prescription, beams with MU, structures, and its dose once computed.

Conventions: ``Beam.mu`` is per fraction (as DICOM's BeamMeterset); the plan's
``dose`` is for the whole course in Gy (fractions x the dose of one fraction).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.control_points import ControlPointBeam
from lattice_plan.errors import PlanningError
from lattice_plan.geometry.sampling import sample_dose
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.prescription import Prescription


class Arm(enum.Enum):
    """The trial arms."""

    CRT = "CRT"
    SFRT = "SFRT"
    SCART = "SCART"

    @classmethod
    def parse(cls, value: str | Arm) -> Arm:
        if isinstance(value, Arm):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            raise PlanningError(
                f"unknown arm {value!r}; use one of {', '.join(a.value for a in cls)}"
            ) from None


#: The arms in report order: the experimental arms first, the CRT reference last.
ARMS: tuple[str, ...] = ("SFRT", "SCART", "CRT")

#: Plan-spec tables that configure some arms only (``lattice.spacing_mm`` means nothing
#: to a CRT plan); every other table applies to all arms. Kept here, beside Arm and away
#: from the dose engine, so that reading a cohort file stays light; plan specs use it too.
ARM_ONLY_SPEC_TABLES: dict[str, tuple[str, ...]] = {
    "lattice": ("SFRT",),
    "scart": ("SCART",),
    "crt": ("CRT",),
    "optimiser": ("SFRT", "SCART"),
    "objectives": ("SFRT", "SCART"),
    "delivery": ("SFRT", "SCART"),
    "arcs": ("SFRT", "SCART"),
}


def spec_key_applies(key: str, arm: str) -> bool:
    """Whether the dotted plan-spec key ``key`` (``table.field``) configures arm ``arm``."""
    return arm in ARM_ONLY_SPEC_TABLES.get(key.split(".", 1)[0], (arm,))


@dataclass(frozen=True, eq=False)
class Plan:
    """One candidate plan of one patient.

    ``structures`` are the structures it was planned on (CT grid), including
    the ones made for it (PTV, vertices, valley, ring, STV). ``objectives`` are
    the optimisation objectives used (empty for forward-planned CRT).
    ``info`` records how the plan was made (field arrangement chosen, optimiser
    iterations and stop reason, normalisation factor, ...).
    ``delivery_beams`` are the control-point beams a machine delivers (after
    leaf sequencing; MU per fraction); when given, ``dose`` is their dose and
    ``ideal_dose`` the optimised fluence maps' dose, kept for comparison.
    """

    name: str
    arm: Arm
    prescription: Prescription
    beams: tuple[Beam, ...]
    structures: StructureSet
    dose: Volume | None = None
    objectives: tuple[Any, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    delivery_beams: tuple[ControlPointBeam, ...] = ()
    ideal_dose: Volume | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "arm", Arm.parse(self.arm))
        beams = tuple(self.beams)
        if not beams:
            raise PlanningError(f"plan {self.name!r} has no beams; give at least one beam")
        names = [b.name for b in beams]
        if len(set(names)) != len(names):
            raise PlanningError(f"plan {self.name!r}: beam names must be unique, got {names}")
        object.__setattr__(self, "beams", beams)
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "delivery_beams", tuple(self.delivery_beams))
        if not all(isinstance(b, ControlPointBeam) for b in self.delivery_beams):
            raise PlanningError(
                f"plan {self.name!r}: delivery_beams must be ControlPointBeam objects"
            )
        if self.dose is not None and self.dose.unit != "Gy":
            raise PlanningError(f"plan {self.name!r}: dose must be in Gy, got {self.dose.unit!r}")
        if self.prescription.method != "point" and self.prescription.target not in self.structures:
            raise PlanningError(
                f"plan {self.name!r}: prescription target {self.prescription.target!r} is not among the "
                f"structures ({', '.join(self.structures.names)})"
            )

    @property
    def fractions(self) -> int:
        return self.prescription.fractions

    @property
    def total_mu(self) -> float:
        """Monitor units of one fraction, summed over the delivery beams (else the beams)."""
        beams = self.delivery_beams or self.beams
        return float(sum(b.mu for b in beams))

    def dose_per_fraction(self) -> Volume:
        """The dose of one fraction (Gy)."""
        dose = self.require_dose()
        return Volume(dose.array / self.fractions, dose.grid, "Gy")

    def require_dose(self) -> Volume:
        if self.dose is None:
            raise PlanningError(f"plan {self.name!r} has no dose yet; compute it first")
        return self.dose

    def with_dose(self, dose: Volume) -> Plan:
        return replace(self, dose=dose)

    def scaled(self, factor: float) -> Plan:
        """The plan with every beam's MU and the dose multiplied by ``factor`` (> 0)."""
        if not (np.isfinite(factor) and factor > 0):
            raise PlanningError(
                f"plan {self.name!r}: scale factor must be positive, got {factor!r}"
            )
        beams = tuple(b.with_mu(b.mu * factor) for b in self.beams)
        delivery = tuple(replace(b, mu=b.mu * factor) for b in self.delivery_beams)

        def scale(v: Volume | None) -> Volume | None:
            return None if v is None else Volume(v.array * factor, v.grid, "Gy")

        return replace(
            self,
            beams=beams,
            dose=scale(self.dose),
            delivery_beams=delivery,
            ideal_dose=scale(self.ideal_dose),
        )

    def achieved_prescription_gy(self) -> float:
        """The prescription quantity (e.g. target D95%) of the current dose, Gy for the course.

        The target is sampled at sub-voxel points (lattice_plan.geometry.sampling),
        as the analysis module's DVHs sample it.
        """
        dose = self.require_dose()
        rx = self.prescription
        if rx.method == "point":
            ijk = dose.grid.continuous_ijk(rx.reference_point())
            value = ndimage.map_coordinates(
                dose.array.astype(float), ijk[::-1].reshape(3, 1), order=1
            )[0]
            return rx.achieved_gy(point_dose_gy=float(value))
        # The same sub-voxel sampler as the DVHs, so the reported metric equals the prescription.
        samples = sample_dose(dose, self.structures.get(rx.target), allow_partial=True)
        # Equal volumes need no weights (numpy's weighted inverted CDF can pick the next sample).
        weights = None if np.isscalar(samples.weight_cc) else samples.weight_cc
        return rx.achieved_gy(target_dose_gy=samples.dose_gy, target_weight_cc=weights)

    def normalised(self) -> Plan:
        """The plan scaled so that its prescription quantity equals the prescribed total dose."""
        achieved = self.achieved_prescription_gy()
        if achieved <= 0:
            raise PlanningError(
                f"plan {self.name!r}: the dose at the prescription point is zero; check the beams cover {self.prescription.target!r}"
            )
        factor = self.prescription.total_dose_gy / achieved
        plan = self.scaled(factor)
        return replace(plan, info={**self.info, "normalisation_factor": factor})
