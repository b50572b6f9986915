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
