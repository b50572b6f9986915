"""Writing RT Structure Sets: mask slices to contours, new files and ROIs added to a file."""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import contourpy
import numpy as np
from numpy.typing import NDArray
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from lattice_plan.errors import DicomError
from lattice_plan.geometry.structure import Structure, StructureSet
from lattice_plan.io.ct import CTSeries
from lattice_plan.io.dicom_common import (
    CT_IMAGE_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    DicomIdentity,
    malformed_as_dicom_error,
    new_dataset,
    read_dataset,
    require_modality,
    write_dataset,
)
from lattice_plan.io.rtstruct.rois import (
    CONTOUR_DATA_TAG,
    INTERPRETED_TYPE_OF_KIND,
    KIND_TAG,
    STUDY_COMPONENT_MANAGEMENT,
    roi_table,
    rtstruct_frame_of_reference_uid,
)

log = logging.getLogger(__name__)


def mask_slice_contours(mask_slice: NDArray[np.bool_]) -> list[NDArray[np.float64]]:
    """Closed contours (each (n, 2) in (i, j) voxel coordinates) of one mask slice.

    The 0.5 iso-lines of the mask, outer boundaries and holes alike (read back by
    the even-odd rule); the closing point is not repeated; collinear points removed.
    """
    padded = np.pad(np.asarray(mask_slice, dtype=np.float64), 1)
    gen = contourpy.contour_generator(z=padded, line_type="Separate")
    out = []
    for line in gen.lines(0.5):
        pts = np.asarray(line, dtype=float)[:-1] - 1.0  # closed: last == first; undo padding
        if len(pts) < 3:
            continue
        prev = np.roll(pts, 1, axis=0)
        nxt = np.roll(pts, -1, axis=0)
        cross = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - (pts[:, 1] - prev[:, 1]) * (
            nxt[:, 0] - pts[:, 0]
        )
        pts = pts[np.abs(cross) > 1e-9]
        if len(pts) >= 3:
            out.append(pts)
    return out


def _contour_data_element(points_lps_mm: NDArray[np.float64]) -> RawDataElement:
    """Contour Data (3006,0050) as an encoded element: decimal strings rounded to 0.1 micrometre.

    Encoded directly because pydicom's per-value DS objects cost ~70 us each and a
    body outline has tens of thousands of values. Each string is at most 16
    characters (checked), as DICOM requires.
    """
    values = np.round(np.asarray(points_lps_mm, dtype=float).ravel(), 4)
    if not np.all(np.isfinite(values)) or np.max(np.abs(values)) >= 1e9:
        raise DicomError("contour coordinates must be finite and within 1e9 mm")
    text = "\\".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in values.tolist())
    if len(text) % 2:
        text += " "  # DICOM values have even length; DS pads with a space
    return RawDataElement(
        BaseTag(CONTOUR_DATA_TAG), "DS", len(text), text.encode("ascii"), 0, False, True
    )


