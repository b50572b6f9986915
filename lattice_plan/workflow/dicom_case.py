"""A planning case read from DICOM: a CT folder and its RTSTRUCT."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lattice_plan.errors import InputFileError, StructureNotFoundError
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import StructureKind, StructureSet
from lattice_plan.io.ct import CTSeries, read_ct
from lattice_plan.io.rtstruct import list_rois, read_rtstruct
from lattice_plan.io.rtstruct.rois import RoiInfo

log = logging.getLogger(__name__)


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
    listed = list_rois(rs)
    for r in listed:
        if r.skip_reason and oars is None and r.interpreted_type.upper() in ("ORGAN", "OAR"):
            log.warning("%s: organ ROI %r is not planned: %s", rs, r.name, r.skip_reason)
    rois = [r for r in listed if not r.skip_reason]
    gtv = _roi_name(gtv, rois, rs, "GTV")
    oars = None if oars is None else [_roi_name(n, rois, rs, "OAR") for n in oars]
    external = None if external is None else _roi_name(external, rois, rs, "body outline")
    wanted = {gtv, *(oars or ()), *([external] if external else [])}
    keep = [
        r.name
        for r in rois
        if r.name in wanted
        or (oars is None and r.interpreted_type.upper() in ("ORGAN", "OAR"))
        or (external is None and r.interpreted_type.upper() == "EXTERNAL")
    ]
    dropped = sorted({r.name for r in rois} - set(keep))
    if dropped:
        log.info("ROIs not used for planning (kept in the output RTSTRUCT): %s", dropped)
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


def _roi_name(name: str, rois: Sequence[RoiInfo], rs: Path, role: str) -> str:
    """The ROI ``name`` asks for: the exact name, else the one ROI whose name differs only in
    case (logged); several case-only matches or none are refused."""
    names = [r.name for r in rois]
    if name in names:
        return name
    matches = [n for n in names if n.casefold() == name.casefold()]
    if len(matches) == 1:
        log.warning(
            "%s name %r: no ROI has exactly that name; using ROI %r (differs in case)",
            role,
            name,
            matches[0],
        )
        return matches[0]
    if matches:
        raise StructureNotFoundError(
            f"{role} name {name!r}: no ROI of exactly that name in {str(rs)!r}, and "
            f"{len(matches)} that differ only in case ({', '.join(matches)}); give one exactly"
        )
    raise StructureNotFoundError(
        f"{role} name {name!r}: no ROI of that name with contours in {str(rs)!r}; its ROIs are: "
        f"{', '.join(names)}"
    )
