"""The ROIs of an RT Structure Set: their table, names, kinds, references and contour points."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from lattice_plan.errors import DicomError
from lattice_plan.geometry.structure import StructureKind
from lattice_plan.io.dicom_common import (
    malformed_as_dicom_error,
    read_dataset,
    require_modality,
)

STUDY_COMPONENT_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
KIND_TAG = "lattice_plan kind "
CONTOUR_DATA_TAG = 0x30060050
PLANE_TOL_MM = 0.05  # points of one contour, and contours of one plane, agree in z within this
SPAN_TOL = 1e-3  # slab overlaps within this fraction of a slice of 0 or 1 count as 0 or 1
END_CAPS = ("half-slice", "none")

# StructureKind -> DICOM RT ROI Interpreted Type (defined terms, PS3.3 C.8.8.8).
INTERPRETED_TYPE_OF_KIND: dict[StructureKind, str] = {
    StructureKind.EXTERNAL: "EXTERNAL",
    StructureKind.GTV: "GTV",
    StructureKind.CTV: "CTV",
    StructureKind.PTV: "PTV",
    StructureKind.OAR: "ORGAN",
    StructureKind.VERTEX: "PTV",
    StructureKind.CORE: "PTV",
    StructureKind.VALLEY: "CONTROL",
    StructureKind.RING: "CONTROL",
    StructureKind.AVOIDANCE: "AVOIDANCE",
}
_KIND_OF_INTERPRETED_TYPE: dict[str, StructureKind] = {
    "EXTERNAL": StructureKind.EXTERNAL,
    "GTV": StructureKind.GTV,
    "CTV": StructureKind.CTV,
    "PTV": StructureKind.PTV,
    "AVOIDANCE": StructureKind.AVOIDANCE,
    "ORGAN": StructureKind.OAR,
}
_POINT_TYPES = {"MARKER", "ISOCENTER", "REGISTRATION"}
# CLOSEDPLANAR_XOR (PS3.3 C.8.8.6.3) states the even-odd combination that is applied anyway.
_CLOSED_TYPES = {"CLOSED_PLANAR", "CLOSEDPLANAR_XOR"}


@dataclass(frozen=True)
class RoiInfo:
    """One ROI of a structure set as listed, before rasterising.

    ``skip_reason`` is empty for ROIs that read into masks.
    """

    number: int
    name: str
    interpreted_type: str
    color: tuple[int, int, int] | None
    n_contours: int
    geometric_types: tuple[str, ...]
    kind: StructureKind
    skip_reason: str
    frame_of_reference_uid: str = ""


def _roi_kind(description: str, interpreted_type: str) -> StructureKind:
    if description.startswith(KIND_TAG):
        try:
            return StructureKind.parse(description[len(KIND_TAG) :].strip())
        except ValueError:
            pass
    return _KIND_OF_INTERPRETED_TYPE.get(interpreted_type, StructureKind.OAR)


def roi_table(ds: Dataset) -> list[tuple[RoiInfo, list[Dataset]]]:
    """Each ROI with its closed planar contour items."""
    contours_of: dict[int, Dataset] = {}
    for rc in ds.get("ROIContourSequence", []):
        contours_of[int(rc.ReferencedROINumber)] = rc
    types: dict[int, str] = {}
    for obs in ds.get("RTROIObservationsSequence", []):
        types[int(obs.ReferencedROINumber)] = str(obs.get("RTROIInterpretedType", "") or "")
    table = []
    for roi in ds.get("StructureSetROISequence", []):
        number = int(roi.ROINumber)
        name = str(roi.get("ROIName", "") or f"ROI_{number}")
        rc = contours_of.get(number)
        items = list(rc.get("ContourSequence", []) or []) if rc is not None else []
        geo = tuple(sorted({str(c.get("ContourGeometricType", "")) for c in items}))
        closed = [
            c
            for c in items
            if str(c.get("ContourGeometricType", "")) in _CLOSED_TYPES
            and contour_values(c).size >= 9
        ]
        color = None
        if rc is not None and rc.get("ROIDisplayColor") is not None:
            rgb = [int(v) for v in rc.ROIDisplayColor]
            if len(rgb) == 3 and all(0 <= v <= 255 for v in rgb):
                color = (rgb[0], rgb[1], rgb[2])
        itype = types.get(number, "")
        if itype in _POINT_TYPES or geo == ("POINT",):
            reason = f"a point ROI ({itype or 'POINT'})"
        elif not items:
            reason = "no contours"
        elif not closed:
            reason = f"no closed planar contours ({', '.join(geo)})"
        else:
            reason = ""
        info = RoiInfo(
            number=number,
            name=name,
            interpreted_type=itype,
            color=color,
            n_contours=len(items),
            geometric_types=geo,
            kind=_roi_kind(str(roi.get("ROIDescription", "") or ""), itype),
            skip_reason=reason,
            frame_of_reference_uid=str(roi.get("ReferencedFrameOfReferenceUID", "") or ""),
        )
        table.append((info, closed))
    return table


def structure_name(info: RoiInfo, used: set[str]) -> str:
    """The name a read ROI gets as a Structure: its ROI name, or ``name_<number>`` when a
    structure of that name (case-insensitive, in ``used``) exists already; adds it to ``used``."""
    name = info.name if info.name.casefold() not in used else f"{info.name}_{info.number}"
    used.add(name.casefold())
    return name


def list_rois(path: str | os.PathLike[str]) -> list[RoiInfo]:
    """The ROIs of an RTSTRUCT file: number, name, type, colour, contour count, skip reason."""
    ds = read_dataset(path, what="RTSTRUCT")
    require_modality(ds, "RTSTRUCT", path)
    with malformed_as_dicom_error(f"RTSTRUCT {str(path)!r}"):
        return [info for info, _ in roi_table(ds)]


def rtstruct_frame_of_reference_uid(ds: Dataset) -> str | None:
    """The frame of reference the structure set's contours are in."""
    for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
        if "FrameOfReferenceUID" in ref:
            return str(ref.FrameOfReferenceUID)
    for roi in ds.get("StructureSetROISequence", []):
        if "ReferencedFrameOfReferenceUID" in roi:
            return str(roi.ReferencedFrameOfReferenceUID)
    return None


