"""Every output of a case's plans, written atomically into one folder.

The CT series (optional), one RTSTRUCT with every structure (vertices, valley,
STV, PTV included), an RTPLAN and an RTDOSE per plan that reference each other
(RTDOSE -> RTPLAN -> RTSTRUCT -> CT), the metrics, figures, 3D scene images and
``report.html``. Everything is written into a temporary sibling folder that is
renamed onto the output folder when complete, so the folder is never left
half-written.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lattice_plan import __version__
from lattice_plan.errors import PlanningError
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import Structure
from lattice_plan.io.atomic import atomic_output_dir
from lattice_plan.io.ct import CTSeries, write_ct_series
from lattice_plan.io.rtdose import write_rtdose
from lattice_plan.io.rtplan import write_rtplan
from lattice_plan.io.rtstruct import add_to_rtstruct, list_rois, write_rtstruct
from lattice_plan.planning.plan import Plan
from lattice_plan.workflow._common import Progress, report_progress, safe_name
from lattice_plan.workflow.crt_summary import crt_notes
from lattice_plan.workflow.figures import write_figures, write_scenes

log = logging.getLogger(__name__)

#: The file that marks a folder as a complete lattice_plan output (which a new run may replace).
COMPLETE_MARKER = ".lattice_plan_case.json"


def _rtplan_beams(plan: Plan) -> dict[str, Any]:
    """What a plan's RTPLAN holds: its control-point beams when it was sequenced (with the
    optimised fluence maps beside them, and the machine's name), else its static beams."""
    if not plan.delivery_beams:
        return {"beams": plan.beams}
    names = {b.name for b in plan.delivery_beams}
    return {
        "beams": plan.delivery_beams,
        "fluence_beams": [b for b in plan.beams if b.name in names and b.fluence is not None],
        "machine_name": plan.info.get("delivery", {}).get("machine"),
    }


def _all_structures(patient: Patient, plans: Sequence[Plan]) -> list[Structure]:
    """Every structure of the patient and the plans, once per name (a clash gets the arm's suffix)."""
    out: dict[str, Structure] = {s.name.casefold(): s for s in patient.structures}
    for plan in plans:
        for s in plan.structures:
            key = s.name.casefold()
            if key not in out:
                out[key] = s
            elif not np.array_equal(out[key].mask, s.mask):
                renamed = s.renamed(f"{s.name}_{plan.arm.value}")
                out.setdefault(renamed.name.casefold(), renamed)
    return list(out.values())