def _contour_image_item(sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = sop_uid
    return item


def _roi_items(
    structure: Structure, number: int, ct: CTSeries
) -> tuple[Dataset, Dataset, Dataset] | None:
    grid = ct.grid
    contours = DicomSequence()
    for k in np.nonzero(structure.mask.any(axis=(1, 2)))[0]:
        for poly in mask_slice_contours(structure.mask[k]):
            ijk = np.column_stack([poly, np.full(len(poly), float(k))])
            item = Dataset()
            item.ContourImageSequence = DicomSequence(
                [_contour_image_item(ct.slice_sop_instance_uids[k])]
            )
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(poly)
            item.ContourNumber = len(contours) + 1
            item[CONTOUR_DATA_TAG] = _contour_data_element(grid.points_lps_mm(ijk))
            # Declare the item already explicit VR little endian, so pydicom writes the encoded
            # Contour Data as it is instead of decoding and re-encoding every value.
            item.set_original_encoding(False, True, default_encoding)
            contours.append(item)
    if not contours:
        return None
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = ct.frame_of_reference_uid
    roi.ROIName = structure.name
    roi.ROIDescription = f"{KIND_TAG}{structure.kind.value}"
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    rc = Dataset()
    rc.ROIDisplayColor = list(structure.color)
    rc.ContourSequence = contours
    rc.ReferencedROINumber = number
    obs = Dataset()
    obs.ObservationNumber = number
    obs.ReferencedROINumber = number
    obs.RTROIInterpretedType = INTERPRETED_TYPE_OF_KIND[structure.kind]
    obs.ROIInterpreter = ""
    return roi, rc, obs


def _referenced_frame(ct: CTSeries) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = ct.series_instance_uid
    series.ContourImageSequence = DicomSequence(
        [_contour_image_item(uid) for uid in ct.slice_sop_instance_uids]
    )
    study = Dataset()
    study.ReferencedSOPClassUID = STUDY_COMPONENT_MANAGEMENT
    study.ReferencedSOPInstanceUID = ct.identity.study_instance_uid
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ct.frame_of_reference_uid
    frame.RTReferencedStudySequence = DicomSequence([study])
    return frame


#: The longest ROI Name DICOM allows (value representation LO, PS3.5 6.2).
MAX_ROI_NAME_CHARS = 64


def _structures_on(structures: StructureSet | Iterable[Structure], ct: CTSeries) -> list[Structure]:
    items = list(structures)
    for s in items:
        ct.grid.require_same(s.grid, f"structure {s.name!r}")
    for s in items:
        if len(s.name) > MAX_ROI_NAME_CHARS:
            raise DicomError(
                f"ROI name {s.name!r} has {len(s.name)} characters; DICOM allows "
                f"{MAX_ROI_NAME_CHARS} (ROI Name is LO): give a shorter name"
            )
    names = [s.name.casefold() for s in items]
    if len(set(names)) != len(names):
        raise DicomError("structure names must be unique (case-insensitive) in one RTSTRUCT")
    return items


def _add_rois(ds: Dataset, structures: list[Structure], ct: CTSeries, first_number: int) -> int:
    number = first_number
    written = 0
    for s in structures:
        items = _roi_items(s, number, ct)
        if items is None:
            log.warning("structure %r is empty: not written to the RTSTRUCT", s.name)
            continue
        roi, rc, obs = items
        ds.StructureSetROISequence.append(roi)
        ds.ROIContourSequence.append(rc)
        ds.RTROIObservationsSequence.append(obs)
        number += 1
        written += 1
    return written


def write_rtstruct(
    structures: StructureSet | Iterable[Structure],
    ct: CTSeries,
    path: str | os.PathLike[str],
    *,
    label: str = "lattice_plan",
    series_description: str = "lattice_plan structures",
) -> str:
    """Write a new RTSTRUCT for ``ct`` holding ``structures`` (on the CT grid); returns its SOP Instance UID.

    Empty structures are left out (logged). Patient, study and frame of
    reference are the CT's; series and instance UIDs are new.
    """
    items = _structures_on(structures, ct)
    ds = new_dataset(
        RT_STRUCTURE_SET_STORAGE,
        ct.identity,
        modality="RTSTRUCT",
        series_description=series_description,
    )
    now = datetime.datetime.now()
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(ct)])
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    ds.RTROIObservationsSequence = DicomSequence()
    ds.ApprovalStatus = "UNAPPROVED"
    if _add_rois(ds, items, ct, 1) == 0:
        raise DicomError("no non-empty structure to write; an RTSTRUCT needs at least one ROI")
    write_dataset(ds, path)
    return str(ds.SOPInstanceUID)


def add_to_rtstruct(
    existing_path: str | os.PathLike[str],
    structures: StructureSet | Iterable[Structure],
    ct: CTSeries,
    path: str | os.PathLike[str],
    *,
    series_description: str | None = None,
) -> str:
    """Write a new RTSTRUCT: every ROI of ``existing_path`` plus ``structures``.

    The existing file is not modified (``path`` must differ from it). Its ROIs
    are copied unchanged; new ROIs get numbers above the highest existing one.
    The structure set must be in the CT's frame of reference and names must not
    clash. Returns the new SOP Instance UID.
    """
    src = Path(existing_path)
    if Path(path).resolve() == src.resolve():
        raise DicomError(
            f"add_to_rtstruct writes a new file; {str(path)!r} is the input: choose another path"
        )
    old = read_dataset(src, what="RTSTRUCT")
    require_modality(old, "RTSTRUCT", src)
    with malformed_as_dicom_error(f"RTSTRUCT {str(src)!r}"):
        roi_table(old)  # the ROIs to be kept must be readable
    frame = rtstruct_frame_of_reference_uid(old)
    if frame != ct.frame_of_reference_uid:
        raise DicomError(
            f"RTSTRUCT {str(src)!r} is in frame of reference {frame}, the CT in "
            f"{ct.frame_of_reference_uid}: the structures belong to another scan"
        )
    items = _structures_on(structures, ct)
    existing = {str(r.ROIName).casefold() for r in old.get("StructureSetROISequence", [])}
    clash = [s.name for s in items if s.name.casefold() in existing]
    if clash:
        raise DicomError(
            f"RTSTRUCT {str(src)!r} already has ROI(s) {', '.join(map(repr, clash))}; rename the new structures"
        )
    identity = DicomIdentity.from_dataset(old)
    ds = new_dataset(
        RT_STRUCTURE_SET_STORAGE,
        identity,
        modality="RTSTRUCT",
        series_description=series_description
        if series_description is not None
        else str(old.get("SeriesDescription", "")),
    )
    skip = set(ds.keys()) | {0x00080012, 0x00080013}
    for elem in old:
        if elem.tag.group == 0x0002 or elem.tag in skip:
            continue
        ds.add(elem)
    for name in ("StructureSetROISequence", "ROIContourSequence", "RTROIObservationsSequence"):
        if name not in ds:
            setattr(ds, name, DicomSequence())
    now = datetime.datetime.now()
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    for keyword in ("PositionReferenceIndicator", "OperatorsName"):  # Type 2, often left out
        if keyword not in ds:
            setattr(ds, keyword, "")
    numbers = [int(r.ROINumber) for r in ds.StructureSetROISequence]
    if _add_rois(ds, items, ct, max(numbers, default=0) + 1) == 0:
        raise DicomError("no non-empty structure to add")
    write_dataset(ds, path)
    return str(ds.SOPInstanceUID)
