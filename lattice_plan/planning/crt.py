"""Conventional (CRT) plans: static conformal fields normalised to the PTV D95%.

The builder

1. makes the PTV: the GTV grown by ``ptv_margin_mm`` (Euclidean, true voxel
   spacing) and cropped to the body outline;
2. puts the isocentre at the PTV centroid, rounded to whole millimetres in
   LPS as a planner sets couch coordinates (the apertures are shaped around
   the rounded isocentre, so the rounding costs no coverage);
3. chooses the field arrangement from where the target lies in the body
   (unless gantry angles are given): the depth of the PTV centroid below the
   skin along the four cardinal directions decides whether it is central,
   posterior, anterior, left or right (the nearest skin, when it is at least
   1.5 times nearer than the opposite one). A central target has two
   candidates: AP/PA and the four-field box (AP, PA and both laterals). An
   off-centre target has four: the field from its near side plus two obliques
   at +/-45 degrees from it (e.g. PA plus posterior obliques for a
   paravertebral target), the near-side field with its opposed counter-field,
   the three near-side fields plus the counter-field, and the box;
4. shapes each field's MLC and jaws to the beam's-eye-view projection of the
   PTV plus ``penumbra_margin_mm`` (:mod:`lattice_plan.planning.apertures`);
5. computes each field's dose once; field weights are relative doses at the
   isocentre. Given weights are used as they are, given gantry angles without
   weights get equal weights. For the default arrangements, each candidate's
   weights are searched on a 5 % grid (each field at least 10 %) for the
   lowest hot spot relative to the PTV D95% -- the larger of the PTV Dmax and
   the body Dmax, over the PTV D95% -- and among weightings within 0.5 % of the
   best, the one with the lowest mean body dose; the candidate with the lowest
   hot spot wins, the one with fewest fields among those within 2 % of it (a
   planner's forward weighting of open fields). Depth-dose physics decides:
   fields from one side only cannot cover a deep target homogeneously (the
   phantom's PA plus posterior obliques give a PTV Dmax near 150 % of D95),
   and AP/PA through a thick body puts entrance hot spots above the PTV dose;
6. sets the MU of each field from its dose per MU at the isocentre and scales
   the plan so that the PTV D95% equals the prescription
   (:meth:`Plan.normalised`).

The Plan's ``info`` records the target position and depths, the candidate
arrangements with their Dmax/D95, the arrangement chosen and why, the weights,
the MU per field (per fraction, ``mu_per_beam``) and in total (``total_mu``),
the modulation (1: open fields are their own open-field plan) and timings.
Without a body outline (no EXTERNAL structure) the PTV is not cropped and the
gantry angles must be given.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import LatticePlanError, PlanningError
from lattice_plan.geometry.iec import source_position_lps_mm
from lattice_plan.geometry.morphology import expand, intersection
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import (
    Structure,
    StructureKind,
    StructureSet,
    structure_on_grid,
)
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.apertures import conformal_beam
from lattice_plan.planning.beams import gantry_for_direction
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription

log = logging.getLogger(__name__)

PTV_NAME = "PTV"
ISOCENTRE_ROUNDING_MM = 1.0

# The common palliative CRT fractionations (whole-course dose in Gy, fractions).
CRT_FRACTIONATIONS: dict[str, tuple[float, int]] = {
    "30Gy/10": (30.0, 10),
    "20Gy/5": (20.0, 5),
    "8Gy/1": (8.0, 1),
}

# A target is "central" along an axis when its depths from the two opposite skin
# surfaces differ by less than this factor; otherwise it lies towards the shallower side.
_CENTRAL_DEPTH_RATIO = 1.5
# Posterior/anterior obliques are this far from the PA/AP direction (a common choice
# for spinal and paraspinal targets: far enough to spread the entrance dose, near
# enough to keep the path short).
OBLIQUE_DEG = 45.0
# Weight search: 5 % steps, every field of an arrangement at least 10 % of the isocentre dose.
_WEIGHT_STEP = 0.05
_MIN_WEIGHT = 0.10
# Weightings within this fraction of the best Dmax/D95 count as equal; less body dose wins.
_HOMOGENEITY_TIE = 0.005
# Arrangements within this fraction of the best Dmax/D95 count as equal; fewer fields win
# (a planner takes the simpler plan unless the other is clearly more homogeneous).
_ARRANGEMENT_TIE = 0.02

# Cardinal source directions in LPS.
_DIRECTIONS_LPS: dict[str, NDArray[np.float64]] = {
    "anterior": np.array([0.0, -1.0, 0.0]),
    "posterior": np.array([0.0, 1.0, 0.0]),
    "left": np.array([1.0, 0.0, 0.0]),
    "right": np.array([-1.0, 0.0, 0.0]),
}
_OPPOSITE = {"anterior": "posterior", "posterior": "anterior", "left": "right", "right": "left"}


def crt_prescription(
    total_dose_gy: float = 30.0, fractions: int = 10, target: str = PTV_NAME
) -> Prescription:
    """A CRT prescription to the PTV D95%: default 30 Gy in 10 fractions (see CRT_FRACTIONATIONS)."""
    if fractions < 1 or int(fractions) != fractions:
        raise PlanningError(f"fractions must be a positive integer, got {fractions!r}")
    return Prescription(total_dose_gy / fractions, int(fractions), target, "D95%")


# ---------------------------------------------------------------------------- target position
@dataclass(frozen=True)
class TargetPosition:
    """Where a target lies in the body: its centroid, its depth below the skin in the four
    cardinal directions (mm, geometric, along the patient's axial plane) and a location
    ("central", "posterior", "anterior", "left" or "right") with the reason."""

    centroid_lps_mm: tuple[float, float, float]
    depth_mm: dict[str, float]
    location: str
    reason: str


def _depth_to_surface_mm(
    body: Structure, start_lps_mm: NDArray[np.float64], direction: NDArray[np.float64]
) -> float:
    """Distance from ``start`` along ``direction`` to where the body outline ends (1/4-voxel steps)."""
    grid = body.grid
    step = 0.25 * min(grid.spacing_mm)
    lo, hi = grid.bounds_lps_mm()
    n = int(np.ceil(np.linalg.norm(hi - lo) / step)) + 2
    t = np.arange(n) * step
    pts = start_lps_mm[None, :] + t[:, None] * direction[None, :]
    ijk = np.rint(grid.continuous_ijk(pts)).astype(int)
    shape_ijk = np.array(grid.shape[::-1])
    inside_grid = np.all((ijk >= 0) & (ijk < shape_ijk), axis=1)
    in_body = np.zeros(n, dtype=bool)
    ok = np.nonzero(inside_grid)[0]
    in_body[ok] = body.mask[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
    outside = np.nonzero(~in_body)[0]
    return float(t[outside[0]]) if outside.size else float(t[-1])


def locate_target(target: Structure, body: Structure) -> TargetPosition:
    """Classify the target's position in the body from its centroid's depths below the skin."""
    target.require_nonempty("locating the target")
    centroid = target.centroid_lps_mm()
    if not body.mask[tuple(np.rint(body.grid.continuous_ijk(centroid)[::-1]).astype(int))]:
        raise PlanningError(
            f"the centroid of {target.name!r} lies outside the body outline {body.name!r}; "
            "check the structures"
        )
    depth = {name: _depth_to_surface_mm(body, centroid, d) for name, d in _DIRECTIONS_LPS.items()}
    shallowest = min(depth, key=depth.get)  # type: ignore[arg-type]
    ratio = depth[_OPPOSITE[shallowest]] / max(depth[shallowest], 1e-6)
    if ratio < _CENTRAL_DEPTH_RATIO:
        location = "central"
        reason = (
            f"centroid {depth[shallowest]:.0f} mm below the {shallowest} skin and "
            f"{depth[_OPPOSITE[shallowest]]:.0f} mm below the {_OPPOSITE[shallowest]} skin "
            f"(ratio {ratio:.2f} < {_CENTRAL_DEPTH_RATIO}): central"
        )
    else:
        location = shallowest
        reason = (
            f"centroid {depth[shallowest]:.0f} mm below the {shallowest} skin, the nearest surface "
            f"({ratio:.1f} times nearer than the {_OPPOSITE[shallowest]} skin)"
        )
    return TargetPosition(
        tuple(float(v) for v in centroid),
        depth,
        location,
        reason,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------- gantry geometry
def field_label(gantry_deg: float, patient_position: str = "HFS") -> str:
    """AP, PA, LLAT, RLAT within 10 degrees of those directions, else LAO, RAO, LPO, RPO."""
    src = source_position_lps_mm((0, 0, 0), gantry_deg, 0.0, patient_position, 1.0)
    ant, left = -src[1], src[0]
    angle = np.degrees(np.arctan2(left, ant)) % 360.0  # 0 = anterior, 90 = left
    cardinal = {0.0: "AP", 90.0: "LLAT", 180.0: "PA", 270.0: "RLAT", 360.0: "AP"}
    for a, name in cardinal.items():
        if abs(angle - a) <= 10.0:
            return name
    side = "L" if left > 0 else "R"
    return f"{side}{'A' if ant > 0 else 'P'}O"


def _beam_names(gantry_deg: Sequence[float], patient_position: str) -> list[str]:
    labels = [field_label(g, patient_position) for g in gantry_deg]
    return [
        lab if labels.count(lab) == 1 else f"{lab}_G{g:g}"
        for lab, g in zip(labels, gantry_deg, strict=True)
    ]


@dataclass(frozen=True)
class Arrangement:
    """A set of static coplanar fields: a name, gantry angles (degrees) and why they fit."""

    name: str
    gantry_deg: tuple[float, ...]
    reason: str


def candidate_arrangements(
    position: TargetPosition, patient_position: str = "HFS"
) -> list[Arrangement]:
    """The field arrangements that suit the target's position (see the module docstring)."""

    def gantry(direction: NDArray[np.float64]) -> float:
        return round(gantry_for_direction(direction, patient_position), 6)

    def rotate(direction: NDArray[np.float64], deg: float) -> NDArray[np.float64]:
        # Rotate within the axial (x, y) plane.
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        return np.array(
            [c * direction[0] - s * direction[1], s * direction[0] + c * direction[1], 0.0]
        )

    ap, pa, left, right = (
        gantry(_DIRECTIONS_LPS[k]) for k in ("anterior", "posterior", "left", "right")
    )
    box = Arrangement(
        "four-field box",
        (ap, pa, left, right),
        "AP, PA and both laterals: each opposed pair evens out the other's depth dose",
    )
    if position.location == "central":
        return [
            Arrangement(
                "AP/PA", (ap, pa), "central target: parallel-opposed anterior and posterior fields"
            ),
            box,
        ]
    loc = position.location
    near = _DIRECTIONS_LPS[loc]
    main, far = gantry(near), gantry(_DIRECTIONS_LPS[_OPPOSITE[loc]])
    obl = (gantry(rotate(near, OBLIQUE_DEG)), gantry(rotate(near, -OBLIQUE_DEG)))
    label = {"posterior": "PA", "anterior": "AP", "left": "LLAT", "right": "RLAT"}[loc]
    opposed = {"posterior": "AP", "anterior": "PA", "left": "RLAT", "right": "LLAT"}[loc]
    return [
        Arrangement(
            f"{label} + {loc} obliques",
            (main, *obl),
            f"{loc} target: {label} plus two {loc} obliques at +/-{OBLIQUE_DEG:g} deg, all "
            "entering through the nearest skin",
        ),
        Arrangement(
            f"{label}/{opposed} weighted",
            (main, far),
            f"{loc} target: parallel-opposed pair weighted towards {label}; the {opposed} "
            "counter-field evens out the dose across a deep target",
        ),
        Arrangement(
            f"{label} + {loc} obliques + {opposed}",
            (main, *obl, far),
            f"{loc} target: {label} and {loc} obliques with an {opposed} counter-field",
        ),
        replace(box, reason=f"{loc} target: {box.reason}"),
    ]


# ---------------------------------------------------------------------------- weights
def _weight_grid(n: int) -> NDArray[np.float64]:
    """All weight vectors of ``n`` fields on a 5 % grid that sum to 1, each at least 10 %."""
    steps = round(1.0 / _WEIGHT_STEP)
    lo = round(_MIN_WEIGHT / _WEIGHT_STEP)
    combos = [
        c for c in itertools.product(range(lo, steps + 1), repeat=n - 1) if steps - sum(c) >= lo
    ]
    arr = np.array([(*c, steps - sum(c)) for c in combos], dtype=float)
    return arr / steps


@dataclass(frozen=True)
class Homogeneity:
    """Hot spots of a weighting relative to the PTV D95%.

    ptv: PTV Dmax / PTV D95; overall: the larger of that and the body Dmax / PTV D95.
    """

    ptv: float
    overall: float


def homogeneity(
    weights: NDArray[np.float64],
    ptv_dose: NDArray[np.float64],
    outside_dose: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """PTV Dmax/D95 and overall Dmax/D95 for each row of ``weights`` (n_weightings, n_fields).

    ``ptv_dose``: (n_fields, n_ptv) per-field doses over the PTV voxels; ``outside_dose``:
    (n_fields, n) over other body voxels (None: the PTV only). D95% is the 5th
    percentile with linear interpolation, as the prescription normalises it.
    """
    W = np.atleast_2d(weights)
    ptv_ratio, overall = [], []
    for s in range(0, len(W), 64):
        d = W[s : s + 64] @ ptv_dose
        d95 = np.maximum(np.percentile(d, 5.0, axis=1), 1e-12)
        p = d.max(axis=1) / d95
        o = (
            p
            if outside_dose is None
            else np.maximum(p, (W[s : s + 64] @ outside_dose).max(axis=1) / d95)
        )
        ptv_ratio.append(p)
        overall.append(o)
    return np.concatenate(ptv_ratio), np.concatenate(overall)


def best_weights(
    ptv_dose: NDArray[np.float64],
    outside_dose: NDArray[np.float64] | None = None,
    body_mean: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], Homogeneity]:
    """Weights (sum 1) with the lowest overall Dmax/D95 (see :func:`homogeneity`).

    ``ptv_dose``, ``outside_dose``: per-field doses per unit isocentre dose, (n_fields, n).
    ``body_mean``: (n_fields,) each field's mean body dose per unit isocentre dose; among
    weightings within 0.5 % of the best, the one with the lowest integral dose is taken.
    """
    W = _weight_grid(ptv_dose.shape[0])
    if outside_dose is not None:
        # Only voxels that some weighting could make hotter than every weighting's PTV
        # maximum can set the overall maximum: a voxel's dose is at most its largest field dose.
        floor = float((W @ ptv_dose).max(axis=1).min())
        outside_dose = outside_dose[:, outside_dose.max(axis=0) > floor]
        if outside_dose.shape[1] == 0:
            outside_dose = None
    ptv_ratio, overall = homogeneity(W, ptv_dose, outside_dose)
    best = int(np.argmin(overall))  # first minimum: deterministic
    if body_mean is not None:
        near = overall <= overall[best] * (1 + _HOMOGENEITY_TIE)
        best = int(np.argmin(np.where(near, W @ body_mean, np.inf)))
    return W[best], Homogeneity(float(ptv_ratio[best]), float(overall[best]))


# ---------------------------------------------------------------------------- the builder
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
    ptv_margin_mm: float = 10.0,
    penumbra_margin_mm: float = 7.0,
    gantry_deg: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    engine: DoseEngine | None = None,
    dose_spacing_mm: float = 2.5,
    name: str = "CRT",
) -> Plan:
    """A conformal static-field plan of ``patient`` normalised to the PTV D95% (see module docstring).

    prescription: default 30 Gy in 10 fractions to PTV D95% (:func:`crt_prescription`).
    gantry_deg, weights: fields to use (degrees) and their relative isocentre doses
        (default: the arrangement chosen from the target position, weights for homogeneity).
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
    rx = prescription if prescription is not None else crt_prescription()
    if (
        rx.method != "point"
        and rx.target.casefold() != PTV_NAME.casefold()
        and rx.target not in structures
    ):
        raise PlanningError(
            f"CRT plan {name!r}: prescription target {rx.target!r} is neither the PTV nor a "
            "structure of the patient"
        )
    m = float(ptv_margin_mm)
    if not (np.isfinite(m) and m >= 0):
        raise PlanningError(
            f"ptv_margin_mm must be a non-negative distance in mm, got {ptv_margin_mm!r}"
        )
    ptv, body = _make_ptv(patient, structures.get(gtv), m)
    position = locate_target(ptv, body) if body is not None else None
    iso = tuple(
        float(v)
        for v in np.round(ptv.centroid_lps_mm() / ISOCENTRE_ROUNDING_MM) * ISOCENTRE_ROUNDING_MM
    )
    pp = patient.grid.patient_position

    # Arrangements to consider.
    if gantry_deg is not None:
        angles = tuple(float(g) % 360.0 for g in gantry_deg)
        if not angles:
            raise PlanningError(f"CRT plan {name!r}: gantry_deg is empty; give at least one angle")
        if len(set(angles)) != len(angles):
            raise PlanningError(f"CRT plan {name!r}: gantry angles repeat: {list(angles)}")
        candidates = [Arrangement("user fields", angles, "gantry angles given by the user")]
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
        candidates = candidate_arrangements(position, pp)
    if weights is not None:
        w_user = np.asarray(weights, dtype=float)
        if w_user.shape != (len(candidates[0].gantry_deg),) or not np.all(np.isfinite(w_user)):
            raise PlanningError(
                f"CRT plan {name!r}: give one finite weight per field "
                f"({len(candidates[0].gantry_deg)}), got {list(weights)}"
            )
        if np.any(w_user < 0) or w_user.sum() <= 0:
            raise PlanningError(
                f"CRT plan {name!r}: weights must be >= 0 with a positive sum, got {list(weights)}"
            )

    if engine is None:
        engine = DoseEngine(patient.ct, body, dose_spacing_mm=dose_spacing_mm)
    else:
        engine.ct.grid.require_same(patient.grid, "the dose engine's CT")

    # Each distinct gantry angle: one conformal field, its dose per unit isocentre dose.
    all_angles = sorted({g for c in candidates for g in c.gantry_deg})
    fields: dict[float, tuple[Beam, float, Volume]] = {}
    for g in all_angles:
        beam = conformal_beam(f"G{g:g}", ptv, iso, g, margin_mm=penumbra_margin_mm, mu=100.0)
        dose = engine.compute([beam])
        ijk = engine.dose_grid.continuous_ijk(np.asarray(iso))[::-1].reshape(3, 1)
        d_iso = float(ndimage.map_coordinates(dose.array, ijk, order=1)[0])
        if not d_iso > 0:
            raise PlanningError(
                f"CRT plan {name!r}: the field at gantry {g:g} deg gives no dose at the isocentre "
                f"{iso}; check the PTV and the body outline"
            )
        fields[g] = (beam, d_iso / beam.mu, dose)
    t_fields = time.perf_counter() - t0
    ptv_dose_grid = structure_on_grid(ptv, engine.dose_grid).mask
    if not ptv_dose_grid.any():
        raise PlanningError(f"CRT plan {name!r}: the PTV has no voxels on the dose grid")

    # Weights and arrangement with the lowest hot spot over the PTV D95 (module docstring, 5).
    outside = engine.active_mask & ~ptv_dose_grid
    body_dose_grid = engine.active_mask
    scored = []
    for cand in candidates:
        per_iso = [fields[g][2].array / (fields[g][1] * fields[g][0].mu) for g in cand.gantry_deg]
        ptv_dose = np.stack([d[ptv_dose_grid] for d in per_iso])
        outside_dose = np.stack([d[outside] for d in per_iso])
        if weights is None and gantry_deg is None:
            body_mean = np.array([d[body_dose_grid].mean() for d in per_iso])
            w, hom = best_weights(ptv_dose, outside_dose, body_mean)
        else:
            w = (
                w_user / w_user.sum()
                if weights is not None
                else np.full(len(cand.gantry_deg), 1.0 / len(cand.gantry_deg))
            )
            p, o = homogeneity(w[None, :], ptv_dose, outside_dose)
            hom = Homogeneity(float(p[0]), float(o[0]))
        scored.append((cand, w, hom))
    best_overall = min(h.overall for _, _, h in scored)
    chosen, w, hom = min(
        (s for s in scored if s[2].overall <= best_overall * (1 + _ARRANGEMENT_TIE)),
        key=lambda s: (len(s[0].gantry_deg), s[2].overall),
    )

    # MU per fraction for 1 Gy at the isocentre, split by weight; the normalisation scales them.
    names = _beam_names(chosen.gantry_deg, pp)
    beams = []
    dose_fraction = np.zeros(engine.dose_grid.shape)
    for label, g, wb in zip(names, chosen.gantry_deg, w, strict=True):
        beam, gy_per_mu_iso, dose = fields[g]
        mu = float(wb) / gy_per_mu_iso
        beams.append(replace(beam, name=label, mu=mu, extra={**beam.extra, "weight": float(wb)}))
        dose_fraction += dose.array * (mu / beam.mu)
    plan_structures: StructureSet = structures.with_structures(ptv)
    info = {
        "arm": "CRT",
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
        "arrangement": chosen.name,
        "arrangement_reason": chosen.reason
        + (
            f"; chosen among {len(candidates)} candidates for the lowest hot spot over the "
            f"PTV D95 (Dmax/D95 {hom.overall:.3f} in the body, {hom.ptv:.3f} in the PTV), "
            f"the fewest fields within {100 * _ARRANGEMENT_TIE:g} %"
            if len(candidates) > 1
            else ""
        ),
        "candidates": [
            {
                "name": c.name,
                "gantry_deg": c.gantry_deg,
                "weights": tuple(float(x) for x in wc),
                "dmax_over_d95": h.overall,
                "ptv_dmax_over_d95": h.ptv,
            }
            for c, wc, h in scored
        ],
        "weights": tuple(float(x) for x in w),
        "weights_source": (
            "user"
            if weights is not None
            else ("equal" if gantry_deg is not None else "chosen for homogeneity")
        ),
    }
    plan = Plan(
        name=name,
        arm=Arm.CRT,
        prescription=rx,
        beams=tuple(beams),
        structures=plan_structures,
        dose=Volume(dose_fraction * rx.fractions, engine.dose_grid, "Gy"),
        info=info,
    ).normalised()
    plan = replace(
        plan,
        info={
            **plan.info,
            # MU are per fraction (Beam.mu). The fields are open conformal apertures, so
            # the plan is its own open-field plan: modulation (MU / open-field MU) is 1.
            "mu_per_beam": {b.name: b.mu for b in plan.beams},
            "total_mu": plan.total_mu,
            "open_field_total_mu": plan.total_mu,
            "modulation": 1.0,
            "dose_spacing_mm": engine.dose_grid.spacing_mm[0],
            "timings_s": {
                "fields": round(t_fields, 3),
                "total": round(time.perf_counter() - t0, 3),
            },
        },
    )
    log.info(
        "CRT plan %r: %s (%s), %.0f MU per fraction, Dmax/D95 %.3f (PTV %.3f)",
        name,
        chosen.name,
        ", ".join(f"{b.name} {b.mu:.0f} MU" for b in plan.beams),
        plan.total_mu,
        hom.overall,
        hom.ptv,
    )
    return plan
