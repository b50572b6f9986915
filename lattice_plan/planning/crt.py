"""Conventional (CRT) plans as a planner makes them: candidate arrangements, weights and
field-in-field segments against the prescription and the protocol's dose limits.

The builder

1. makes the PTV: the GTV grown by ``ptv_margin_mm`` (Euclidean, true voxel
   spacing) and cropped to the body outline, and puts the isocentre at its
   centroid rounded to whole millimetres;
2. takes the candidate arrangements from where the target lies
   (:mod:`lattice_plan.planning.crt_arrangements`; for a paravertebral mass PA,
   PA/AP weighted, PA + posterior obliques, PA + laterals, four-field box), or
   the user's gantry angles;
3. shapes each field's MLC and jaws to the PTV's beam's-eye view plus
   ``penumbra_margin_mm`` and computes its dose once;
4. for each candidate, finds the weights by linear programming
   (:mod:`lattice_plan.planning.crt_weights`): PTV D95% = Rx, the hot spot as
   low as possible, at most 107 %, and the dose limits (``limits``: the
   protocol arm's constraints, see :mod:`lattice_plan.qa.planning_limits`)
   met where any weighting meets them. While a candidate still breaks a limit
   or the hot-spot limit, each field gets a field-in-field segment closed over
   the region at fault (up to ``max_segments_per_beam``;
   :mod:`lattice_plan.planning.crt_segments`) and the weights are found again
   (:mod:`lattice_plan.planning.crt_candidates`);
5. picks the candidate that meets the limits and the hot-spot limit, then the
   most homogeneous (ICRU 83 HI, to 0.01) and most conformal (Paddick CI), both
   on dose-grid voxels (planning cannot import analysis); where none meets
   them, the one that breaks the fewest, then the least, and says so;
6. sets each beam's MU and normalises the plan to PTV D95% = Rx.

``info`` records the target position, every candidate (one line each:
weights, segments, MU, hot spot, limit values), the chosen plan with its
description, whether it meets the limits and, if not, which limit fails by
how much (``limit_failures``), MU per beam and timings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import LatticePlanError, PlanningError
from lattice_plan.geometry.morphology import expand, intersection
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import Structure, StructureKind
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.apertures import conformal_beam
from lattice_plan.planning.crt_arrangements import (
    Arrangement,
    beam_names,
    candidate_arrangements,
    check_arrangement_names,
    locate_target,
)
from lattice_plan.planning.crt_candidates import CandidateProblem, FieldColumn, optimise_candidate
from lattice_plan.planning.crt_limits import LimitSet
from lattice_plan.planning.crt_report import (
    candidate_info,
    describe_plan,
    failure_lines,
    limit_results,
)
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription

log = logging.getLogger(__name__)

PTV_NAME = "PTV"
ISOCENTRE_ROUNDING_MM = 1.0
DEFAULT_MAX_SEGMENTS_PER_BEAM = 2

#: The palliative CRT schedules (whole-course dose in Gy, fractions), selectable by name.
CRT_SCHEDULES: dict[str, tuple[float, int]] = {
    "30Gy/10": (30.0, 10),
    "20Gy/5": (20.0, 5),
    "8Gy/1": (8.0, 1),
}
DEFAULT_SCHEDULE = "30Gy/10"


def crt_prescription(
    total_dose_gy: float = 30.0, fractions: int = 10, target: str = PTV_NAME
) -> Prescription:
    """A CRT prescription to the PTV D95%: default 30 Gy in 10 fractions (see CRT_SCHEDULES)."""
    if fractions < 1 or int(fractions) != fractions:
        raise PlanningError(f"fractions must be a positive integer, got {fractions!r}")
    return Prescription(total_dose_gy / fractions, int(fractions), target, "D95%")


def schedule_prescription(schedule: str, target: str = PTV_NAME) -> Prescription:
    """The prescription of a named schedule ("30Gy/10", "20Gy/5" or "8Gy/1"; spaces and
    case do not matter, "8Gy/1fx" and "8Gy x 1" are read too)."""
    key = str(schedule).replace(" ", "").replace("fx", "").replace("x", "/").replace("X", "/")
    found = next((k for k in CRT_SCHEDULES if k.casefold() == key.casefold()), None)
    if found is None:
        raise PlanningError(
            f"unknown CRT schedule {schedule!r}; use one of {', '.join(CRT_SCHEDULES)}"
        )
    return crt_prescription(*CRT_SCHEDULES[found], target=target)


def schedule_name(rx: Prescription) -> str | None:
    """The schedule name of a prescription, or None if it is not one of CRT_SCHEDULES."""
    for key, (dose, n) in CRT_SCHEDULES.items():
        if n == rx.fractions and abs(rx.total_dose_gy - dose) < 1e-6:
            return key
    return None


def _make_ptv(
    patient: Patient, gtv: Structure, margin_mm: float
) -> tuple[Structure, Structure | None]:
    try:
        body = patient.structures.external()
    except LatticePlanError:
        body = None
    ptv = expand(gtv, margin_mm, name=PTV_NAME, kind=StructureKind.PTV)
    if body is not None:
        ptv = intersection(ptv, body, name=PTV_NAME, kind=StructureKind.PTV)
    if ptv.is_empty:
        raise PlanningError(f"the PTV ({gtv.name} + {margin_mm:g} mm within the body) is empty")
    return ptv, body


def build_crt_plan(
    patient: Patient,
    gtv: str = "GTV",
    *,
    prescription: Prescription | None = None,
    schedule: str | None = None,
    ptv_margin_mm: float = 10.0,
    penumbra_margin_mm: float = 7.0,
    gantry_deg: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    arrangements: Sequence[str] | None = None,
    max_segments_per_beam: int = DEFAULT_MAX_SEGMENTS_PER_BEAM,
    limits: LimitSet | None = None,
    engine: DoseEngine | None = None,
    dose_spacing_mm: float = 2.5,
    name: str = "CRT",
) -> Plan:
    """A forward-planned CRT plan of ``patient`` normalised to the PTV D95% (module docstring).

    prescription or schedule: the dose (default schedule 30Gy/10, see CRT_SCHEDULES).
    gantry_deg, weights: the user's fields (degrees) and, optionally, their relative
        isocentre doses (used as given: no optimisation, no segments).
    arrangements: names of the candidate arrangements (ARRANGEMENT_NAMES); default by location.
    max_segments_per_beam: field-in-field segments allowed per field (0: open fields only).
    limits: the dose limits to plan against (e.g. :func:`lattice_plan.qa.planning_limits`
        of the protocol arm the plan is checked against); default none but the hot spot.
    engine: a DoseEngine on this patient's CT (made with ``dose_spacing_mm`` if None).
    """
    t0 = time.perf_counter()
    structures = patient.structures
    if gtv not in structures:
        raise PlanningError(
            f"CRT plan {name!r}: no GTV named {gtv!r}; the patient's structures are "
            f"{', '.join(structures.names)}"
        )
    if PTV_NAME in structures:
        raise PlanningError(
            f"CRT plan {name!r}: the patient already has a structure named {PTV_NAME!r}; the CRT "
            f"builder makes the PTV from {gtv!r} + {ptv_margin_mm:g} mm, so rename or remove it"
        )
    rx = _prescription(prescription, schedule, name, structures)
    m = float(ptv_margin_mm)
    if not (np.isfinite(m) and m >= 0):
        raise PlanningError(
            f"ptv_margin_mm must be a non-negative distance in mm, got {ptv_margin_mm!r}"
        )
    if int(max_segments_per_beam) != max_segments_per_beam or max_segments_per_beam < 0:
        raise PlanningError(
            f"max_segments_per_beam must be a whole number >= 0, got {max_segments_per_beam!r}"
        )
    if arrangements is not None:
        arrangements = check_arrangement_names(arrangements)
    limits = limits if limits is not None else LimitSet("no dose limits given")
    ptv, body = _make_ptv(patient, structures.get(gtv), m)
    position = locate_target(ptv, body) if body is not None else None
    iso = tuple(
        float(v)
        for v in np.round(ptv.centroid_lps_mm() / ISOCENTRE_ROUNDING_MM) * ISOCENTRE_ROUNDING_MM
    )
    pp = patient.grid.patient_position
    candidates, w_user = _candidates(gantry_deg, weights, arrangements, position, pp, name)
    if engine is None:
        engine = DoseEngine(patient.ct, body, dose_spacing_mm=dose_spacing_mm)
    else:
        engine.ct.grid.require_same(patient.grid, "the dose engine's CT")
    problem = CandidateProblem(engine, ptv, limits, rx)

    # Each distinct gantry angle: one conformal field, MU per unit weight = Rx per
    # fraction at the isocentre.
    open_columns: dict[float, FieldColumn] = {}
    for g in sorted({g for c in candidates for g in c.gantry_deg}):
        beam = conformal_beam(f"G{g:g}", ptv, iso, g, margin_mm=penumbra_margin_mm, mu=100.0)
        dose = engine.compute([beam])
        ijk = engine.dose_grid.continuous_ijk(np.asarray(iso))[::-1].reshape(3, 1)
        d_iso = float(ndimage.map_coordinates(dose.array, ijk, order=1)[0])
        if not d_iso > 0:
            raise PlanningError(
                f"CRT plan {name!r}: the field at gantry {g:g} deg gives no dose at the isocentre "
                f"{iso}; check the PTV and the body outline"
            )
        beam = replace(beam, mu=100.0 * rx.dose_per_fraction_gy / d_iso)
        open_columns[g] = problem.column(beam, beam.name)
    t_fields = time.perf_counter() - t0

    scored = []
    for cand in candidates:
        labels = beam_names(cand.gantry_deg, pp)
        cols = [
            replace(
                open_columns[g],
                beam=replace(open_columns[g].beam, name=lab),
                parent=lab,
            )
            for g, lab in zip(cand.gantry_deg, labels, strict=True)
        ]
        scored.append(
            optimise_candidate(
                problem,
                cand,
                cols,
                int(max_segments_per_beam) if w_user is None else 0,
                None if w_user is None else w_user,
            )
        )
    chosen = min(scored, key=lambda c: (*c.evaluation.rank_key(), len(c.columns)))
    t_weights = time.perf_counter() - t0 - t_fields

    # The chosen candidate's beams at their MU; the plan is normalised on the PTV D95%.
    w = np.asarray(chosen.evaluation.weights)
    beams = [
        replace(c.beam, mu=float(c.beam.mu * x), extra={**c.beam.extra, "weight": float(x)})
        for c, x in zip(chosen.columns, w / w.sum(), strict=True)
        if c.beam.mu * x > 1e-6
    ]
    plan = Plan(
        name=name,
        arm=Arm.CRT,
        prescription=rx,
        beams=tuple(beams),
        structures=structures.with_structures(ptv),
        dose=Volume(engine.compute(beams).array * rx.fractions, engine.dose_grid, "Gy"),
    ).normalised()
    final = plan.require_dose().array.ravel()[problem.active_flat]
    values = [
        lim.value(final[idx], problem.voxel_cc, rx.fractions, rx.total_dose_gy)
        for lim, idx in zip(limits.limits, problem.limit_idx, strict=True)
    ]
    dmax_pct = 100.0 * float(final.max()) / rx.total_dose_gy
    rows = limit_results(limits.limits, values, dmax_pct)
    failures = failure_lines(rows)
    infos = [
        candidate_info(
            c.arrangement.name,
            c.arrangement.key,
            [col.beam for col in c.columns],
            [col.parent for col in c.columns],
            c.evaluation,
            limits.limits,
            c.segments,
        )
        for c in scored
    ]
    why = (
        "weights given by the user"
        if w_user is not None
        else (
            f"the best of {len(scored)} candidate(s): "
            + (
                "meets every limit, then the lowest ICRU 83 homogeneity index and the highest "
                "Paddick conformity index"
                if not failures
                else "no candidate meets every limit; this one breaks them least"
            )
        )
    )
    info = {
        "arm": "CRT",
        "schedule": schedule_name(rx),
        "isocenter_lps_mm": iso,
        "isocenter_rounding_mm": ISOCENTRE_ROUNDING_MM,
        "ptv_margin_mm": m,
        "penumbra_margin_mm": float(penumbra_margin_mm),
        "ptv_volume_cc": ptv.volume_cc,
        "target_position": None
        if position is None
        else {
            "location": position.location,
            "depth_mm": position.depth_mm,
            "reason": position.reason,
        },
        "arrangement": chosen.arrangement.name,
        "arrangement_reason": f"{chosen.arrangement.reason}; {why}",
        "crt_plan": describe_plan(chosen.arrangement.name, plan.beams),
        "candidates": infos,
        "candidate_lines": [c["line"] for c in infos],
        "weights": tuple(float(b.extra["weight"]) for b in plan.beams),
        "weights_source": "user" if w_user is not None else "optimised against the limits",
        "n_segments": sum("segment_of" in b.extra for b in plan.beams),
        "max_segments_per_beam": int(max_segments_per_beam),
        "limits_source": limits.name,
        "limits_left_out": [f"{text}: {why}" for text, why in limits.left_out],
        "limit_results": rows,
        "meets_limits": not failures,
        "limit_failures": failures,
        "mu_per_beam": {b.name: b.mu for b in plan.beams},
        "total_mu": plan.total_mu,
        # A segment is part of its field's open aperture, so each field's MU is the MU of
        # the open field with the same largest fluence: the modulation is 1.
        "open_field_total_mu": plan.total_mu,
        "modulation": 1.0,
        "dose_spacing_mm": engine.dose_grid.spacing_mm[0],
        "timings_s": {
            "fields": round(t_fields, 3),
            "weights": round(t_weights, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    }
    plan = replace(plan, info={**info, **plan.info})
    log.info(
        "CRT plan %r: %s%s", name, info["crt_plan"], "" if not failures else f"; breaks {failures}"
    )
    return plan


def _prescription(
    prescription: Prescription | None, schedule: str | None, name: str, structures
) -> Prescription:
    """The plan's prescription from ``prescription`` or ``schedule`` (both: they must agree)."""
    rx = schedule_prescription(schedule) if schedule is not None else None
    if prescription is not None:
        if rx is not None and (
            prescription.fractions != rx.fractions
            or abs(prescription.total_dose_gy - rx.total_dose_gy) > 1e-6
        ):
            raise PlanningError(
                f"CRT plan {name!r}: schedule {schedule!r} ({rx.total_dose_gy:g} Gy in "
                f"{rx.fractions}) disagrees with the prescription ({prescription.total_dose_gy:g} "
                f"Gy in {prescription.fractions}); give one of them"
            )
        rx = prescription
    rx = rx if rx is not None else schedule_prescription(DEFAULT_SCHEDULE)
    if (
        rx.method != "point"
        and rx.target.casefold() != PTV_NAME.casefold()
        and rx.target not in structures
    ):
        raise PlanningError(
            f"CRT plan {name!r}: prescription target {rx.target!r} is neither the PTV nor a "
            "structure of the patient"
        )
    return rx


