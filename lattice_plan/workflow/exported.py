"""Plans exported as DICOM: the evaluation of any system's plan, and the 3D scene of an output folder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lattice_plan.analysis import sfrt
from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.radiobiology import default_alpha_beta_gy
from lattice_plan.errors import AnalysisError, InputFileError
from lattice_plan.files import json_safe
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.io.ct import read_ct
from lattice_plan.io.rtstruct import read_rtstruct
from lattice_plan.qa.lookup import load_protocol_arg
from lattice_plan.workflow._common import DEFAULT_METRICS, safe_name


def _pvdr_of(dose: Volume, structures: StructureSet, evaluated: set[str]) -> dict[str, Any]:
    """PVDR variants the structures allow: D10/D90 of the GTV, mean vertex / mean valley dose."""
    out: dict[str, Any] = {}

    def first(kind: StructureKind) -> Structure | None:
        return next((s for s in structures.of_kind(kind) if s.name in evaluated), None)

    gtv, peak, valley = (
        first(StructureKind.GTV),
        first(StructureKind.VERTEX),
        first(StructureKind.VALLEY),
    )
    try:
        if gtv is not None:
            out["D10/D90"] = {"structure": gtv.name, "value": sfrt.pvdr_d10_d90(dose, gtv)}
        if peak is not None and valley is not None:
            out["mean"] = {
                "structures": [peak.name, valley.name],
                "value": sfrt.pvdr_mean(dose, peak, valley),
            }
    except AnalysisError as exc:
        out["note"] = str(exc)
    return out


def evaluate_dicom(
    rtdose_path: str | os.PathLike[str],
    rtstruct_path: str | os.PathLike[str],
    *,
    ct_dir: str | os.PathLike[str] | None = None,
    rtplan_path: str | os.PathLike[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    protocol: str | os.PathLike[str] | None = None,
    arm: str | None = None,
    fractions: int | None = None,
    prescription_gy: float | None = None,
    end_cap: str = "half-slice",
) -> dict[str, Any]:
    """DVH metrics, PVDR and (with ``arm``) protocol QA of an exported plan from any system.

    The structures are rasterised on the CT (``ct_dir``) or, without it, on the
    dose grid, with the contour end-cap convention ``end_cap`` (see
    :func:`~lattice_plan.io.rtstruct.read_rtstruct`). Returns JSON data: ``{"structures": {ROI: {"volume_cc": ...,
    metric: value, ...}}, "pvdr": ..., "qa": ..., "notes": [...], ...}`` with
    D-metrics in Gy (unless the string asks for ``[%]`` or ``[cGy]``) and
    V-metrics in the unit the string asks for (default %, ``[cc]`` for cc).
    ROIs that reach outside the dose grid or have no contours get a note
    instead of values. The dose of the course, the fractions (for EQD2/BED
    metrics and QA: ``fractions``, else the RTPLAN's) and the prescription (for
    % metrics: ``prescription_gy``, else the RTPLAN's target prescription dose)
    follow :func:`~lattice_plan.io.exported_plan.load_exported_plan`.
    """
    from lattice_plan.analysis.metric_strings import parse_metric
    from lattice_plan.io.dicom_common import DicomWarning
    from lattice_plan.io.exported_plan import load_exported_plan
    from lattice_plan.qa import check
    from lattice_plan.qa.dicom_check import rois_outside_grid

    specs = [parse_metric(m) for m in metrics]
    if not specs:
        raise AnalysisError("give at least one metric (e.g. Dmean, D95%, V20Gy[cc])")
    exported = load_exported_plan(
        rtdose_path,
        rtplan_path,
        fractions=fractions,
        prescription_gy=prescription_gy,
        override_rtplan=True,
    )
    dose, fractions, prescription_gy = exported.dose, exported.fractions, exported.prescription_gy
    plan_name, summation = exported.plan_name, exported.summation_type
    if any(s.needs_prescription for s in specs) and not prescription_gy:
        relative = ", ".join(s.text for s in specs if s.needs_prescription)
        raise AnalysisError(
            f"metric(s) {relative} are relative to the prescription: give an RTPLAN with a target "
            "prescription dose, or the prescription in Gy"
        )
    if any(s.needs_fractionation for s in specs) and not fractions:
        raise AnalysisError(
            "EQD2/BED metrics need the number of fractions: give the RTPLAN or the fractions"
        )
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DicomWarning)
        if ct_dir is not None:
            target: Any = read_ct(ct_dir)
            structures = read_rtstruct(rtstruct_path, target, end_cap=end_cap)
        else:
            structures = read_rtstruct(
                rtstruct_path,
                dose.grid,
                frame_of_reference_uid=exported.frame_of_reference_uid,
                end_cap=end_cap,
            )
    notes += [str(w.message) for w in caught if issubclass(w.category, DicomWarning)]
    outside = {k.casefold(): v for k, v in rois_outside_grid(rtstruct_path, dose.grid).items()}
    per: dict[str, dict[str, Any]] = {}
    dvhs: dict[str, DVH] = {}
    for s in structures:
        entry: dict[str, Any] = {"volume_cc": round(s.volume_cc, 4)}
        reason = outside.get(s.name.casefold())
        dvh = None
        if reason is None and not s.is_empty:
            try:
                dvh = DVH.from_dose(dose, s)
            except AnalysisError as exc:
                reason = str(exc)
        elif s.is_empty:
            reason = "no voxel of the structure on the grid"
        for spec in specs:
            if dvh is None:
                entry[spec.text] = None
            elif spec.kind == "pvdr":  # per ROI only the D10/D90 variant is defined
                entry[spec.text] = (
                    sfrt.evaluate_pvdr(dose, spec, gtv=s, n_fractions=fractions)
                    if spec.pvdr_variant == "D10/D90"
                    else None
                )
            else:
                entry[spec.text] = dvh.metric(
                    spec, prescription_gy, fractions, default_alpha_beta_gy(s)
                )
        if reason is not None:
            entry["note"] = f"not evaluated: {reason}"
        if dvh is not None:
            dvhs[s.name] = dvh
        per[s.name] = entry
    result: dict[str, Any] = {
        "rtdose": str(rtdose_path),
        "rtstruct": str(rtstruct_path),
        "rtplan": None if rtplan_path is None else str(rtplan_path),
        "ct": None if ct_dir is None else str(ct_dir),
        "plan": plan_name,
        "dose": {
            "summation_type": summation,
            "max_gy": float(dose.array.max()),
            "grid_shape_kji": list(dose.grid.shape),
            "grid_spacing_kji_mm": list(dose.grid.spacing_mm),
        },
        "fractions": fractions,
        "prescription_gy": prescription_gy,
        "metrics": [s.text for s in specs],
        "structures": per,
        "pvdr": _pvdr_of(dose, structures, set(dvhs)),
        "notes": notes,
    }
    if arm is not None:
        proto = load_protocol_arg(protocol or "builtin")
        qa = check(
            dose,
            structures,
            proto,
            arm,
            fractions=fractions,
            plan_name=plan_name,
            unusable=outside,
        )
        result["qa"] = qa.to_dict()
    return json_safe(result)


def plan_scene(folder: str | os.PathLike[str], plan: str | None = None) -> Any:
    """The 3D scene of one plan in an output folder of :func:`write_case_outputs`.

    ``plan`` names the plan (default: the first RTDOSE in the folder). The
    structures are read on the folder's CT when it holds one, else on the dose grid.
    """
    from lattice_plan.io.dicom_common import DicomWarning, read_dataset
    from lattice_plan.io.rtdose import load_rtdose
    from lattice_plan.io.rtplan import read_rtplan
    from lattice_plan.viz.scene3d import build_scene

    root = Path(folder)
    doses = sorted(root.glob("RTDOSE_*.dcm"))
    if not doses:
        raise InputFileError(
            f"{str(root)!r} holds no RTDOSE_*.dcm; give a folder written by 'lattice-plan plan' "
            "or 'demo'"
        )
    if plan is None:
        dose_path = doses[0]
    else:
        dose_path = root / f"RTDOSE_{safe_name(plan)}.dcm"
        if not dose_path.is_file():
            names = ", ".join(p.stem.removeprefix("RTDOSE_") for p in doses)
            raise InputFileError(f"no plan {plan!r} in {str(root)!r}; its plans are: {names}")
    rtdose = load_rtdose(dose_path)
    plan_path = next(
        (
            p
            for p in sorted(root.glob("RTPLAN_*.dcm"))
            if str(read_dataset(p, what="RTPLAN").SOPInstanceUID) == rtdose.referenced_rtplan_uid
        ),
        None,
    )
    if plan_path is None:
        raise InputFileError(f"the RTPLAN of {dose_path.name} is not in {str(root)!r}")
    rtplan = read_rtplan(plan_path)
    rs = root / "RTSTRUCT.dcm"
    if not rs.is_file():
        raise InputFileError(f"{str(root)!r} holds no RTSTRUCT.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)  # ROIs without contours are not drawn
        if (root / "CT").is_dir():
            structures = read_rtstruct(rs, read_ct(root / "CT"))
        else:
            structures = read_rtstruct(
                rs, rtdose.grid, frame_of_reference_uid=rtdose.frame_of_reference_uid
            )
    return build_scene(
        structures,
        rtdose.volume,
        rtplan.beams,
        reference_dose_gy=rtplan.prescription_dose_gy,
        title=f"{rtplan.label}: {dose_path.name}",
    )
