"""SCART plans: an ablative dose to a central core (the STV) with the GTV edge held low.

:func:`build_scart_plan`

1. draws the STV inside the GTV (:func:`lattice_plan.geometry.scart.scart_core`,
   by default the dose-ratio method: the GTV scaled about its centre by the
   edge dose over the core dose, 3 Gy / 15 Gy) and the structures the
   objectives act on: ``GTV_Edge`` (the GTV's outer 5 mm shell), ``Ring``
   (5-20 mm outside the GTV, inside the body) and ``NormalTissue`` (the body
   beyond 20 mm of the GTV);
2. prescribes 15 Gy x 1 to the STV D95% unless told otherwise;
3. optimises 9 equally spaced coplanar beams (or ``n_beams`` approximating an
   arc) with 5 mm beamlets (2.5 mm selectable) against the default objectives
   (:func:`default_scart_objectives`) or the ones given, computes the dose and
   normalises it to the prescription (:mod:`lattice_plan.planning.inverse`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import GeometryError, PlanningError
from lattice_plan.geometry.lattice import ring_structure
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.scart import SCART_METHODS, scart_core
from lattice_plan.geometry.structure import Structure
from lattice_plan.planning.deliverable import DeliverySpec
from lattice_plan.planning.inverse import (
    add_structures,
    build_optimised_plan,
    check_plan_options,
    default_oar_objectives,
    resolve_oars,
)
from lattice_plan.planning.objectives import (
    EdgeDose,
    MaxDose,
    MinDose,
    Objective,
    RingFallOff,
)
from lattice_plan.planning.optimizer import OptimizerOptions
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription, prescription_from
from lattice_plan.planning.sfrt import (
    GTV_EDGE,
    NORMAL_TISSUE,
    RING,
    RING_MM,
    gtv_edge_structure,
    normal_tissue_structure,
)

log = logging.getLogger(__name__)

STV = "STV"
DEFAULT_SCART_DOSE_GY = 15.0
DEFAULT_EDGE_DOSE_GY = 3.0


@dataclass(frozen=True)
class ScartParameters:
    """How to draw the SCART core (see :func:`lattice_plan.geometry.scart.scart_core`).

    method: "dose_ratio" (default), "contract" or "volume_fraction".
    periphery_dose_gy, core_dose_gy: per-fraction doses of the GTV edge and the core for
        the dose-ratio method; None takes 3 Gy and the prescription's dose per fraction.
    margin_mm: contraction margin for "contract"; volume_fraction (0-1) for "volume_fraction".
    si_trim_mm: trimmed off the superior and inferior ends of the core.
    """

    method: str = "dose_ratio"
    periphery_dose_gy: float | None = None
    core_dose_gy: float | None = None
    margin_mm: float | None = None
    volume_fraction: float | None = None
    si_trim_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in SCART_METHODS:
            raise PlanningError(
                f"unknown SCART method {self.method!r}; use one of {', '.join(SCART_METHODS)}"
            )
        for field_name in ("periphery_dose_gy", "core_dose_gy", "margin_mm", "volume_fraction"):
            v = getattr(self, field_name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise PlanningError(f"ScartParameters.{field_name} must be positive, got {v!r}")

    def core(self, gtv: Structure, prescription: Prescription, name: str = STV) -> Structure:
        """The STV of ``gtv`` for ``prescription``."""
        periphery = (
            DEFAULT_EDGE_DOSE_GY if self.periphery_dose_gy is None else self.periphery_dose_gy
        )
        core_dose = (
            prescription.dose_per_fraction_gy if self.core_dose_gy is None else self.core_dose_gy
        )
        try:
            return scart_core(
                gtv,
                self.method,  # type: ignore[arg-type]
                margin_mm=self.margin_mm,
                volume_fraction=self.volume_fraction,
                periphery_dose_gy=periphery if self.method == "dose_ratio" else None,
                core_dose_gy=core_dose if self.method == "dose_ratio" else None,
                si_trim_mm=self.si_trim_mm,
                name=name,
            )
        except GeometryError as exc:
            raise PlanningError(f"SCART core: {exc}") from exc


def default_scart_objectives(
    prescription: Prescription, oars: Sequence[Structure], edge_dose_gy: float
) -> list[Objective]:
    """The SCART objectives for R Gy (whole course) to the STV D95% and an edge dose E (course).

    STV: every voxel at least R and at most 1.3 R. GTV edge: near E. Ring: from
    E at the GTV surface down to E / 2 15 mm out. Normal tissue: at most
    0.4 R. OARs: TG-101 (see :func:`lattice_plan.planning.inverse.default_oar_objectives`).
    """
    r = prescription.total_dose_gy
    return [
        MinDose(STV, r, weight=100.0),
        MaxDose(STV, 1.3 * r, weight=5.0),
        EdgeDose(GTV_EDGE, edge_dose_gy, weight=20.0),
        RingFallOff(
            RING,
            "GTV",
            high_gy=edge_dose_gy,
            low_gy=0.5 * edge_dose_gy,
            distance_mm=15.0,
            weight=5.0,
        ),
        MaxDose(NORMAL_TISSUE, 0.4 * r, weight=100.0),
        *default_oar_objectives(oars, prescription),
    ]


def build_scart_plan(
    patient: Patient,
    gtv: str = "GTV",
    *,
    oars: Sequence[str] | None = None,
    core: ScartParameters | None = None,
    prescription: Prescription | None = None,
    n_beams: int = 9,
    arc_deg: float | None = None,
    beamlet_mm: float = 5.0,
    objectives: Sequence[Objective] | None = None,
    engine: DoseEngine | None = None,
    dose_spacing_mm: float = 2.5,
    max_iterations: int = 200,
    progress: Callable[[int, float], None] | None = None,
    delivery: DeliverySpec | None = None,
    optimizer: OptimizerOptions | None = None,
    name: str = "SCART",
) -> Plan:
    """An optimised SCART plan of ``patient`` (see the module docstring).

    ``oars=None`` takes every OAR-kind structure; ``prescription`` defaults to
    15 Gy x 1 to the STV D95%; ``core`` to the dose-ratio STV (3 Gy edge over
    the prescription's dose per fraction). ``optimizer``: how the optimiser
    runs (default: until the dose has settled, see :class:`OptimizerOptions`).
    """
    t0 = time.perf_counter()
    check_plan_options(n_beams, arc_deg, beamlet_mm, objectives)
    target = patient.structures.get(gtv)
    target.require_nonempty("a SCART plan")
    body = patient.structures.external()
    oar_structures = resolve_oars(patient, oars, exclude=(target.name,))
    params = core or ScartParameters()
    rx = prescription or prescription_from(DEFAULT_SCART_DOSE_GY, 1, STV, "D95%")
    stv = params.core(target, rx, STV)
    try:
        ring = ring_structure(target, RING_MM[0], RING_MM[1], body, RING)
    except GeometryError as exc:
        raise PlanningError(f"SCART plan {name!r}: {exc}") from exc
    structures = add_structures(
        patient.structures,
        stv,
        gtv_edge_structure(target),
        ring,
        normal_tissue_structure(target, body),
    )
    edge_per_fx = (
        DEFAULT_EDGE_DOSE_GY if params.periphery_dose_gy is None else params.periphery_dose_gy
    )
    objs = (
        tuple(objectives)
        if objectives is not None
        else tuple(default_scart_objectives(rx, oar_structures, edge_per_fx * rx.fractions))
    )
    return build_optimised_plan(
        patient,
        arm=Arm.SCART,
        name=name,
        prescription=rx,
        fluence_target=target,
        structures=structures,
        objectives=objs,
        n_beams=n_beams,
        arc_deg=arc_deg,
        beamlet_mm=beamlet_mm,
        engine=engine,
        dose_spacing_mm=dose_spacing_mm,
        max_iterations=max_iterations,
        delivery=delivery,
        progress=progress,
        optimizer=optimizer,
        started_s=t0,
        info={
            "stv_method": params.method,
            "stv_volume_cc": round(stv.volume_cc, 3),
            "gtv_volume_cc": round(target.volume_cc, 3),
            "edge_dose_per_fraction_gy": edge_per_fx,
        },
    )