def write_case_outputs(
    patient: Patient,
    plans: Sequence[Plan],
    out_dir: str | os.PathLike[str],
    *,
    metrics: Mapping[str, Any],
    write_ct: bool,
    figures: bool = True,
    scene: bool = True,
    report: bool = True,
    progress: Progress | None = None,
    ct_series: CTSeries | None = None,
    source_rtstruct: str | os.PathLike[str] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the DICOM objects, metrics, figures, 3D images and report of ``plans`` into ``out_dir``.

    The CT series is written (``CT/``) when ``write_ct``; otherwise ``ct_series``
    (the CT the patient was read from, :func:`load_dicom_case`) is referenced.
    The RTSTRUCT holds every structure of the patient and the plans; with
    ``source_rtstruct`` it is a copy of that file with the plans' new
    structures added. Returns the paths written (relative names -> paths).
    Everything is written into a temporary sibling folder that replaces
    ``out_dir`` when complete; an earlier lattice_plan output there is replaced,
    any other non-empty folder is refused.
    """
    if not plans:
        raise PlanningError("write_case_outputs needs at least one plan")
    if not write_ct and ct_series is None:
        raise PlanningError(
            "the RTSTRUCT must reference the CT slices: pass write_ct=True, or ct_series= the CT "
            "the patient was read from (load_dicom_case)"
        )
    out = Path(out_dir)
    paths: dict[str, Any] = {}
    with atomic_output_dir(out, COMPLETE_MARKER) as tmp:
        n_dicom = 2 + 2 * len(plans)
        report_progress(progress, "DICOM", 0, n_dicom)
        if write_ct:
            ct = write_ct_series(patient, tmp / "CT", series_description="lattice_plan CT")
            paths["CT"] = out / "CT"
        else:
            assert ct_series is not None
            ct = ct_series
        report_progress(progress, "DICOM", 1, n_dicom)
        rs_path = tmp / "RTSTRUCT.dcm"
        roi_name: dict[str, str] = {}  # plan structure name (casefolded) -> ROI name written
        if source_rtstruct is not None:
            existing = {r.name.casefold() for r in list_rois(source_rtstruct)}
            own = {st.name.casefold() for st in patient.structures}
            new = []
            for st in _all_structures(patient, plans):
                if st.name.casefold() in own:
                    continue  # read from the source RTSTRUCT: its ROI is kept as it is
                name = st.name
                while name.casefold() in existing:
                    name += "_LP"  # the source has an ROI of that name: keep both
                roi_name[st.name.casefold()] = name
                existing.add(name.casefold())
                new.append(st if name == st.name else st.renamed(name))
            rs_uid = add_to_rtstruct(source_rtstruct, new, ct, rs_path)
        else:
            rs_uid = write_rtstruct(
                _all_structures(patient, plans), ct, rs_path, label="lattice_plan"
            )
        roi_numbers = {r.name.casefold(): r.number for r in list_rois(rs_path)}
        paths["RTSTRUCT"] = out / "RTSTRUCT.dcm"
        report_progress(progress, "DICOM", 2, n_dicom)
        for n, plan in enumerate(plans):
            stem = safe_name(plan.name)
            rp = write_rtplan(
                path=tmp / f"RTPLAN_{stem}.dcm",
                identity=ct.identity,
                **_rtplan_beams(plan),
                n_fractions=plan.fractions,
                dose_per_fraction_gy=plan.prescription.dose_per_fraction_gy,
                label=plan.name,
                plan_name=f"{plan.name} ({plan.arm.value})",
                referenced_rtstruct_uid=rs_uid,
                target_roi_number=roi_numbers.get(
                    roi_name.get(
                        plan.prescription.target.casefold(), plan.prescription.target
                    ).casefold()
                ),
                prescription_description=plan.prescription.describe(),
            )
            paths[f"RTPLAN {plan.name}"] = out / rp.path.name
            for beam, f in rp.fluence_files.items():
                paths[f"fluence {plan.name} {beam}"] = out / f.name
            report_progress(progress, "DICOM", 3 + 2 * n, n_dicom)
            write_rtdose(
                plan.require_dose(),
                tmp / f"RTDOSE_{stem}.dcm",
                ct.identity,
                referenced_rtplan_uid=rp.sop_instance_uid,
                summation_type="PLAN",
                series_description=f"{plan.name} dose",
                comment=f"{plan.name}: {plan.prescription.describe()}",
            )
            paths[f"RTDOSE {plan.name}"] = out / f"RTDOSE_{stem}.dcm"
            report_progress(progress, "DICOM", 4 + 2 * n, n_dicom)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        paths["metrics"] = out / "metrics.json"
        images: list[tuple[str, Path]] = []
        if figures:
            images += write_figures(patient, plans, tmp / "figures", progress)
        if scene:
            images += write_scenes(plans, tmp / "scenes", progress)
        for _caption, p in images:
            paths[f"{p.parent.name}/{p.name}"] = out / p.parent.name / p.name
        if report:
            report_progress(progress, "report", 0, 1)
            _write_report(tmp / "report.html", patient, plans, metrics, images, inputs)
            report_progress(progress, "report", 1, 1)
            paths["report"] = out / "report.html"
        manifest = {
            "lattice_plan_version": __version__,
            "plans": [p.name for p in plans],
            "files": sorted(str(Path(p).relative_to(out)) for p in _flat_paths(paths)),
        }
        (tmp / COMPLETE_MARKER).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %d outputs to %s", len(paths), out)
    return paths


def _flat_paths(paths: Mapping[str, Any]) -> list[Path]:
    return [Path(p) for p in paths.values()]


def _write_report(
    path: Path,
    patient: Patient,
    plans: Sequence[Plan],
    metrics: Mapping[str, Any],
    images: Sequence[tuple[str, Path]],
    inputs: Mapping[str, Any] | None,
) -> None:
    from lattice_plan.viz.report import write_report
    from lattice_plan.viz.viewer import case_payload

    parts = metrics["comparison"]
    comparison = {**parts["plan"], **parts["physical"], **parts["eqd2"]}
    qa_rows: dict[str, list[dict[str, Any]]] = {}
    verdicts: dict[str, str] = {}
    for plan_name, result in metrics.get("qa", {}).items():
        label = f"{plan_name} (arm {result['arm']})"
        qa_rows[label] = [
            {
                "structure": r["structure"],
                "plan structure": r.get("plan_structure"),
                "constraint": f"{r['metric']} {r['comparison']} {r['limit']}",
                "acceptable": r.get("acceptable"),
                "value": r["value"],
                "unit": r.get("unit"),
                "outcome": r["outcome"],
                "source / note": r.get("note") or r.get("source"),
            }
            for r in result["rows"]
        ]
        verdicts[label] = result["verdict"]
    info: dict[str, Any] = {
        "patient": f"{patient.patient_id} ({patient.description or patient.patient_name})",
        "CT grid": str(patient.grid),
    }
    for plan in plans:
        info[f"plan {plan.name}"] = (
            f"{plan.arm.value}; {plan.prescription.describe()}; "
            f"{len(plan.beams)} beams, {plan.total_mu:.0f} MU per fraction; "
            f"spec: {plan.info.get('spec_source', '-')}"
        )
    if metrics.get("protocol"):
        info["protocol"] = f"{metrics['protocol']['name']} v{metrics['protocol']['version']}"
    info.update(inputs or {})
    reference = metrics.get("reference_plan")
    notes = []
    for name, summary in metrics["plans"].items():
        notes += crt_notes(name, summary)
    write_report(
        path,
        f"lattice_plan: {', '.join(p.name for p in plans)} for {patient.patient_id}",
        comparison,
        qa=qa_rows or None,
        figures=[(caption, p) for caption, p in images],
        inputs=info,
        reference_plan=reference,
        plans=[p.name for p in plans],
        notes=notes,
        qa_verdicts=verdicts or None,
        viewer=case_payload(patient, plans, reference_plan=reference),
    )