def referenced_image_uids(ds: Dataset) -> set[str]:
    """SOP Instance UIDs of every image the structure set references."""
    uids: set[str] = set()
    for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in ref.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                for img in series.get("ContourImageSequence", []):
                    uids.add(str(img.ReferencedSOPInstanceUID))
    for rc in ds.get("ROIContourSequence", []):
        for c in rc.get("ContourSequence", []) or []:
            for img in c.get("ContourImageSequence", []) or []:
                uids.add(str(img.ReferencedSOPInstanceUID))
    return uids


def contour_values(c: Dataset) -> NDArray[np.float64]:
    """Contour Data as floats, parsed from the raw bytes when pydicom has not converted them.

    pydicom's per-value DS objects cost ~10 ms per contour; a real structure set
    has thousands of contours.
    """
    elem = c.get_item("ContourData")
    if elem is None:
        return np.zeros(0)
    raw = elem.value
    if isinstance(raw, bytes):
        text = raw.decode("ascii", errors="strict").replace("\\", " ")
        return np.array(text.split(), dtype=float)
    if raw is None:
        return np.zeros(0)
    if isinstance(raw, str | float | int):
        return np.array([float(raw)])
    return np.asarray([float(v) for v in raw], dtype=float)


def contour_points(c: Dataset, name: str) -> NDArray[np.float64]:
    """The (n, 3) LPS points (mm) of one contour item; ``name`` names its ROI in errors."""
    data = contour_values(c)
    n_points = c.get("NumberOfContourPoints")
    if data.size % 3 or (n_points is not None and int(n_points) * 3 != data.size):
        raise DicomError(
            f"ROI {name!r}: a contour has {data.size} coordinates for {n_points} points; the "
            "file is truncated or corrupt: export it again"
        )
    return data.reshape(-1, 3)
