"""SFRT (lattice) plans: high-dose vertices inside the GTV, a low valley between them.

:func:`build_sfrt_plan`

1. places the vertices in the GTV clear of the OARs
   (:func:`lattice_plan.geometry.lattice.place_vertices`, defaults of
   :class:`~lattice_plan.geometry.lattice.LatticeParameters`), and makes the
   structures the objectives act on: ``Vertices`` (all spheres), ``Valley``
   (the GTV minus the vertices grown by 5 mm), ``GTV_Edge`` (the GTV's outer
   5 mm shell), ``Ring`` (5-20 mm outside the GTV, inside the body) and
   ``NormalTissue`` (the body beyond 20 mm of the GTV);
2. prescribes 15 Gy x 1 to the mean vertex dose unless told otherwise;
3. optimises 9 equally spaced coplanar beams (or ``n_beams`` approximating an
   arc of ``arc_deg``) with 5 mm beamlets (2.5 mm selectable) against the
   default objectives (:func:`default_sfrt_objectives`) or the ones given,
   computes the dose and normalises it to the prescription
   (:mod:`lattice_plan.planning.inverse`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import GeometryError, PlanningError
from lattice_plan.geometry.lattice import (
    LatticeParameters,
    place_vertices,
    ring_structure,
    valley_structure,
)
from lattice_plan.geometry.morphology import contract, expand
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import Structure, StructureKind
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
    Objective,
    PeakDose,
    RingFallOff,
    ValleyDose,
)
from lattice_plan.planning.optimizer import OptimizerOptions
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription, prescription_from

log = logging.getLogger(__name__)

VERTICES = "Vertices"
VALLEY = "Valley"
GTV_EDGE = "GTV_Edge"
RING = "Ring"
NORMAL_TISSUE = "NormalTissue"

EDGE_DEPTH_MM = 5.0
VALLEY_MARGIN_MM = 5.0
RING_MM = (5.0, 20.0)
DEFAULT_SFRT_DOSE_GY = 15.0


def gtv_edge_structure(
    gtv: Structure, depth_mm: float = EDGE_DEPTH_MM, name: str = GTV_EDGE
) -> Structure:
    """The outer ``depth_mm`` shell of the GTV (the GTV minus the GTV contracted by it)."""
    core = contract(gtv, depth_mm)
    edge = gtv.with_mask(gtv.mask & ~core.mask, name, StructureKind.AVOIDANCE)
    edge.require_nonempty("the GTV edge")
    return edge


def normal_tissue_structure(
    gtv: Structure, body: Structure, distance_mm: float = RING_MM[1], name: str = NORMAL_TISSUE
) -> Structure:
    """The body beyond ``distance_mm`` of the GTV (kind AVOIDANCE)."""
    near = expand(gtv, distance_mm)
    return body.with_mask(body.mask & ~near.mask, name, StructureKind.AVOIDANCE)


def default_sfrt_objectives(
    prescription: Prescription, oars: Sequence[Structure]
) -> list[Objective]:
    """The SFRT objectives for a prescription of R Gy (whole course) to the mean vertex dose.

    Peak: every vertex voxel at least R. Valley: at most 0.2 R (a mean vertex
    to valley ratio of at least 3 needs the valley mean under R / 3). GTV
    edge near 0.2 R. Ring: from 0.25 R at the GTV surface down to 0.1 R 15 mm
    out. Normal tissue: at most 0.4 R (weighted high: its hot spots are few voxels of many). OARs: TG-101 (see
    :func:`lattice_plan.planning.inverse.default_oar_objectives`).
    """
    r = prescription.total_dose_gy
    return [
        PeakDose(VERTICES, r, weight=50.0),
        ValleyDose(VALLEY, 0.2 * r, weight=10.0),
        EdgeDose(GTV_EDGE, 0.2 * r, weight=5.0),
        RingFallOff(RING, "GTV", high_gy=0.25 * r, low_gy=0.1 * r, distance_mm=15.0, weight=5.0),
        MaxDose(NORMAL_TISSUE, 0.4 * r, weight=100.0),
        *default_oar_objectives(oars, prescription),
    ]


def build_sfrt_plan(
    patient: Patient,
    gtv: str = "GTV",
    *,
    oars: Sequence[str] | None = None,
    lattice: LatticeParameters | None = None,
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
    name: str = "SFRT",
) -> Plan:
    """An optimised lattice plan of ``patient`` (see the module docstring).

    ``oars=None`` takes every OAR-kind structure; ``prescription`` defaults to
    15 Gy x 1 to the mean dose of ``Vertices``. ``progress(iteration,
    objective)`` reports the optimiser's progress; ``optimizer`` how the
    optimiser runs (default: until the dose has settled, see :class:`OptimizerOptions`).
    """
    t0 = time.perf_counter()
    check_plan_options(n_beams, arc_deg, beamlet_mm, objectives)
    target = patient.structures.get(gtv)
    target.require_nonempty("an SFRT plan")
    body = patient.structures.external()
    oar_structures = resolve_oars(patient, oars, exclude=(target.name,))
    params = lattice or LatticeParameters()
    try:
        result = place_vertices(target, oar_structures, params)
        valley = valley_structure(target, result, VALLEY_MARGIN_MM, VALLEY)
        ring = ring_structure(target, RING_MM[0], RING_MM[1], body, RING)
    except GeometryError as exc:
        raise PlanningError(f"SFRT plan {name!r}: {exc}") from exc
    vertices = result.vertices.renamed(VERTICES, StructureKind.VERTEX)
    structures = add_structures(
        patient.structures,
        vertices,
        valley,
        gtv_edge_structure(target),
        ring,
        normal_tissue_structure(target, body),
    )
    rx = prescription or prescription_from(DEFAULT_SFRT_DOSE_GY, 1, VERTICES, "Dmean")
    objs = (
        tuple(objectives)
        if objectives is not None
        else tuple(default_sfrt_objectives(rx, oar_structures))
    )
    return build_optimised_plan(
        patient,
        arm=Arm.SFRT,
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
            "n_vertices": result.n_vertices,
            "vertex_centers_lps_mm": result.centers_lps_mm.round(2).tolist(),
            "vertex_diameter_mm": float(params.diameter_mm),
            "lattice_pattern": params.pattern.value,  # type: ignore[union-attr]
            "lattice_spacing_mm": float(params.spacing_mm),
        },
    )
