"""The sequencing loss of a deliverable plan: its metrics from the ideal and the deliverable dose.

A plan whose dose was recomputed from control points keeps the optimised
fluence maps' dose as ``Plan.ideal_dose``
(:mod:`lattice_plan.planning.deliverable`); both are evaluated the same way
here: PVDR variants, mean vertex dose, valley D50, GTV D98 and the OAR maxima.
"""

from __future__ import annotations

from typing import Any

from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.sfrt import combined_dvh
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.structure import StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.plan import Plan


def delivery_metrics(dose: Volume, structures: StructureSet) -> dict[str, float]:
    """GTV D98 and D10/D90, mean vertex dose, valley D50 and mean, PVDR (mean/mean, mean/D50), OAR Dmax."""
    out: dict[str, float] = {}

    def first(kind: StructureKind) -> Any:
        return next(iter(structures.of_kind(kind)), None)

    gtv, vertices, valley = (
        first(StructureKind.GTV),
        first(StructureKind.VERTEX),
        first(StructureKind.VALLEY),
    )
    if gtv is not None:
        g = DVH.from_dose(dose, gtv)
        out["gtv_d98_gy"] = g.dose_at_volume_percent(98.0)
        out["pvdr_d10_d90"] = g.dose_at_volume_percent(10.0) / g.dose_at_volume_percent(90.0)
    if vertices is not None and valley is not None:
        peak = combined_dvh(dose, vertices).mean_gy
        v = DVH.from_dose(dose, valley)
        out["vertex_dmean_gy"] = peak
        out["valley_d50_gy"] = v.dose_at_volume_percent(50.0)
        out["valley_dmean_gy"] = v.mean_gy
        out["pvdr_mean"] = peak / v.mean_gy
        out["pvdr_vertex_mean_valley_d50"] = peak / out["valley_d50_gy"]
    for oar in structures.of_kind(StructureKind.OAR):
        if oar.mask.any():
            out[f"{oar.name}_dmax_gy"] = DVH.from_dose(dose, oar).max_gy
    return out


def ideal_vs_deliverable(plan: Plan) -> dict[str, Any] | None:
    """{"ideal": metrics, "deliverable": metrics, "kept": deliverable / ideal} (None without an ideal dose)."""
    if plan.ideal_dose is None:
        return None
    try:
        ideal = delivery_metrics(plan.ideal_dose, plan.structures)
        deliverable = delivery_metrics(plan.require_dose(), plan.structures)
    except (AnalysisError, ZeroDivisionError) as exc:
        return {"note": f"metrics not evaluated: {exc}"}
    kept = {k: deliverable[k] / ideal[k] for k in ideal if ideal[k] != 0 and k in deliverable}
    return {"ideal": ideal, "deliverable": deliverable, "kept": kept}
