"""The inverse-planning pipeline shared by the SFRT and SCART builders.

Given a patient, the structures made for the plan, a prescription and
objectives, :func:`build_optimised_plan`

1. binds the dose engine (or uses the one given) and rasterises every
   structure named by an objective on its dose grid, inside the body;
2. places the beams (equally spaced coplanar, or an arc on the target's
   side) at the target's centroid with beamlet maps covering the target's
   beam's-eye-view projection (:mod:`lattice_plan.planning.beams`);
3. optimises the beamlet weights over the voxels of the objectives' structures
   only (:mod:`lattice_plan.planning.optimizer`), with the engine's fluence
   operator and its adjoint on those voxels (a ceiling objective only where
   the dose is near its ceiling, :mod:`lattice_plan.planning.active_set`),
   until the dose has settled
   (:class:`~lattice_plan.planning.optimizer.OptimizerOptions`); the
   objectives are in Gy for the whole course;
4. turns the weights into beams with MU per fraction and a fluence map,
   computes the final dose with the engine on the whole dose grid, and
   normalises the plan to its prescription; then sequences the maps into
   control points and makes their dose, renormalised, the plan's dose (the
   fluence-map dose is kept as ``Plan.ideal_dose``);
5. reports the total MU and the modulation: the MU of the plan over the MU
   of the same beams with open fluence over their active beamlets (equal MU
   per beam) normalised to the same prescription. A beam's MU is its largest
   beamlet weight (the MU of fluence 1); delivering the map with a sliding-window
   MLC takes more, which ``sliding_window_mu`` (and its modulation) estimates.

Default OAR objectives follow the single-fraction (and 3- and 5-fraction)
limits of AAPM TG-101 (Benedict et al., Med Phys 37 (2010) 4078, Table III),
see :data:`TG101_LIMITS_GY`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import PlanningError
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import (
    Structure,
    StructureKind,
    StructureSet,
    structure_on_grid,
)
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.beams import (
    BEAMLET_SIZES_MM,
    arrangement_for,
    coplanar_arrangement,
    fluence_beams,
    isocentre_of,
    sliding_window_mu,
)
from lattice_plan.planning.deliverable import DeliverySpec, make_deliverable
from lattice_plan.planning.objectives import (
    MaxDose,
    MeanDose,
    Objective,
    RingFallOff,
    check_objectives,
)
from lattice_plan.planning.optimizer import (
    DEFAULT_SMOOTHNESS,
    OptimizationResult,
    OptimizerOptions,
    objective_terms,
    optimize_fluence,
)
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrganLimit:
    """A TG-101 limit: the maximum point dose of a serial organ, or a critical-volume threshold.

    ``dmax_gy`` maps fractions (1, 3, 5) to the maximum point dose (serial
    organs); ``threshold_gy`` maps fractions to the dose that a critical volume
    ``critical_volume_cc`` must stay under (parallel organs).
    """

    organ: str
    dmax_gy: dict[int, float] | None = None
    threshold_gy: dict[int, float] | None = None
    critical_volume_cc: float | None = None


# AAPM TG-101 (Benedict et al. 2010, Table III), 1, 3 and 5 fractions.
TG101_LIMITS_GY: dict[str, OrganLimit] = {
    "cord": OrganLimit("spinal cord", dmax_gy={1: 14.0, 3: 21.9, 5: 30.0}),
    "cauda": OrganLimit("cauda equina", dmax_gy={1: 16.0, 3: 24.0, 5: 32.0}),
    "skin": OrganLimit("skin", dmax_gy={1: 26.0, 3: 33.0, 5: 39.5}),
    "bowel": OrganLimit("jejunum/ileum", dmax_gy={1: 15.4, 3: 25.2, 5: 35.0}),
    "liver": OrganLimit("liver", threshold_gy={1: 9.1, 3: 19.2, 5: 21.0}, critical_volume_cc=700.0),
    "kidney": OrganLimit(
        "renal cortex", threshold_gy={1: 8.4, 3: 16.0, 5: 17.5}, critical_volume_cc=200.0
    ),
}

# Structure-name keys (casefolded, separators removed) -> TG-101 organ.
_ORGAN_KEYS: tuple[tuple[str, str], ...] = (
    ("cauda", "cauda"),
    ("spinalcanal", "cord"),
    ("spinalcord", "cord"),
    ("cord", "cord"),
    ("kidney", "kidney"),
    ("renal", "kidney"),
    ("bowel", "bowel"),
    ("jejunum", "bowel"),
    ("ileum", "bowel"),
    ("duodenum", "bowel"),
    ("liver", "liver"),
    ("skin", "skin"),
)

# Fraction of the TG-101 limit that the default OAR objectives aim at, and their weights.
_SERIAL_AIM = 0.6
_PARALLEL_AIM = 0.5
_SERIAL_WEIGHT = 10.0
_CAUDA_CORD_WEIGHT = 30.0
_PARALLEL_WEIGHT = 3.0
_GENERIC_OAR_FRACTION_OF_RX = 0.5

# Structures with more voxels on the dose grid (the normal tissue, a large liver) are
# optimised on a regular sub-lattice of their voxels (see objective_terms).
MAX_OBJECTIVE_VOXELS = 100_000


def organ_of(name: str) -> str | None:
    """The TG-101 organ key (see :data:`TG101_LIMITS_GY`) of a structure name, or None."""
    key = "".join(ch for ch in name.casefold() if ch.isalnum())
    for sub, organ in _ORGAN_KEYS:
        if sub in key:
            return organ
    return None


def _limit_for_fractions(table: dict[int, float], fractions: int) -> float:
    """The tabulated limit for ``fractions``; otherwise the iso-effective one from the 1-fraction limit.

    The conversion keeps the biologically effective dose of the 1-fraction limit
    (linear-quadratic model, alpha/beta = 2 Gy for late-responding tissue):
    n d (1 + d / 2) = D1 (1 + D1 / 2), solved for the dose per fraction d.
    """
    if fractions in table:
        return table[fractions]
    d1 = table[1]
    bed = d1 * (1.0 + d1 / 2.0)
    # n d^2 / 2 + n d - bed = 0
    d = (-fractions + np.sqrt(fractions**2 + 2.0 * fractions * bed)) / fractions
    return float(fractions * d)


def default_oar_objectives(
    oars: Sequence[Structure], prescription: Prescription
) -> list[Objective]:
    """One objective per OAR from its TG-101 limit for the prescription's fraction count.

    Serial organs (cord, cauda, skin, bowel): a maximum at 60 % of the Dmax
    limit (cord and cauda weighted highest). Parallel organs (liver, kidney): a
    mean dose at most half the critical-volume threshold. Other OARs: a
    maximum at half the prescription.
    """
    out: list[Objective] = []
    n = prescription.fractions
    for s in oars:
        organ = organ_of(s.name)
        limit = TG101_LIMITS_GY.get(organ) if organ else None
        if limit is None:
            level = _GENERIC_OAR_FRACTION_OF_RX * prescription.total_dose_gy
            out.append(MaxDose(s.name, level, weight=1.0))
        elif limit.dmax_gy is not None:
            w = _CAUDA_CORD_WEIGHT if organ in ("cauda", "cord") else _SERIAL_WEIGHT
            out.append(
                MaxDose(s.name, _SERIAL_AIM * _limit_for_fractions(limit.dmax_gy, n), weight=w)
            )
        else:
            assert limit.threshold_gy is not None
            level = _PARALLEL_AIM * _limit_for_fractions(limit.threshold_gy, n)
            out.append(MeanDose(s.name, level, weight=_PARALLEL_WEIGHT))
    return out


def resolve_oars(
    patient: Patient, oars: Sequence[str] | None, exclude: Sequence[str]
) -> list[Structure]:
    """The OAR structures: the named ones, or every OAR-kind structure of the patient."""
    skip = {n.casefold() for n in exclude}
    if oars is None:
        return [
            s
            for s in patient.structures.of_kind(StructureKind.OAR)
            if s.name.casefold() not in skip
        ]
    return [patient.structures.get(n) for n in oars]


def check_plan_options(
    n_beams: int, arc_deg: float | None, beamlet_mm: float, objectives: Sequence[Objective] | None
) -> None:
    """Refuse bad beam options or conflicting objectives before any costly work."""
    if isinstance(n_beams, bool) or int(n_beams) != n_beams or n_beams < 1:
        raise PlanningError(
            f"n_beams must be a positive integer (at least one beam), got {n_beams!r}"
        )
    if beamlet_mm not in BEAMLET_SIZES_MM:
        raise PlanningError(
            f"beamlet_mm must be one of {', '.join(f'{b:g}' for b in BEAMLET_SIZES_MM)} mm, "
            f"got {beamlet_mm!r}"
        )
    if arc_deg is not None:
        coplanar_arrangement(int(n_beams), arc_deg)
    if objectives is not None:
        check_objectives(tuple(objectives))


def _engine_for(patient: Patient, engine: DoseEngine | None, dose_spacing_mm: float) -> DoseEngine:
    if engine is None:
        return DoseEngine(
            patient.ct, patient.structures.external(), dose_spacing_mm=dose_spacing_mm
        )
    if not engine.ct.grid.same_as(patient.grid):
        raise PlanningError(
            "the dose engine given was built on another CT grid than the patient's; build it with "
            "DoseEngine(patient.ct, body)"
        )
    return engine


def build_optimised_plan(
    patient: Patient,
    *,
    arm: Arm,
    name: str,
    prescription: Prescription,
    fluence_target: Structure,
    structures: StructureSet,
    objectives: Sequence[Objective],
    n_beams: int,
    arc_deg: float | None,
    beamlet_mm: float,
    engine: DoseEngine | None,
    dose_spacing_mm: float,
    max_iterations: int,
    progress: Callable[[int, float], None] | None,
    smoothness: float = DEFAULT_SMOOTHNESS,
    info: dict[str, Any] | None = None,
    started_s: float | None = None,
    delivery: DeliverySpec | None = None,
    optimizer: OptimizerOptions | None = None,
) -> Plan:
    """Optimise, compute and normalise a fluence-modulated plan (see the module docstring).

    ``structures`` is the plan's structure set (the patient's plus the ones
    made for it); ``fluence_target`` is what the beamlet maps cover (the GTV).
    ``started_s`` (``time.perf_counter()``) is when the caller began building
    those structures: the time until now is reported as ``geometry`` and counts
    in the ``total``. ``delivery`` says how the maps are delivered (default:
    sliding window on the default machine); the plan's dose is then the
    deliverable one (:func:`lattice_plan.planning.deliverable.make_deliverable`).
    ``optimizer``: when the optimiser stops and in which
    precision it works (default :class:`OptimizerOptions`: until the dose has
    settled, single-precision maps); the final dose is always the engine's, in
    double precision.
    """
    options = optimizer or OptimizerOptions()
    t_start = time.perf_counter()
    t_begin = t_start if started_s is None else started_s
    objectives = tuple(objectives)
    check_plan_options(n_beams, arc_deg, beamlet_mm, objectives)
    body = structures.external()
    eng = _engine_for(patient, engine, dose_spacing_mm)
    grid = eng.dose_grid
    inside = eng.active_mask

    names = {o.structure for o in objectives}
    names |= {o.target for o in objectives if isinstance(o, RingFallOff)}
    masks: dict[str, NDArray[np.bool_]] = {}
    for n in sorted(names):
        s = structures.get(n)
        masks[n] = structure_on_grid(s, grid).mask & inside
    subset, terms = objective_terms(objectives, masks, grid, max_voxels=MAX_OBJECTIVE_VOXELS)

    iso = isocentre_of(fluence_target)
    arrangement = arrangement_for(fluence_target, body, int(n_beams), arc_deg)
    fb = fluence_beams(fluence_target, iso, arrangement, beamlet_mm=beamlet_mm)
    t0 = time.perf_counter()
    op = eng.operator(fb.beams, beamlet_mm)
    t_operator = time.perf_counter() - t0
    sub_op = op.on_voxels(subset, single_precision=options.single_precision)
    rx_total = prescription.total_dose_gy
    result: OptimizationResult = optimize_fluence(
        sub_op,
        terms,
        fb.layout,
        dose_scale_gy=rx_total,
        active=fb.active_vector,
        smoothness=smoothness,
        max_iterations=max_iterations,
        progress=progress,
        **options.stop_kwargs(),
    )

    # Weights are MU for the whole course; beams carry MU per fraction.
    n_fx = prescription.fractions
    beams = fb.with_weights(np.asarray(result.x) / n_fx)
    t0 = time.perf_counter()
    dose_fx = eng.compute(beams)
    t_dose = time.perf_counter() - t0
    dose = Volume(dose_fx.array * n_fx, dose_fx.grid, "Gy")

    # Open-field reference: 1 MU per active beamlet of every beam, scaled to the prescription.
    if prescription.method == "point":
        pt = np.asarray(prescription.reference_point_lps_mm, dtype=float)
        open_achieved = float(eng.point_dose(fb.beams, pt[None, :])[0]) / fb.beams[0].mu
    else:
        rx_voxels = np.flatnonzero(
            structure_on_grid(structures.get(prescription.target), grid).mask
        )
        open_dose = op.forward(fb.active_vector.astype(float), rx_voxels)
        open_achieved = prescription.achieved_gy(target_dose_gy=open_dose)
    if not open_achieved > 0:
        raise PlanningError(
            f"plan {name!r}: the open beams give no dose at the prescription "
            f"({prescription.describe()}); check the isocentre and the beams"
        )
    open_mu_per_beam = prescription.dose_per_fraction_gy / open_achieved

    plan = Plan(
        name=name,
        arm=arm,
        prescription=prescription,
        beams=beams,
        structures=structures,
        dose=dose,
        objectives=objectives,
    ).normalised()
    open_total_mu = open_mu_per_beam * len(fb.beams)
    sliding_mu = sum(sliding_window_mu(b) for b in plan.beams)
    plan_info = dict(info or {})
    plan_info.update(
        {
            "arrangement": arrangement.description,
            "gantry_deg": list(arrangement.gantry_deg),
            "isocenter_lps_mm": list(iso),
            "beamlet_mm": float(beamlet_mm),
            "n_beamlets": int(fb.layout.n_beamlets),
            "n_active_beamlets": int(fb.active_vector.sum()),
            "dose_spacing_mm": float(eng.dose_spacing_mm),
            "optimisation_voxels": int(subset.size),
            "objectives": [o.describe() for o in objectives],
            "optimizer": result.report(),
            "normalisation_factor": plan.info["normalisation_factor"],
            "total_mu": plan.total_mu,
            "mu_per_beam": {b.name: b.mu for b in plan.beams},
            "open_field_total_mu": open_total_mu,
            "modulation": plan.total_mu / open_total_mu,
            "sliding_window_mu": sliding_mu,
            "sliding_window_modulation": sliding_mu / open_total_mu,
            "timings_s": {
                "operator_setup": round(t_operator, 3),
                "optimisation": round(result.time_s, 3),
                "final_dose": round(t_dose, 3),
                **({} if started_s is None else {"geometry": round(t_start - started_s, 3)}),
                "total": round(time.perf_counter() - t_begin, 3),
            },
        }
    )
    log.info(
        "%s: %s, %d iterations (%s), total MU %.0f, modulation %.2f",
        name,
        arrangement.description,
        result.iterations,
        result.stop_reason,
        plan.total_mu,
        plan_info["modulation"],
    )
    return make_deliverable(
        replace(plan, info=plan_info), eng, delivery if delivery is not None else DeliverySpec()
    )


def add_structures(base: StructureSet, *new: Structure) -> StructureSet:
    """``base`` with the plan's own structures added; a same-named one is replaced (logged)."""
    for s in new:
        if s.name in base:
            log.info("replacing the patient's structure %r with the one made for the plan", s.name)
    return base.with_structures(*new, replace_existing=True)
