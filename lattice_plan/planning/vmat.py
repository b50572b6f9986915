"""VMAT plans for the SFRT and SCART arms: optimised, sequenced into arcs, dose from control points.

:func:`build_vmat_plan` re-plans an optimised plan of the arm (the 9-beam
SFRT or SCART plan: its structures, objectives and prescription, its target
and isocentre) on arcs (default: :func:`lattice_plan.planning.arcs.default_arcs`):

1. fluence-map optimisation (:func:`lattice_plan.planning.optimizer.optimize_fluence`,
   the same optimiser and objectives as the static plans, the valley weighted
   more: :func:`vmat_objectives`) of one map per arc
   sector, each at its sector's mean gantry angle with its arc's collimator;
   the sectors of successive arcs are offset by a fraction of a sector so that
   their angles interleave;
2. arc sequencing (:func:`lattice_plan.planning.arc_sequencing.sequence_arc`):
   each map as a sliding-window sweep sampled at its sector's control points;
3. direct aperture optimisation against the same objectives: the interval MU
   (:mod:`lattice_plan.planning.aperture_opt`, leaf speed kept by lower bounds),
   then the leaf positions at held MU (:mod:`lattice_plan.planning.leaf_opt`,
   leaf speed and minimum gap kept by projected steps) and the MU again;
4. the plan's dose is the dose of the arcs' control points
   (:func:`lattice_plan.dose.delivery.control_point_dose`), normalised to the
   prescription; the ideal dose of the sector maps is kept as ``ideal_dose``;
   every interval of every arc is checked against the machine
   (:func:`lattice_plan.planning.arc_sequencing.check_arc_limits`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np

from lattice_plan.dose.delivery import DEFAULT_GANTRY_STEP_DEG, control_point_dose
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.machine import Machine, default_machine
from lattice_plan.errors import PlanningError
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import structure_on_grid
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.aperture_opt import RefinedArcs, refine_apertures
from lattice_plan.planning.arc_sequencing import (
    check_arc_limits,
    sector_cuts,
    sequence_arc,
)
from lattice_plan.planning.arcs import Arc, check_arc_fits, check_arcs, default_arcs
from lattice_plan.planning.beams import BeamArrangement, FluenceBeams, fluence_beams
from lattice_plan.planning.inverse import MAX_OBJECTIVE_VOXELS
from lattice_plan.planning.objectives import Objective, RingFallOff, ValleyDose
from lattice_plan.planning.optimizer import OptimizerOptions, objective_terms, optimize_fluence
from lattice_plan.planning.plan import Arm, Plan

log = logging.getLogger(__name__)

DEFAULT_SECTORS_PER_ARC = 8
VALLEY_WEIGHT_FACTOR = 3.0
"""How much more the VMAT plan weights the reference's valley objectives (see vmat_objectives)."""


def vmat_objectives(objectives: Sequence[Objective]) -> tuple[Objective, ...]:
    """The reference plan's objectives for its VMAT re-plan: valley objectives weighted
    :data:`VALLEY_WEIGHT_FACTOR` times more, the others as they are.

    Delivering the sector maps as arcs raises the valley dose over the maps' own
    (ideal) dose by about 5 % (leaf transmission over some 9000 MU, the sweeps
    sampled at 15 control points per sector; measured on the demo phantom by
    ``benchmarks/bench_vmat.py``, README "VMAT arcs"); aiming the valley lower in the
    maps and in the aperture optimisation lets the deliverable plan keep the
    9-beam plan's peak-to-valley ratio. The 9-beam plan is not changed.
    """
    return tuple(
        replace(o, weight=o.weight * VALLEY_WEIGHT_FACTOR) if isinstance(o, ValleyDose) else o
        for o in objectives
    )


def _sector_beams(
    plan: Plan, arcs: Sequence[Arc], n_sectors: int, beamlet_mm: float
) -> tuple[list[list[tuple[int, int]]], FluenceBeams]:
    """Sector control-point ranges per arc and one fluence-map beam per sector (all arcs)."""
    first = plan.beams[0]
    target = plan.structures.get(str(first.extra.get("fluence_target", "GTV")))
    margin = float(first.extra.get("fluence_margin_mm", 5.0))  # type: ignore[arg-type]
    iso = first.isocenter_lps_mm
    cuts, beams, active = [], [], []
    for a, arc in enumerate(arcs):
        sectors = sector_cuts(arc.n_control_points, n_sectors, phase=a / len(arcs))
        path = arc.path_deg()
        angles = tuple(float(np.mean(path[s : e + 1]) % 360.0) for s, e in sectors)
        fb = fluence_beams(
            target,
            iso,
            BeamArrangement(angles, arc.name),
            beamlet_mm=beamlet_mm,
            margin_mm=margin,
            name_prefix=f"{arc.name}_S",
            collimator_deg=arc.collimator_deg,
            couch_deg=arc.couch_deg,
        )
        cuts.append(sectors)
        beams.extend(fb.beams)
        active.extend(fb.active)
    all_angles = BeamArrangement(tuple(b.gantry_deg for b in beams), "arc sectors")
    return cuts, FluenceBeams(tuple(beams), tuple(active), all_angles, beamlet_mm, margin)


