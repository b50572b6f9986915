"""The evaluation of a patient's plans side by side (``metrics.json``).

Per plan the DVH metrics of the targets and organs at risk (physical and EQD2),
the PVDR variants and vertex count of lattice plans, MU and optimiser figures,
and the protocol QA of the plan's arm; and the comparison table with the CRT
plan as reference column. The result is plain JSON data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lattice_plan import __version__
from lattice_plan.analysis import sfrt
from lattice_plan.analysis.comparison import PlanDose, compare_plans
from lattice_plan.analysis.delivery import ideal_vs_deliverable
from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.eligibility import is_eligible
from lattice_plan.analysis.radiobiology import default_alpha_beta_gy
from lattice_plan.errors import AnalysisError, PlanningError
from lattice_plan.files import json_safe
from lattice_plan.geometry.coverage import part_within
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.shape import diameters
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.qa.lookup import load_protocol_arg, protocol_arm_for
from lattice_plan.workflow._common import (
    DEFAULT_METRICS,
    EQD2_METRICS,
    first_of_kind,
    reported_structures,
)
from lattice_plan.workflow.crt_summary import crt_fields

log = logging.getLogger(__name__)


def _structure_metrics(
    dose: Volume, structure: Structure, n_fractions: int, prescription_gy: float
) -> dict[str, Any]:
    """DEFAULT_METRICS and EQD2_METRICS of one structure, over the part the dose grid covers."""
    covered = part_within(structure, [dose.grid])
    if covered.is_empty:
        raise AnalysisError(f"structure {structure.name!r} lies outside the dose grid")
    dvh = DVH.from_dose(dose, covered)
    ab = default_alpha_beta_gy(structure)
    out: dict[str, Any] = {"volume_cc": round(structure.volume_cc, 4), "alpha_beta_gy": ab}
    for m in DEFAULT_METRICS:
        out[m] = dvh.metric(m)
    for m in EQD2_METRICS:
        out[m] = dvh.metric(m, prescription_gy, n_fractions, ab)
    if covered is not structure:
        out["covered_fraction"] = covered.volume_cc / structure.volume_cc
    return out


def _plan_summary(plan: Plan, per_structure: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    info = plan.info
    rx = plan.prescription
    summary: dict[str, Any] = {
        "name": plan.name,
        "arm": plan.arm.value,
        "prescription": rx.describe(),
        "prescription_total_gy": rx.total_dose_gy,
        "fractions": plan.fractions,
        "prescription_target": rx.target,
        "achieved_prescription_gy": plan.achieved_prescription_gy(),
        "n_beams": len(plan.beams),
        "total_mu_per_fraction": plan.total_mu,
        "mu_per_beam": {b.name: b.mu for b in plan.beams},
        "max_dose_gy": float(plan.require_dose().array.max()),
        "dose_spacing_mm": info.get("dose_spacing_mm", plan.require_dose().grid.spacing_mm[0]),
    }
    for key in ("arrangement", "modulation", "normalisation_factor", "timings_s", "spec_source"):
        if key in info:
            summary[key] = info[key]
    # What the reference plan is, what it was planned against, and what was tried.
    summary.update(crt_fields(plan))
    if "optimizer" in info:
        opt = info["optimizer"]
        summary["optimiser"] = {
            k: opt[k]
            for k in ("iterations", "stop_reason", "final_objective", "time_s")
            if k in opt
        }
    dose = plan.require_dose()
    gtv = first_of_kind(plan.structures, StructureKind.GTV)
    vertices = first_of_kind(plan.structures, StructureKind.VERTEX)
    valley = first_of_kind(plan.structures, StructureKind.VALLEY)
    stv = first_of_kind(plan.structures, StructureKind.CORE)
    try:
        if gtv is not None:
            summary["pvdr_d10_d90"] = sfrt.pvdr_d10_d90(dose, gtv)
        if gtv is not None and vertices is not None and valley is not None:
            centers = np.asarray(info.get("vertex_centers_lps_mm", []), dtype=float)
            m = sfrt.sfrt_metrics(
                dose,
                gtv,
                vertices,
                valley,
                plan.fractions,
                centers.reshape(-1, 3) if centers.size >= 6 else None,
            )
            summary.update(
                {
                    "n_vertices": m.vertex_count,
                    "vertex_density_per_100cc": m.vertex_density_per_100cc,
                    "peak_mean_gy": m.peak_mean_gy,
                    "valley_mean_gy": m.valley_mean_gy,
                    "valley_d90_gy": m.valley_d90_gy,
                    "pvdr_mean": m.pvdr_mean,
                    "pvdr_point": m.pvdr_point,
                    "pvdr_profile": m.pvdr_profile,
                    "gtv_eud_gy": m.gtv_eud_gy,
                }
            )
        if gtv is not None and stv is not None:
            # The edge shell is 3 mm deep, or one CT voxel where the voxels are coarser.
            edge_mm = max(3.0, *gtv.grid.spacing_mm)
            sm = sfrt.scart_metrics(dose, stv, gtv, edge_thickness_mm=edge_mm)
            summary.update(
                {
                    "stv_d95_gy": sm.stv_d95_gy,
                    "gtv_edge_mean_gy": sm.gtv_edge_mean_gy,
                    "gtv_edge_thickness_mm": sm.edge_thickness_mm,
                    "core_to_edge_ratio": sm.core_to_edge_ratio,
                }
            )
    except AnalysisError as exc:
        log.warning("plan %s: SFRT/SCART metrics not evaluated: %s", plan.name, exc)
        summary["sfrt_metrics_note"] = str(exc)
    for key in ("vertex_diameter_mm", "lattice_spacing_mm", "lattice_pattern"):
        if key in info:
            summary[key] = info[key]
    for key in ("stv_volume_cc", "stv_method"):
        if key in info:
            summary[key] = info[key]
    summary.update(_delivery_summary(plan))
    summary["structures"] = {name: dict(m) for name, m in per_structure.items()}
    return summary


_DELIVERY_ROWS = ("gtv_d98_gy", "vertex_dmean_gy", "valley_d50_gy", "pvdr_mean")


def _delivery_summary(plan: Plan) -> dict[str, Any]:
    """How the plan is delivered, and its metrics from the ideal and the deliverable dose."""
    if "delivery" not in plan.info:
        return {}
    delivery = dict(plan.info["delivery"])
    out: dict[str, Any] = {"delivery_method": delivery["method"]}
    if plan.delivery_beams:
        out["mu_per_beam"] = {b.name: b.mu for b in plan.delivery_beams}
        out["delivery_time_s"] = delivery["delivery_time_s"]
    if "ideal_total_mu" in plan.info:
        # the fluence maps' MU (their largest beamlet weights), before sequencing
        out["total_mu_ideal"] = plan.info["ideal_total_mu"]
    compared = ideal_vs_deliverable(plan)
    if compared is not None:
        delivery.update(compared)
        for key in _DELIVERY_ROWS:
            if key in compared.get("ideal", {}):
                out[f"{key}_ideal"] = compared["ideal"][key]
                out[f"{key}_deliverable"] = compared["deliverable"][key]
        if "pvdr_mean" in compared.get("kept", {}):
            out["pvdr_mean_kept"] = compared["kept"]["pvdr_mean"]
        oars = [k for k in compared.get("ideal", {}) if k.endswith("_dmax_gy")]
        if oars:
            out["oar_dmax_ideal_deliverable"] = "; ".join(
                f"{k[: -len('_dmax_gy')]} {compared['ideal'][k]:.2f} -> "
                f"{compared['deliverable'][k]:.2f}"
                for k in oars
                if k in compared["deliverable"]
            )
    out["delivery"] = delivery
    return out


_PLAN_ROWS: tuple[tuple[str, str], ...] = (
    ("prescription", "prescription"),
    ("fractions", "fractions"),
    ("total MU per fraction", "total_mu_per_fraction"),
    ("total MU per fraction: ideal fluence maps", "total_mu_ideal"),
    ("modulation (MU / open-field MU)", "modulation"),
    ("CRT plan (arrangement, weights, segments, MU)", "crt_plan"),
    ("dose maximum (Gy)", "max_dose_gy"),
    ("vertices", "n_vertices"),
    ("vertex density (per 100 cc)", "vertex_density_per_100cc"),
    ("PVDR D10/D90 of the GTV", "pvdr_d10_d90"),
    ("PVDR mean vertex / mean valley", "pvdr_mean"),
    ("PVDR point (max vertex / min valley)", "pvdr_point"),
    ("PVDR profile peak / valley", "pvdr_profile"),
    ("STV D95% (Gy)", "stv_d95_gy"),
    ("GTV edge mean dose (Gy)", "gtv_edge_mean_gy"),
    ("delivery (MLC sequencing)", "delivery_method"),
    ("delivery time (s, MU- and leaf-speed limited)", "delivery_time_s"),
    ("PVDR mean/mean: ideal fluence", "pvdr_mean_ideal"),
    ("PVDR mean/mean: deliverable / ideal", "pvdr_mean_kept"),
    ("vertex Dmean (Gy): ideal fluence", "vertex_dmean_gy_ideal"),
    ("valley D50 (Gy): ideal fluence", "valley_d50_gy_ideal"),
    ("valley D50 (Gy): deliverable", "valley_d50_gy_deliverable"),
    ("GTV D98% (Gy): ideal fluence", "gtv_d98_gy_ideal"),
    ("GTV D98% (Gy): deliverable", "gtv_d98_gy_deliverable"),
    ("OAR Dmax (Gy): ideal fluence -> deliverable", "oar_dmax_ideal_deliverable"),
)


def _comparison(
    plans: Sequence[Plan],
    summaries: Mapping[str, Mapping[str, Any]],
    reference: str | None,
) -> dict[str, Any]:
    """The comparison: plan-level rows, and per-structure rows (physical and EQD2).

    The structure rows are :func:`lattice_plan.analysis.comparison.compare_plans`
    of the patient's GTV and organs at risk (over the part every plan's dose grid
    covers), with ``reference`` (the CRT plan) as the reference column.
    """
    plan_rows: dict[str, dict[str, Any]] = {}
    for label, key in _PLAN_ROWS:
        row = {p: s.get(key) for p, s in summaries.items()}
        if any(v is not None for v in row.values()):
            plan_rows[label] = row
    qa_row = {p: (s.get("qa") or {}).get("verdict") for p, s in summaries.items()}
    if any(v is not None for v in qa_row.values()):
        plan_rows["protocol QA verdict"] = qa_row
    doses = [p.require_dose() for p in plans]
    shared = [
        part_within(st, [d.grid for d in doses])
        for st in plans[0].structures
        if st.kind in (StructureKind.GTV, StructureKind.CTV, StructureKind.OAR)
        and all(st.name in s["structures"] for s in summaries.values())
    ]
    shared = [st for st in shared if not st.is_empty]
    ref = reference or plans[0].name
    table = compare_plans(
        [
            PlanDose(p.name, p.require_dose(), p.fractions, p.prescription.total_dose_gy)
            for p in plans
        ],
        shared,
        reference=ref,
    )
    rows = table.as_mapping()
    return {
        "reference": ref,
        "plan": plan_rows,
        "physical": {k: v for k, v in rows.items() if " EQD2:" not in k},
        "eqd2": {k: v for k, v in rows.items() if " EQD2:" in k},
        "table": table.to_dict(),
    }


def patient_summary(patient: Patient) -> dict[str, Any]:
    """Identity, CT grid, structure volumes, and the GTV's diameters with the trial's eligibility.

    Eligible: a soft-tissue mass whose shortest diameter (RECIST short axis on
    axial CT) exceeds :data:`~lattice_plan.analysis.eligibility.ELIGIBLE_SHORTEST_DIAMETER_MM`.
    """
    out: dict[str, Any] = {
        "id": patient.patient_id,
        "name": patient.patient_name,
        "description": patient.description,
        "ct_shape_kji": list(patient.grid.shape),
        "ct_spacing_kji_mm": list(patient.grid.spacing_mm),
        "structures": {
            s.name: {"kind": s.kind.value, "volume_cc": round(s.volume_cc, 3)}
            for s in patient.structures
        },
    }
    gtvs = [s for s in patient.structures.of_kind(StructureKind.GTV) if not s.is_empty]
    if gtvs:
        d = diameters(gtvs[0])
        out["gtv"] = gtvs[0].name
        out["gtv_diameters_mm"] = {
            "recist_long": d.recist_long_mm,
            "recist_short": d.recist_short_mm,
            "min_caliper": d.min_caliper_mm,
            "max_caliper": d.max_caliper_mm,
        }
        out["eligible"] = is_eligible(d)
    return out


def evaluate_plans(
    patient: Patient,
    plans: Sequence[Plan],
    *,
    protocol: str | Path | None = "builtin",
) -> dict[str, Any]:
    """The comparison of ``plans`` of one patient, as JSON data (``metrics.json``).

    Keys: ``patient``, ``reference_plan`` (the CRT plan's name, if any),
    ``plans`` (per plan name: arm, prescription, MU, optimiser figures, PVDR
    variants, vertices, per-structure DVH metrics in Gy incl. EQD2, and the QA
    verdict), ``comparison`` (``physical`` and ``eqd2``: metric -> plan ->
    value), ``qa`` (per plan name: the full protocol check, see
    :meth:`lattice_plan.qa.CheckResult.to_dict`) and ``protocol``. ``protocol``
    is "builtin", a built-in protocol name, a protocol TOML file or None (no QA).
    """
    from lattice_plan.qa import check

    if not plans:
        raise PlanningError("evaluate_plans needs at least one plan")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise PlanningError(f"plan names must be unique to compare them, got {names}")
    proto = load_protocol_arg(protocol)
    summaries: dict[str, dict[str, Any]] = {}
    qa: dict[str, Any] = {}
    for plan in plans:
        dose = plan.require_dose()
        per_structure: dict[str, dict[str, Any]] = {}
        for s in reported_structures(plan.structures):
            try:
                m = _structure_metrics(dose, s, plan.fractions, plan.prescription.total_dose_gy)
            except AnalysisError as exc:
                log.warning("plan %s: no DVH for %s: %s", plan.name, s.name, exc)
                continue
            m["kind"] = s.kind.value
            per_structure[s.name] = m
        summary = _plan_summary(plan, per_structure)
        if proto is not None:
            arm_name = protocol_arm_for(
                proto, plan.arm.value, plan.fractions, plan.prescription.total_dose_gy
            )
            if arm_name is None:
                summary["qa"] = {
                    "arm": None,
                    "verdict": None,
                    "note": f"protocol {proto.name!r} has no arm for a {plan.arm.value} plan "
                    f"of {plan.fractions} fraction(s)",
                }
            else:
                # Structures are judged over the part the dose grid covers (the grid ends
                # at most one dose pitch short of the scan's end slices); how much that is
                # goes with the result.
                covered = [part_within(st, [dose.grid]) for st in plan.structures]
                coverage = {
                    a.name: b.volume_cc / a.volume_cc
                    for a, b in zip(plan.structures, covered, strict=True)
                    if b is not a
                }
                result = check(
                    plan, StructureSet(tuple(covered), plan.structures.grid), proto, arm_name
                )
                qa[plan.name] = {**result.to_dict(), "coverage": coverage}
                summary["qa"] = {
                    "arm": arm_name,
                    "verdict": result.verdict.value,
                    "counts": result.counts(),
                }
        summaries[plan.name] = summary
    reference = next((p.name for p in plans if p.arm is Arm.CRT), None)
    return json_safe(
        {
            "lattice_plan_version": __version__,
            "patient": patient_summary(patient),
            "protocol": None
            if proto is None
            else {"name": proto.name, "version": proto.version, "source": proto.source},
            "reference_plan": reference,
            "plans": summaries,
            "comparison": _comparison(plans, summaries, reference),
            "qa": qa,
        }
    )