def _candidates(
    gantry_deg: Sequence[float] | None,
    weights: Sequence[float] | None,
    arrangements: Sequence[str] | None,
    position,
    pp: str,
    name: str,
) -> tuple[list[Arrangement], NDArray[np.float64] | None]:
    """The arrangements to try, and the user's weights (None: optimise them)."""
    if gantry_deg is not None:
        if arrangements is not None:
            raise PlanningError(
                f"CRT plan {name!r}: give either gantry_deg or arrangements, not both"
            )
        angles = tuple(float(g) % 360.0 for g in gantry_deg)
        if not angles:
            raise PlanningError(f"CRT plan {name!r}: gantry_deg is empty; give at least one angle")
        if len(set(angles)) != len(angles):
            raise PlanningError(f"CRT plan {name!r}: gantry angles repeat: {list(angles)}")
        candidates = [Arrangement("user", "user fields", angles, "gantry angles given by the user")]
    else:
        if weights is not None:
            raise PlanningError(
                f"CRT plan {name!r}: weights need gantry_deg (one weight per given field)"
            )
        if position is None:
            raise PlanningError(
                f"CRT plan {name!r}: choosing fields from the target position needs the body "
                "outline (an EXTERNAL structure); add it or give gantry_deg"
            )
        candidates = candidate_arrangements(position, pp, arrangements)
    if weights is None:
        return candidates, None
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(candidates[0].gantry_deg),) or not np.all(np.isfinite(w)):
        raise PlanningError(
            f"CRT plan {name!r}: give one finite weight per field "
            f"({len(candidates[0].gantry_deg)}), got {list(weights)}"
        )
    if np.any(w < 0) or w.sum() <= 0:
        raise PlanningError(
            f"CRT plan {name!r}: weights must be >= 0 with a positive sum, got {list(weights)}"
        )
    return candidates, w / w.sum()