def build_vmat_plan(
    patient: Patient,
    reference: Plan,
    *,
    arcs: Sequence[Arc] | None = None,
    machine: Machine | None = None,
    engine: DoseEngine | None = None,
    sectors_per_arc: int = DEFAULT_SECTORS_PER_ARC,
    max_iterations: int = 60,
    aperture_iterations: int = 40,
    leaf_rounds: int = 1,
    leaf_iterations: int = 30,
    objectives: Sequence[Objective] | None = None,
    gantry_step_deg: float = DEFAULT_GANTRY_STEP_DEG,
    name: str | None = None,
) -> Plan:
    """A deliverable VMAT plan with the objectives of ``reference`` (see the module docstring).

    ``reference`` is an optimised SFRT or SCART plan of ``patient`` (it gives
    structures, objectives, prescription, target and isocentre); ``engine``
    should be the one it was planned with (same dose grid). ``objectives``
    replace :func:`vmat_objectives` of the reference's. ``leaf_rounds`` rounds of
    ``leaf_iterations`` leaf-position steps, each followed by the interval-MU
    optimisation again (0: the interval MU only).
    """
    t_start = time.perf_counter()
    if reference.arm not in (Arm.SFRT, Arm.SCART) or not reference.objectives:
        raise PlanningError(
            f"plan {reference.name!r}: VMAT re-plans an optimised SFRT or SCART plan; "
            f"got a {reference.arm.value} plan without objectives"
        )
    if int(sectors_per_arc) != sectors_per_arc or sectors_per_arc < 1:
        raise PlanningError(f"sectors_per_arc must be a positive integer, got {sectors_per_arc!r}")
    arcs_t = check_arcs(default_arcs() if arcs is None else arcs)
    mach = machine or default_machine()
    eng = engine or DoseEngine(
        patient.ct,
        patient.structures.external(),
        dose_spacing_mm=float(reference.info.get("dose_spacing_mm", 2.5)),
    )
    beamlet = float(reference.info.get("beamlet_mm", 5.0))
    rx = reference.prescription
    n_fx = rx.fractions
    objectives = tuple(vmat_objectives(reference.objectives) if objectives is None else objectives)

    # 1. fluence maps per sector
    cuts, fb = _sector_beams(reference, arcs_t, int(sectors_per_arc), beamlet)
    per_arc = [len(c) for c in cuts]
    bounds = np.cumsum([0, *per_arc])
    for a, arc in enumerate(arcs_t):
        check_arc_fits(
            arc,
            mach,
            [
                (b.jaws.x1_mm, b.jaws.x2_mm, b.jaws.y1_mm, b.jaws.y2_mm)
                for b in fb.beams[bounds[a] : bounds[a + 1]]
            ],
        )
    grid, inside = eng.dose_grid, eng.active_mask
    names = {o.structure for o in objectives} | {
        o.target for o in objectives if isinstance(o, RingFallOff)
    }
    masks = {
        n: structure_on_grid(reference.structures.get(n), grid).mask & inside for n in sorted(names)
    }
    subset, terms = objective_terms(objectives, masks, grid, max_voxels=MAX_OBJECTIVE_VOXELS)
    t0 = time.perf_counter()
    op = eng.operator(fb.beams, beamlet)
    options = OptimizerOptions()  # the arm builders' defaults (stop rule, float32 operator)
    sub_op = op.on_voxels(subset, single_precision=options.single_precision)
    t_operator = time.perf_counter() - t0
    fmo = optimize_fluence(
        sub_op,
        terms,
        fb.layout,
        dose_scale_gy=rx.total_dose_gy,
        active=fb.active_vector,
        max_iterations=max_iterations,
        **options.stop_kwargs(),
    )
    maps = fb.layout.split(np.asarray(fmo.x) / n_fx)
    sector_beams = []
    for b, m in zip(fb.beams, maps, strict=True):
        mu = float(m.max())
        if mu <= 0:
            raise PlanningError(
                f"VMAT plan: sector beam {b.name!r} got no fluence; use fewer sectors per arc"
            )
        sector_beams.append(b.with_fluence(b.fluence.with_values(m / mu)).with_mu(mu))  # type: ignore[union-attr]

    # 2. arc sequencing
    t0 = time.perf_counter()
    arc_beams = [sector_beams[bounds[a] : bounds[a + 1]] for a in range(len(arcs_t))]
    apertures = [sequence_arc(arc, cuts[a], arc_beams[a], mach) for a, arc in enumerate(arcs_t)]
    t_seq = time.perf_counter() - t0

    # 3. interval MU, then leaf positions and MU again, against the objectives (whole course)
    t0 = time.perf_counter()
    offsets = [
        [int(op.offsets[bounds[a] + k]) for k in range(per_arc[a])] for a in range(len(arcs_t))
    ]
    refined = refine_apertures(
        apertures,
        arc_beams,
        offsets,
        mach,
        sub_op,
        terms,
        fb.layout,
        dose_scale_gy=rx.total_dose_gy,
        n_fractions=n_fx,
        mu_iterations=aperture_iterations,
        leaf_rounds=leaf_rounds,
        leaf_iterations=leaf_iterations,
    )
    apertures = refined.apertures
    t_dao = time.perf_counter() - t0
    iso = sector_beams[0].isocenter_lps_mm
    cp_beams = tuple(ap.control_point_beam(mach, iso, sector_beams[0].energy) for ap in apertures)

    # 4. dose from the control points, normalised; ideal dose of the sector maps beside it
    t0 = time.perf_counter()
    dose_fx = control_point_dose(eng, cp_beams, mach, gantry_step_deg)
    ideal_fx = eng.compute(sector_beams)
    t_dose = time.perf_counter() - t0
    plan = Plan(
        name=name or f"{reference.name} VMAT",
        arm=reference.arm,
        prescription=rx,
        beams=tuple(sector_beams),
        structures=reference.structures,
        dose=Volume(dose_fx.array * n_fx, dose_fx.grid, "Gy"),
        objectives=objectives,
        delivery_beams=cp_beams,
    ).normalised()
    ideal = Plan(
        name="ideal",
        arm=reference.arm,
        prescription=rx,
        beams=tuple(sector_beams),
        structures=reference.structures,
        dose=Volume(ideal_fx.array * n_fx, ideal_fx.grid, "Gy"),
    ).normalised()
    reports = [check_arc_limits(b, mach) for b in plan.delivery_beams]
    info = _info(reference, arcs_t, mach, plan, fmo, refined, reports, per_arc, gantry_step_deg)
    info["timings_s"] = {
        "operator_setup": round(t_operator, 3),
        "fluence_optimisation": round(fmo.time_s, 3),
        "arc_sequencing": round(t_seq, 3),
        "aperture_optimisation": round(t_dao, 3),
        "final_dose": round(t_dose, 3),
        "total": round(time.perf_counter() - t_start, 3),
    }
    return replace(plan, ideal_dose=ideal.dose, info=info)


