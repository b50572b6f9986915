"""The main job for one patient: plan the arms, evaluate them side by side, write every output.

:func:`run_case` is :func:`plan_case` for each arm, then :func:`evaluate_plans`,
then :func:`write_case_outputs`. The command line (``lattice-plan demo`` and
``lattice-plan plan``) and the cohort runner call these functions.

- :func:`plan_case`: one arm's plan from a plan spec (a TOML file, its parsed
  mapping or a :class:`~lattice_plan.planning.spec.PlanSpec`; by default the
  arm's :data:`DEFAULT_SPECS`) with dotted overrides such as
  ``{"lattice.spacing_mm": 25.0, "dose.spacing_mm": 3.0}``, validated by the
  plan-spec parser.
- :func:`evaluate_plans`: per plan the DVH metrics of the targets and organs
  at risk (physical and EQD2), the PVDR variants and vertex count of lattice
  plans, MU and optimiser figures, and the protocol QA of the plan's arm; and
  the comparison table with the CRT plan as reference column. The result is
  plain JSON data (``metrics.json``).
- :func:`write_case_outputs`: the CT series (optional), one RTSTRUCT with every
  structure (vertices, valley, STV, PTV included), an RTPLAN and an RTDOSE per
  plan that reference each other (RTDOSE -> RTPLAN -> RTSTRUCT -> CT), the
  metrics, figures, 3D scene images and ``report.html``. Everything is written
  into a temporary sibling folder that is renamed onto the output folder when
  complete, so the folder is never left half-written.

Progress is reported through ``progress(task, done, total)`` (``total`` None
when unknown); the CLI turns it into progress bars.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lattice_plan import __version__
from lattice_plan.analysis import sfrt
from lattice_plan.analysis.comparison import PlanDose, compare_plans
from lattice_plan.analysis.delivery import ideal_vs_deliverable
from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.radiobiology import default_alpha_beta_gy
from lattice_plan.errors import (
    AnalysisError,
    InputFileError,
    PlanningError,
    SpecError,
    StructureNotFoundError,
)
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.shape import diameters
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.io.atomic import safe_file_part
from lattice_plan.io.ct import CTSeries, read_ct, write_ct_series
from lattice_plan.io.rtdose import write_rtdose
from lattice_plan.io.rtplan import write_rtplan
from lattice_plan.io.rtstruct import add_to_rtstruct, list_rois, read_rtstruct, write_rtstruct
from lattice_plan.planning.plan import ARMS, Arm, Plan, spec_key_applies
from lattice_plan.planning.spec import PlanSpec, load_spec, parse_spec, plan_patient

log = logging.getLogger(__name__)

Progress = Callable[[str, int, "int | None"], None]

REFERENCE_ARM = "CRT"

#: What each arm is planned with when no spec is given: the prescriptions of the
#: built-in study protocol (SFRT 15 Gy x 1 to the vertices, SCART 15 Gy x 1 to the
#: STV, CRT 30 Gy in 10 fractions to the PTV); everything else is the builder's default.
DEFAULT_SPECS: dict[str, dict[str, Any]] = {
    "SFRT": {
        "plan": {"name": "SFRT", "arm": "SFRT"},
        "prescription": {"dose_gy": 15.0, "fractions": 1, "target": "Vertices", "method": "Dmean"},
    },
    "SCART": {
        "plan": {"name": "SCART", "arm": "SCART"},
        "prescription": {"dose_gy": 15.0, "fractions": 1, "target": "STV", "method": "D95%"},
    },
    "CRT": {
        "plan": {"name": "CRT", "arm": "CRT"},
        "prescription": {"dose_gy": 30.0, "fractions": 10, "target": "PTV", "method": "D95%"},
    },
}

#: The DVH metrics reported for every structure (and the default of ``lattice-plan evaluate``).
DEFAULT_METRICS: tuple[str, ...] = (
    "Dmin",
    "Dmean",
    "Dmax",
    "D98%",
    "D95%",
    "D50%",
    "D2%",
    "D0.03cc",
)
#: EQD2 metrics (alpha/beta per structure, see radiobiology.default_alpha_beta_gy).
EQD2_METRICS: tuple[str, ...] = ("EQD2:Dmean", "EQD2:D2%", "EQD2:D0.03cc")

#: Kinds whose DVHs the comparison reports (the body, rings and helper shells are left out).
REPORTED_KINDS: tuple[StructureKind, ...] = (
    StructureKind.GTV,
    StructureKind.CTV,
    StructureKind.PTV,
    StructureKind.VERTEX,
    StructureKind.CORE,
    StructureKind.VALLEY,
    StructureKind.OAR,
)
_COMPLETE_MARKER = ".lattice_plan_case.json"
# A rim along the body outline: only clutter on the slice figures (as in the 3D scenes).
_SLICE_SKIP_NAMES = ("skin",)
#: The trial admits a soft-tissue mass whose shortest diameter exceeds this (mm).
ELIGIBLE_SHORTEST_DIAMETER_MM = 30.0


def _report(progress: Progress | None, task: str, done: int, total: int | None) -> None:
    if progress is not None:
        progress(task, done, total)


# ------------------------------------------------------------------------------ specs
def _plain(value: Any) -> Any:
    """A dataclass field value as TOML data (enums by value, tuples as lists)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _dataclass_table(obj: Any) -> dict[str, Any]:
    return {
        f.name: _plain(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.init and getattr(obj, f.name) is not None
    }


def spec_to_mapping(spec: PlanSpec) -> dict[str, Any]:
    """The TOML data of ``spec``: ``parse_spec(spec_to_mapping(spec))`` gives the same plan spec."""
    data: dict[str, Any] = {
        "plan": {"name": spec.name, "arm": spec.arm.value, "description": spec.description},
        "structures": {"gtv": spec.gtv},
    }
    if spec.oars is not None:
        data["structures"]["oars"] = list(spec.oars)
    if spec.prescription is not None:
        rx = spec.prescription
        table: dict[str, Any] = {
            "dose_per_fraction_gy": rx.dose_per_fraction_gy,
            "fractions": rx.fractions,
        }
        for key in ("target", "method", "reference_point_lps_mm"):
            if getattr(rx, key) is not None:
                table[key] = _plain(getattr(rx, key))
        data["prescription"] = table
    beams = _dataclass_table(spec.beams)
    if beams:
        data["beams"] = beams
    if spec.dose_spacing_mm is not None:
        data["dose"] = {"spacing_mm": spec.dose_spacing_mm}
    crt = {
        k: getattr(spec, k)
        for k in ("ptv_margin_mm", "penumbra_margin_mm")
        if getattr(spec, k) is not None
    }
    if crt:
        data["crt"] = crt
    if spec.max_iterations is not None:
        data["optimiser"] = {"max_iterations": spec.max_iterations}
    if spec.lattice is not None:
        data["lattice"] = _dataclass_table(spec.lattice)
    if spec.core is not None:
        data["scart"] = _dataclass_table(spec.core)
    if spec.objectives is not None:
        data["objectives"] = [
            {"type": type(o).kind, **_dataclass_table(o)} for o in spec.objectives
        ]
    return data


def _read_spec_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML data of a plan-spec file (validated by parsing it, so errors name the file)."""
    load_spec(path)  # refuses a missing, unreadable or invalid file with the parser's message
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def apply_overrides(
    data: Mapping[str, Any], overrides: Mapping[str, Any], source: str = "<overrides>"
) -> dict[str, Any]:
    """A copy of plan-spec ``data`` with dotted ``overrides`` (``"table.key": value``) set.

    A prescription override of ``dose_gy`` replaces ``dose_per_fraction_gy`` and
    vice versa. The result still has to pass :func:`~lattice_plan.planning.spec.parse_spec`.
    """
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        if len(parts) != 2 or not all(parts):
            raise SpecError(
                f"{source}: override {dotted!r} is not a dotted plan-spec key 'table.key' "
                "(e.g. 'lattice.spacing_mm', 'dose.spacing_mm', 'optimiser.max_iterations')"
            )
        table, key = parts
        if table == "objectives":
            raise SpecError(
                f"{source}: objectives cannot be overridden key by key; give them in a spec file"
            )
        current = out.get(table, {})
        if not isinstance(current, Mapping):
            raise SpecError(f"{source}: [{table}] in the spec is not a table; cannot set {key!r}")
        current = dict(current)
        current[key] = value
        if table == "prescription":
            other = {"dose_gy": "dose_per_fraction_gy", "dose_per_fraction_gy": "dose_gy"}
            if key in other:
                current.pop(other[key], None)
        out[table] = current
    return out


def resolve_spec(
    arm: str,
    spec: Mapping[str, Any] | PlanSpec | str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> PlanSpec:
    """The validated plan spec of ``arm``: ``spec`` (default: DEFAULT_SPECS[arm]) with ``overrides``."""
    arm_value = Arm.parse(arm).value
    if isinstance(spec, PlanSpec) and not overrides:
        parsed = spec
    else:
        data: Mapping[str, Any]
        if spec is None:
            data, source = DEFAULT_SPECS[arm_value], f"default {arm_value} spec"
        elif isinstance(spec, PlanSpec):
            data, source = spec_to_mapping(spec), spec.source
        elif isinstance(spec, str | os.PathLike):
            data, source = _read_spec_mapping(spec), str(spec)
        elif isinstance(spec, Mapping):
            data, source = spec, "<spec>"
        else:
            raise SpecError(
                "a plan spec is a TOML file path, its parsed mapping or a PlanSpec, got "
                f"{type(spec).__name__}"
            )
        if overrides:
            data = apply_overrides(data, overrides, source)
            source = f"{source} + overrides {', '.join(sorted(map(str, overrides)))}"
        parsed = parse_spec(data, source=source)
    if parsed.arm.value != arm_value:
        raise SpecError(
            f"{parsed.source}: [plan] arm is {parsed.arm.value!r}, but it was given for the "
            f"{arm_value} arm; use a {arm_value} spec"
        )
    return parsed


def plan_case(
    patient: Patient,
    arm: str,
    *,
    spec: Mapping[str, Any] | PlanSpec | str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Plan:
    """The plan of one ``arm`` ("SFRT", "SCART" or "CRT") for ``patient``.

    ``spec`` is a plan-spec file, its parsed TOML mapping or a PlanSpec
    (default: :data:`DEFAULT_SPECS`); ``overrides`` are dotted plan-spec keys set
    on top of it (``{"lattice.spacing_mm": 25.0, "optimiser.max_iterations": 50}``).
    Overrides of tables that do not apply to the arm (``lattice.*`` except for
    SFRT, ``scart.*`` except for SCART, ``crt.*`` except for CRT, ``optimiser.*``
    for CRT) are left out, so one set of overrides serves every arm.
    ``progress("<plan>: optimising", iteration, max_iterations)`` reports the
    optimiser of SFRT and SCART plans.
    """
    arm_value = Arm.parse(arm).value
    own = {k: v for k, v in (overrides or {}).items() if spec_key_applies(str(k), arm_value)}
    if len(own) < len(overrides or {}):
        log.debug(
            "%s: overrides not for this arm left out: %s",
            arm_value,
            sorted(set(overrides or {}) - set(own)),
        )
    s = resolve_spec(arm_value, spec, own)
    task = f"{s.name}: optimising"
    total = s.max_iterations

    def on_iteration(iteration: int, objective: float) -> None:
        _report(progress, task, int(iteration), total)

    t0 = time.perf_counter()
    plan = plan_patient(patient, s, progress=on_iteration if progress else None)
    log.info("planned %s (%s) in %.1f s", plan.name, plan.arm.value, time.perf_counter() - t0)
    return plan


# ------------------------------------------------------------------------------ DICOM input
@dataclass(frozen=True, eq=False)
class DicomCase:
    """A patient read from DICOM: the Patient, its CT series (slice UIDs) and the source RTSTRUCT."""

    patient: Patient
    ct: CTSeries
    rtstruct_path: Path


def load_dicom_case(
    ct_dir: str | os.PathLike[str],
    rtstruct_path: str | os.PathLike[str],
    *,
    gtv: str = "GTV",
    oars: Sequence[str] | None = None,
    external: str | None = None,
) -> DicomCase:
    """Read a CT folder and its RTSTRUCT as a planning case.

    The ROI named ``gtv`` becomes the GTV, the ``oars`` (default: every ROI of
    type ORGAN) organs at risk and ``external`` (default: the ROI of type
    EXTERNAL) the body; other ROIs (an earlier PTV, say) are not read, so the
    planning structures the builders make cannot clash with them. Unknown names
    raise StructureNotFoundError listing the ROIs present.
    """
    folder, rs = Path(ct_dir), Path(rtstruct_path)
    if not rs.is_file():
        raise InputFileError(f"RTSTRUCT {str(rs)!r} does not exist or is not a file")
    ct = read_ct(folder)
    rois = [r for r in list_rois(rs) if not r.skip_reason]
    wanted = {gtv.casefold(), *(n.casefold() for n in oars or ()), (external or "").casefold()}
    keep = [
        r.name
        for r in rois
        if r.name.casefold() in wanted
        or (oars is None and r.interpreted_type.upper() in ("ORGAN", "OAR"))
        or (external is None and r.interpreted_type.upper() == "EXTERNAL")
    ]
    dropped = sorted({r.name for r in rois} - set(keep))
    if dropped:
        log.info("ROIs not used for planning (kept in the output RTSTRUCT): %s", dropped)
    for name in (gtv, *(oars or ()), *([external] if external else [])):
        if name.casefold() not in {r.name.casefold() for r in rois}:
            raise StructureNotFoundError(
                f"no ROI named {name!r} with contours in {str(rs)!r}; its ROIs are: "
                f"{', '.join(r.name for r in rois)}"
            )
    structures = read_rtstruct(rs, ct, roi_names=keep)
    if not len(structures):
        raise InputFileError(f"RTSTRUCT {str(rs)!r} holds no ROI with contours on this CT")
    roles: dict[str, StructureKind] = {structures.get(gtv).name: StructureKind.GTV}
    for name in oars or ():
        roles.setdefault(structures.get(name).name, StructureKind.OAR)
    if external is not None:
        roles[structures.get(external).name] = StructureKind.EXTERNAL
    items = []
    for s in structures:
        kind = roles.get(s.name)
        items.append(s if kind is None or kind is s.kind else s.renamed(s.name, kind))
    # The planning GTV first, so that figures and metrics take it as "the" GTV.
    items.sort(key=lambda s: s.name != structures.get(gtv).name)
    patient = ct.to_patient(StructureSet(tuple(items), ct.grid))
    return DicomCase(patient, ct, rs)


# ------------------------------------------------------------------------------ evaluation
def _finite(value: Any) -> Any:
    """``value`` with NaN/inf floats as None, numpy scalars as Python numbers (JSON-safe)."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def load_protocol_arg(protocol: str | os.PathLike[str] | None) -> Any:
    """The protocol named by ``protocol``: "builtin", a built-in protocol's name, or a TOML file."""
    from lattice_plan.qa import list_builtin_protocols, load_builtin_protocol, load_protocol

    if protocol is None:
        return None
    text = str(protocol)
    if text == "builtin":
        return load_builtin_protocol()
    if text in list_builtin_protocols():
        return load_builtin_protocol(text)
    path = Path(text)
    if not path.is_file():
        raise InputFileError(
            f"protocol {text!r} is neither a built-in protocol ({', '.join(list_builtin_protocols())}) "
            "nor an existing TOML file"
        )
    return load_protocol(path)


def protocol_arm_for(protocol: Any, arm: str, fractions: int, total_dose_gy: float) -> str | None:
    """The protocol arm a plan of ``arm`` with ``fractions`` is checked against, or None.

    Arms named like the plan's arm ("SFRT", or "CRT_30Gy_10fx" for CRT) with the
    plan's number of fractions; among several, the one prescribing the plan's dose.
    """
    key = arm.upper()
    names = [n for n in protocol.arm_names if n.upper() == key or n.upper().startswith(key + "_")]
    fitting = [n for n in names if protocol.arm(n).fractions == fractions]
    if len(fitting) > 1:
        by_dose = [
            n
            for n in fitting
            if any(abs(p.dose_gy - total_dose_gy) < 1e-6 for p in protocol.arm(n).prescriptions)
        ]
        fitting = by_dose or fitting[:1]
    if not fitting:
        return names[0] if len(names) == 1 else None
    return fitting[0]


def _structure_metrics(
    dose: Volume, structure: Structure, n_fractions: int, prescription_gy: float
) -> dict[str, Any]:
    """DEFAULT_METRICS and EQD2_METRICS of one structure, over the part the dose grid covers."""
    covered = _within(structure, [dose])
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


def _reported(structures: StructureSet) -> list[Structure]:
    return [s for s in structures if s.kind in REPORTED_KINDS and not s.is_empty]


def _within(structure: Structure, doses: Sequence[Volume]) -> Structure:
    """The part of ``structure`` whose voxel centres every dose grid covers.

    The engine's dose grid ends at the body's outer voxel centres on its own
    pitch, so organs running the length of the scan lose a thin slab at the
    ends; DVHs are taken over the covered part (``covered_fraction`` in the metrics).
    """
    k, j, i = np.nonzero(structure.mask)
    pts = structure.grid.points_lps_mm(np.stack([i, j, k], axis=1).astype(float))
    inside = np.ones(len(pts), dtype=bool)
    for dose in doses:
        inside &= dose.grid.contains_lps(pts, margin_voxels=0.0)
    if inside.all():
        return structure
    mask = np.zeros(structure.grid.shape, dtype=bool)
    mask[k[inside], j[inside], i[inside]] = True
    return structure.with_mask(mask, keep_slice_span=True)


def _first(structures: StructureSet, kind: StructureKind) -> Structure | None:
    return next((s for s in structures.of_kind(kind) if not s.is_empty), None)


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
    if "optimizer" in info:
        opt = info["optimizer"]
        summary["optimiser"] = {
            k: opt[k]
            for k in ("iterations", "stop_reason", "final_objective", "time_s")
            if k in opt
        }
    dose = plan.require_dose()
    gtv = _first(plan.structures, StructureKind.GTV)
    vertices = _first(plan.structures, StructureKind.VERTEX)
    valley = _first(plan.structures, StructureKind.VALLEY)
    stv = _first(plan.structures, StructureKind.CORE)
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
    compared = ideal_vs_deliverable(plan)
    if compared is not None:
        delivery.update(compared)
        for key in _DELIVERY_ROWS:
            if key in compared.get("ideal", {}):
                out[f"{key}_ideal"] = compared["ideal"][key]
                out[f"{key}_deliverable"] = compared["deliverable"][key]
        if "pvdr_mean" in compared.get("kept", {}):
            out["pvdr_mean_kept"] = compared["kept"]["pvdr_mean"]
    out["delivery"] = delivery
    return out


_PLAN_ROWS: tuple[tuple[str, str], ...] = (
    ("prescription", "prescription"),
    ("fractions", "fractions"),
    ("total MU per fraction", "total_mu_per_fraction"),
    ("modulation (MU / open-field MU)", "modulation"),
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
        _within(st, doses)
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
    axial CT) exceeds :data:`ELIGIBLE_SHORTEST_DIAMETER_MM`.
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
        out["eligible"] = bool(d.shortest_diameter_mm() > ELIGIBLE_SHORTEST_DIAMETER_MM)
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
        for s in _reported(plan.structures):
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
                covered = [_within(st, [dose]) for st in plan.structures]
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
    return _finite(
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


# ------------------------------------------------------------------------------ outputs
def _safe(name: str) -> str:
    return safe_file_part(name, "plan")


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


def _prepare_final_dir(out_dir: Path) -> None:
    """Refuse an output folder that is a file, or a non-empty folder we did not write."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputFileError(
                f"output path {str(out_dir)!r} exists and is not a folder; choose a folder path"
            )
        if any(out_dir.iterdir()) and not (out_dir / _COMPLETE_MARKER).is_file():
            raise InputFileError(
                f"output folder {str(out_dir)!r} is not empty and holds no earlier lattice_plan "
                "output; choose a new or empty folder"
            )


def _swap_in(tmp_dir: Path, out_dir: Path) -> None:
    """Move the completed ``tmp_dir`` onto ``out_dir`` (an earlier output there is replaced)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        out_dir.rename(old)
        tmp_dir.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out_dir.exists():
            out_dir.rmdir()
        tmp_dir.rename(out_dir)


def _dose_on_ct(dose: Volume, patient: Patient) -> Volume:
    return dose.resampled(patient.grid, order=1, fill_value=0.0)


def _vertex_centers(plans: Sequence[Plan]) -> np.ndarray | None:
    for plan in plans:
        centers = plan.info.get("vertex_centers_lps_mm")
        if centers:
            return np.asarray(centers, dtype=float).reshape(-1, 3)
    return None


def _dvh_curves(plans: Sequence[Plan]) -> tuple[dict, dict]:
    curves: dict[str, dict[str, tuple]] = {}
    colors: dict[str, tuple[int, int, int]] = {}
    for plan in plans:
        dose = plan.require_dose()
        per: dict[str, tuple] = {}
        for s in _reported(plan.structures):
            covered = _within(s, [dose])
            if covered.is_empty:
                continue
            dvh = DVH.from_dose(dose, covered)
            per[s.name] = (dvh.dose_edges_gy, dvh.cumulative_percent)
            colors.setdefault(s.name, s.color)
        curves[plan.name] = per
    return curves, colors


def _write_figures(
    patient: Patient,
    plans: Sequence[Plan],
    folder: Path,
    progress: Progress | None,
) -> list[tuple[str, Path]]:
    """Slices per plan, DVH comparison, profiles through the vertex centres, fluence maps."""
    from lattice_plan.viz.dvh_plot import dvh_comparison
    from lattice_plan.viz.fluence_plot import fluence_maps
    from lattice_plan.viz.profiles import dose_profiles, segments_through_points
    from lattice_plan.viz.slices import orthogonal_slices

    folder.mkdir()
    written: list[tuple[str, Path]] = []
    centers = _vertex_centers(plans)
    n_steps = 2 * len(plans) + 2
    step = 0

    def save(fig: Any, name: str, caption: str) -> None:
        nonlocal step
        path = folder / name
        fig.savefig(path, dpi=100, format="png")
        written.append((caption, path))
        step += 1
        _report(progress, "figures", step, n_steps)

    for plan in plans:
        rx = plan.prescription.total_dose_gy
        dose_ct = _dose_on_ct(plan.require_dose(), patient)
        levels = [f * rx for f in (0.2, 0.5, 0.8, 1.0)]
        shown = StructureSet(
            tuple(
                s
                for s in plan.structures
                if s.kind in (*REPORTED_KINDS, StructureKind.EXTERNAL)
                and s.name.casefold() not in _SLICE_SKIP_NAMES
            ),
            plan.structures.grid,
        )
        fig = orthogonal_slices(
            patient.ct,
            shown,
            dose=dose_ct,
            isodose_levels_gy=levels,
            markers_lps_mm=centers,
            title=f"{plan.name}: {plan.prescription.describe()}; isodoses 20/50/80/100 % of {rx:g} Gy",
        )
        save(
            fig,
            f"slices_{_safe(plan.name)}.png",
            f"{plan.name}: dose on axial, coronal and sagittal slices through the GTV centre",
        )
    curves, colors = _dvh_curves(plans)
    fig = dvh_comparison(curves, colors=colors, title="Cumulative DVHs (physical dose)")
    save(
        fig,
        "dvh_comparison.png",
        "DVH comparison of the plans (colour: structure, line style: plan)",
    )
    if centers is not None and len(centers):
        segments = segments_through_points(centers, axis="x")[:3]
        labels = [
            f"through vertex row at y = {s[0][1]:.0f} mm, z = {s[0][2]:.0f} mm" for s in segments
        ]
    else:
        gtv = patient.structures.of_kind(StructureKind.GTV)[0]
        c = gtv.centroid_lps_mm()
        lo, hi = gtv.bounding_box_lps_mm()
        segments = [(np.array([lo[0] - 20, c[1], c[2]]), np.array([hi[0] + 20, c[1], c[2]]))]
        labels = ["left-right through the GTV centre"]
    fig = dose_profiles(
        {p.name: p.require_dose() for p in plans},
        segments,
        labels=labels,
        markers_lps_mm=centers,
        title="Dose profiles (vertex centres marked)",
    )
    save(fig, "profiles.png", "Dose profiles through the vertex centres: peaks and valleys")
    for plan in plans:
        fig = fluence_maps(plan.beams, title=f"{plan.name}: beam fluence (relative)")
        save(fig, f"fluence_{_safe(plan.name)}.png", f"{plan.name}: fluence map of each beam")
    return written


def _write_scenes(
    plans: Sequence[Plan], folder: Path, progress: Progress | None
) -> list[tuple[str, Path]]:
    from lattice_plan.viz.scene3d import build_scene, save_scene_png

    folder.mkdir()
    written = []
    for n, plan in enumerate(plans, start=1):
        scene = build_scene(
            plan.structures,
            plan.require_dose(),
            plan.beams,
            reference_dose_gy=plan.prescription.total_dose_gy,
            title=plan.name,
        )
        path = save_scene_png(
            scene, folder / f"scene_{_safe(plan.name)}.png", window_size=(1000, 750)
        )
        written.append(
            (
                f"{plan.name}: 3D view (body, GTV, vertices/STV, OARs, 50 % and 90 % isodoses of the prescription, beams)",
                path,
            )
        )
        _report(progress, "3D scenes", n, len(plans))
    return written


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
    _prepare_final_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output folder is an ordinary one
    paths: dict[str, Any] = {}
    try:
        n_dicom = 2 + 2 * len(plans)
        _report(progress, "DICOM", 0, n_dicom)
        if write_ct:
            ct = write_ct_series(patient, tmp / "CT", series_description="lattice_plan CT")
            paths["CT"] = out / "CT"
        else:
            assert ct_series is not None
            ct = ct_series
        _report(progress, "DICOM", 1, n_dicom)
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
        _report(progress, "DICOM", 2, n_dicom)
        for n, plan in enumerate(plans):
            stem = _safe(plan.name)
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
            _report(progress, "DICOM", 3 + 2 * n, n_dicom)
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
            _report(progress, "DICOM", 4 + 2 * n, n_dicom)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        paths["metrics"] = out / "metrics.json"
        images: list[tuple[str, Path]] = []
        if figures:
            images += _write_figures(patient, plans, tmp / "figures", progress)
        if scene:
            images += _write_scenes(plans, tmp / "scenes", progress)
        for _caption, p in images:
            paths[f"{p.parent.name}/{p.name}"] = out / p.parent.name / p.name
        if report:
            _write_report(tmp / "report.html", patient, plans, metrics, images, inputs)
            paths["report"] = out / "report.html"
        manifest = {
            "lattice_plan_version": __version__,
            "plans": [p.name for p in plans],
            "files": sorted(str(Path(p).relative_to(out)) for p in _flat_paths(paths)),
        }
        (tmp / _COMPLETE_MARKER).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d outputs to %s", len(paths), out)
    return paths


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
    write_report(
        path,
        f"lattice_plan: {', '.join(p.name for p in plans)} for {patient.patient_id}",
        comparison,
        qa=qa_rows or None,
        figures=[(caption, p) for caption, p in images],
        inputs=info,
        reference_plan=reference,
        plans=[p.name for p in plans],
        qa_verdicts=verdicts or None,
    )


# ------------------------------------------------------------------------------ the whole job
def _spec_for(
    arm: str, spec_files: Mapping[str, Any] | Sequence[Any] | None
) -> str | os.PathLike[str] | None:
    if spec_files is None:
        return None
    if isinstance(spec_files, Mapping):
        for key, value in spec_files.items():
            if str(key).upper() == arm:
                return value
        return None
    for f in spec_files:
        if load_spec(f).arm.value == arm:
            return f
    return None


def run_case(
    patient: Patient,
    arms: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    spec_files: Mapping[str, Any] | Sequence[Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    protocol: str | Path | None = "builtin",
    write_ct: bool = False,
    progress: Progress | None = None,
    ct_series: CTSeries | None = None,
    source_rtstruct: str | os.PathLike[str] | None = None,
    figures: bool = True,
    scene: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Plan every arm, evaluate the plans and write the outputs into ``out_dir``; returns the metrics.

    ``spec_files`` maps arm -> plan-spec file (or lists spec files, each used
    for the arm it names); arms without one use :data:`DEFAULT_SPECS`.
    ``overrides`` (dotted plan-spec keys) apply to every arm they fit (see
    :func:`plan_case`). Per-plan figures are in ``metrics["plans"][plan name]``.
    """
    arm_list = [Arm.parse(a).value for a in arms]
    if not arm_list:
        raise PlanningError(f"give at least one arm of {', '.join(ARMS)}")
    if len(set(arm_list)) != len(arm_list):
        raise PlanningError(f"each arm once, got {arm_list}")
    _prepare_final_dir(Path(out_dir))
    plans = []
    for arm in arm_list:
        _report(progress, f"planning {arm}", 0, 1)
        plans.append(
            plan_case(
                patient,
                arm,
                spec=_spec_for(arm, spec_files),
                overrides=overrides,
                progress=progress,
            )
        )
        _report(progress, f"planning {arm}", 1, 1)
    _report(progress, "evaluating", 0, 1)
    metrics = evaluate_plans(patient, plans, protocol=protocol)
    _report(progress, "evaluating", 1, 1)
    inputs = {
        "arms": ", ".join(arm_list),
        "overrides": json.dumps(dict(overrides or {})) if overrides else "none",
    }
    write_case_outputs(
        patient,
        plans,
        out_dir,
        metrics=metrics,
        write_ct=write_ct,
        figures=figures,
        scene=scene,
        report=report,
        progress=progress,
        ct_series=ct_series,
        source_rtstruct=source_rtstruct,
        inputs=inputs,
    )
    return metrics


__all__ = [
    "ARMS",
    "DEFAULT_METRICS",
    "DEFAULT_SPECS",
    "DicomCase",
    "apply_overrides",
    "evaluate_dicom",
    "evaluate_plans",
    "load_dicom_case",
    "load_protocol_arg",
    "patient_summary",
    "plan_case",
    "plan_scene",
    "protocol_arm_for",
    "resolve_spec",
    "run_case",
    "spec_to_mapping",
    "write_case_outputs",
]


# ------------------------------------------------------------------------------ any plan's DICOM
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
    instead of values. Fractions (for EQD2/BED metrics and QA) come from
    ``fractions``, else the RTPLAN; the prescription (for % metrics) from
    ``prescription_gy``, else the RTPLAN's target prescription dose.
    """
    import warnings

    from lattice_plan.analysis.metric_strings import parse_metric
    from lattice_plan.io.dicom_common import DicomWarning
    from lattice_plan.io.rtdose import load_rtdose
    from lattice_plan.io.rtplan import read_rtplan
    from lattice_plan.qa import check
    from lattice_plan.qa.dicom_check import rois_outside_grid

    specs = [parse_metric(m) for m in metrics]
    if not specs:
        raise AnalysisError("give at least one metric (e.g. Dmean, D95%, V20Gy[cc])")
    rtdose = load_rtdose(rtdose_path)
    where = f"RTDOSE {str(rtdose_path)!r}"
    if rtdose.volume.unit != "Gy":
        raise AnalysisError(f"{where} holds a RELATIVE dose; DVH metrics need absolute Gy")
    plan_name = Path(rtdose_path).name
    if rtplan_path is not None:
        rtplan = read_rtplan(rtplan_path)
        plan_name = rtplan.label or rtplan.name or plan_name
        if rtdose.referenced_rtplan_uid and rtdose.referenced_rtplan_uid != rtplan.sop_instance_uid:
            raise AnalysisError(
                f"{where} is the dose of RTPLAN {rtdose.referenced_rtplan_uid}, but "
                f"{str(rtplan_path)!r} is RTPLAN {rtplan.sop_instance_uid}; give the matching plan"
            )
        if fractions is None:
            fractions = rtplan.n_fractions
        if prescription_gy is None:
            prescription_gy = rtplan.prescription_dose_gy
    summation = rtdose.summation_type.upper()
    dose = rtdose.volume
    if summation == "FRACTION":
        if fractions is None:
            raise AnalysisError(
                f"{where} is the dose of one fraction; give the RTPLAN or the number of fractions"
            )
        dose = Volume(dose.array * fractions, dose.grid, "Gy")
    elif summation not in ("PLAN", "MULTI_PLAN", "RECORD"):
        raise AnalysisError(
            f"{where} has Dose Summation Type {summation or '(none)'!r}, not the dose of the whole "
            "plan; export the PLAN dose (or sum the beam doses)"
        )
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
                frame_of_reference_uid=rtdose.frame_of_reference_uid,
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
    return _finite(result)


def plan_scene(folder: str | os.PathLike[str], plan: str | None = None) -> Any:
    """The 3D scene of one plan in an output folder of :func:`write_case_outputs`.

    ``plan`` names the plan (default: the first RTDOSE in the folder). The
    structures are read on the folder's CT when it holds one, else on the dose grid.
    """
    import warnings

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
        dose_path = root / f"RTDOSE_{_safe(plan)}.dcm"
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