def _info(
    reference: Plan,
    arcs: Sequence[Arc],
    machine: Machine,
    plan: Plan,
    fmo: object,
    refined: RefinedArcs,
    reports: list,
    per_arc: list[int],
    gantry_step_deg: float,
) -> dict:
    mu_per_arc: dict[str, float] = {b.name: b.mu for b in plan.delivery_beams}
    return {
        "delivery": {
            "method": "vmat",
            "machine": machine.name,
            "arcs": [
                {**asdict(a), "sectors": n, "control_points": a.n_control_points}
                for a, n in zip(arcs, per_arc, strict=True)
            ],
            "gantry_step_deg": gantry_step_deg,
            "total_mu": plan.total_mu,
            "mu_per_arc": mu_per_arc,
            "delivery_time_s": float(sum(r.delivery_time_s for r in reports)),
            "limits": [asdict(r) for r in reports],
        },
        "reference_plan": reference.name,
        "isocenter_lps_mm": list(plan.beams[0].isocenter_lps_mm),
        "normalisation_factor": plan.info["normalisation_factor"],
        "optimizer": fmo.report(),  # type: ignore[attr-defined]
        "aperture_optimisation": refined.report(),
        "total_mu": plan.total_mu,
        "objectives": [o.describe() for o in plan.objectives],
    }
