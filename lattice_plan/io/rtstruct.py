"""RT Structure Sets in and out.

Reading (:func:`read_rtstruct`): every ROI with closed planar contours becomes a
mask on a target grid, the CT grid or any other axial grid (e.g. the RTDOSE
grid when the CT is incomplete). Per slice the contours combine by the even-odd
rule, so holes (an inner contour inside an outer one) and several islands work;
a voxel is inside when its centre is. Along the slice normal each contour
plane stands for the slab half way to its neighbouring planes (the ROI's own
contour pitch); at an end of the structure (no plane within 1.5 pitches) the
slab reaches half a pitch beyond the last contour (``end_cap="half-slice"``,
the default, as in dicompyler-core and Nelms et al. 2015) or stops at it
(``end_cap="none"``, the convention of planning systems that report
trapezoid-rule volumes; a lone contour keeps half a pitch each way). A grid slice takes the
contours of the nearest plane whose slab it overlaps, so structures drawn on a
CT can be rasterised on a dose grid with another slice spacing; a slice the
slabs cover only partly records the covered part (``Structure.slice_span``), so
volumes and DVHs count only that part. ROIs with no contours and POINT/MARKER
ROIs are listed in one :class:`DicomWarning` and skipped.

Writing (:func:`write_rtstruct`, :func:`add_to_rtstruct`): contours are the 0.5
iso-lines of each mask slice (marching squares, by contourpy), with collinear
points removed; they pass half way between inside and outside voxel centres,
so reading them back gives the same voxels. Each structure's kind becomes the
RT ROI Interpreted Type, and is kept in the ROI description so that our reader
restores it. Coordinates are written as decimal strings of at most 16
characters.
"""

from __future__ import annotations

import datetime
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.io.ct import CTSeries, read_ct, write_ct_series
from lattice_plan.io.dicom_common import (
    CT_IMAGE_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    DicomIdentity,
    DicomWarning,
    malformed_as_dicom_error,
    new_dataset,
    read_dataset,
    require_modality,
    write_dataset,
)
from lattice_plan.io.listing import list_dicom_folder

log = logging.getLogger(__name__)

STUDY_COMPONENT_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
KIND_TAG = "lattice_plan kind "
_CONTOUR_DATA_TAG = 0x30060050
_PLANE_TOL_MM = 0.05  # points of one contour, and contours of one plane, agree in z within this
_SPAN_TOL = 1e-3  # slab overlaps within this fraction of a slice of 0 or 1 count as 0 or 1
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


def _roi_kind(description: str, interpreted_type: str) -> StructureKind:
    if description.startswith(KIND_TAG):
        try:
            return StructureKind.parse(description[len(KIND_TAG) :].strip())
        except ValueError:
            pass
    return _KIND_OF_INTERPRETED_TYPE.get(interpreted_type, StructureKind.OAR)


def _roi_table(ds: Dataset) -> list[tuple[RoiInfo, list[Dataset]]]:
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
            and _contour_values(c).size >= 9
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
        return [info for info, _ in _roi_table(ds)]


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


def _contour_values(c: Dataset) -> NDArray[np.float64]:
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


def _contour_points(c: Dataset, name: str) -> NDArray[np.float64]:
    data = _contour_values(c)
    n_points = c.get("NumberOfContourPoints")
    if data.size % 3 or (n_points is not None and int(n_points) * 3 != data.size):
        raise DicomError(
            f"ROI {name!r}: a contour has {data.size} coordinates for {n_points} points; the "
            "file is truncated or corrupt: export it again"
        )
    return data.reshape(-1, 3)


def _plane_pitch_mm(ds: Dataset, normal: NDArray[np.float64]) -> float | None:
    """The contour-plane pitch of the whole structure set (median gap between planes)."""
    planes = set()
    for rc in ds.get("ROIContourSequence", []):
        for c in rc.get("ContourSequence", []) or []:
            data = _contour_values(c)
            if len(data) >= 3:
                planes.add(round(float(np.dot(data[:3], normal)), 2))
    if len(planes) < 2:
        return None
    gaps = np.diff(sorted(planes))
    return float(np.median(gaps))


def _rasterise_slice(polygons: list[NDArray[np.float64]], nj: int, ni: int) -> NDArray[np.bool_]:
    """Even-odd fill of polygons given in (i, j) voxel coordinates; voxel-centre rule.

    Scanline parity: a voxel centre (i, j) is inside when the edges of all the
    slice's polygons cross row j left of i an odd number of times. Each edge
    counts for the rows ``min(y) <= j < max(y)`` (half open, so a vertex on a row
    is counted once).
    """
    diff = np.zeros((nj, ni + 1), dtype=np.int32)
    for poly in polygons:
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        sloped = y0 != y1
        x0, y0, x1, y1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
        j_lo = np.maximum(np.ceil(np.minimum(y0, y1)), 0).astype(np.int64)
        j_hi = np.minimum(np.ceil(np.maximum(y0, y1)), nj).astype(np.int64)
        counts = np.maximum(j_hi - j_lo, 0)
        if not counts.any():
            continue
        edge = np.repeat(np.arange(len(counts)), counts)
        j = j_lo[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(counts) - counts, counts))
        x = x0[edge] + (j - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
        first_after = np.clip(np.floor(x).astype(np.int64) + 1, 0, ni)
        np.add.at(diff, (j, first_after), 1)
    return (np.cumsum(diff[:, :ni], axis=1) & 1).astype(bool)


def _plane_slabs_k(
    plane_k: NDArray[np.float64], pitch_k: float, end_cap: str
) -> NDArray[np.float64]:
    """The (lo, hi) slab along k (grid voxel units) that each contour plane stands for.

    A slab reaches half way to a neighbouring plane; where there is none within
    1.5 pitches (an end, or a gap of missing contours) it reaches half a pitch
    beyond the plane (``"half-slice"``) or stops at it (``"none"``). A plane with
    no neighbour on either side keeps half a pitch each way under both
    conventions (a single contour has no length of its own to stop at).
    """
    gaps = np.diff(plane_k)
    joined = gaps <= 1.5 * pitch_k
    joined_below = np.concatenate([[False], joined])
    joined_above = np.concatenate([joined, [False]])
    half = 0.5 * pitch_k
    isolated = ~joined_below & ~joined_above
    end = np.where(isolated | (end_cap == "half-slice"), half, 0.0)
    below = np.where(joined_below, 0.5 * np.concatenate([[0.0], gaps]), end)
    above = np.where(joined_above, 0.5 * np.concatenate([gaps, [0.0]]), end)
    return np.stack([plane_k - below, plane_k + above], axis=1)


def _roi_mask(
    contours: list[Dataset], grid: Grid, pitch_mm: float, name: str, end_cap: str
) -> tuple[NDArray[np.bool_], NDArray[np.float64] | None]:
    """The ROI's mask on ``grid`` and its slice spans (None when every filled slice is whole)."""
    nk, nj, ni = grid.shape
    dk = grid.spacing_mm[0]
    polygons: list[tuple[float, NDArray[np.float64]]] = []
    for c in contours:
        ijk = grid.continuous_ijk(_contour_points(c, name))
        k_span = float(ijk[:, 2].max() - ijk[:, 2].min()) * dk
        if k_span > _PLANE_TOL_MM:
            raise DicomError(
                f"ROI {name!r}: a contour spans {k_span:.2f} mm across the grid's slices; its "
                "plane is not parallel to the grid slices (non-axial contours or an oblique "
                "grid): rasterise on an axial grid"
            )
        polygons.append((float(ijk[:, 2].mean()), ijk[:, :2]))
    mask = np.zeros(grid.shape, dtype=bool)
    if not polygons:
        return mask, None
    # Contours within _PLANE_TOL_MM of each other share a plane (z written with rounding noise).
    polygons.sort(key=lambda item: item[0])
    plane_k: list[float] = []
    plane_polys: list[list[NDArray[np.float64]]] = []
    for k_c, poly in polygons:
        if plane_k and (k_c - plane_k[-1]) * dk <= _PLANE_TOL_MM:
            plane_polys[-1].append(poly)
        else:
            plane_k.append(k_c)
            plane_polys.append([poly])
    planes = np.array(plane_k)
    # The ROI's own contour pitch when it has enough planes to tell (a ROI drawn on every
    # second CT slice stands for slabs of two slices), else the structure set's.
    if len(planes) >= 3:
        pitch_mm = float(np.median(np.diff(planes))) * dk
    slabs = _plane_slabs_k(planes, pitch_mm / dk, end_cap)
    span = np.tile([-0.5, 0.5], (nk, 1))
    first = max(int(np.floor(slabs[0, 0] + 0.5)), 0)
    last = min(int(np.ceil(slabs[-1, 1] - 0.5)), nk - 1)
    for k in range(first, last + 1):
        # Overlap of each plane's slab with slice k, in voxel units about the slice centre.
        lo = np.maximum(slabs[:, 0] - k, -0.5)
        hi = np.minimum(slabs[:, 1] - k, 0.5)
        overlapping = np.flatnonzero(hi - lo > _SPAN_TOL)
        if len(overlapping) == 0:
            continue
        n = overlapping[np.argmin(np.abs(planes[overlapping] - k))]
        mask[k] = _rasterise_slice(plane_polys[n], nj, ni)
        # The slabs are disjoint: the slice is filled over their summed length, placed at
        # their centroid (a gap between two slabs inside one coarse slice is not filled).
        length = hi[overlapping] - lo[overlapping]
        total = float(length.sum())
        centre = float(length @ (0.5 * (lo[overlapping] + hi[overlapping]))) / total
        span[k] = centre - 0.5 * total, centre + 0.5 * total
    span[span[:, 0] < -0.5 + _SPAN_TOL, 0] = -0.5
    span[span[:, 1] > 0.5 - _SPAN_TOL, 1] = 0.5
    filled = mask.any(axis=(1, 2))
    return mask, (None if np.all(span[filled] == (-0.5, 0.5)) else span)


def _require_end_cap(end_cap: str) -> None:
    if end_cap not in END_CAPS:
        raise DicomError(
            f"unknown end cap {end_cap!r}: use one of {', '.join(map(repr, END_CAPS))} (how far a "
            "structure reaches beyond its first and last contour)"
        )


def read_rtstruct(
    path: str | os.PathLike[str],
    target: Grid | CTSeries | Patient,
    *,
    roi_names: Sequence[str] | None = None,
    frame_of_reference_uid: str | None = None,
    end_cap: str = "half-slice",
) -> StructureSet:
    """Read an RTSTRUCT's ROIs as masks on ``target``'s grid.

    ``target`` is the CT read with :func:`~lattice_plan.io.ct.read_ct` (then the
    frame of reference and the referenced slices are checked), a
    :class:`Patient` (frame of reference checked when its ``dicom_uids`` has
    one), or any axial :class:`Grid` (checked against ``frame_of_reference_uid``
    when given), e.g. an RTDOSE grid. ``roi_names`` restricts the ROIs read
    (case-insensitive; an unknown name is an error). ROIs that cannot give a mask
    are skipped with one :class:`DicomWarning`. ``end_cap`` is how far a
    structure reaches beyond its first and last contour planes: ``"half-slice"``
    (half the contour pitch) or ``"none"`` (see the module docstring).
    """
    _require_end_cap(end_cap)
    ds = read_dataset(path, what="RTSTRUCT")
    require_modality(ds, "RTSTRUCT", path)
    where = f"RTSTRUCT {str(path)!r}"
    with malformed_as_dicom_error(where):
        structures, skipped = _structures_from(
            ds, where, target, roi_names, frame_of_reference_uid, end_cap
        )
    if skipped:
        warnings.warn(
            f"{where}: skipped {len(skipped)} ROI(s) that give no mask: {', '.join(skipped)}",
            DicomWarning,
            stacklevel=2,
        )
    return structures


def _structures_from(
    ds: Dataset,
    where: str,
    target: Grid | CTSeries | Patient,
    roi_names: Sequence[str] | None,
    frame_of_reference_uid: str | None,
    end_cap: str,
) -> tuple[StructureSet, list[str]]:
    ss_frame = rtstruct_frame_of_reference_uid(ds)
    if isinstance(target, CTSeries):
        grid = target.grid
        frame_of_reference_uid = frame_of_reference_uid or target.frame_of_reference_uid
        _check_ct_references(ds, target, where)
    elif isinstance(target, Patient):
        grid = target.grid
        frame_of_reference_uid = frame_of_reference_uid or target.dicom_uids.get(
            "FrameOfReferenceUID"
        )
    elif isinstance(target, Grid):
        grid = target
    else:
        raise DicomError(
            f"read_rtstruct target must be a Grid, CTSeries or Patient, got {type(target).__name__}"
        )
    if frame_of_reference_uid and ss_frame and ss_frame != frame_of_reference_uid:
        raise DicomError(
            f"{where} is in frame of reference {ss_frame}, but the target image is in "
            f"{frame_of_reference_uid}: the structures belong to another scan; give the "
            "matching CT (or register and resample first)"
        )
    if abs(abs(grid.direction[2, 2]) - 1.0) > 1e-4:
        raise DicomError(f"{where}: the target grid is not axial; rasterise on an axial grid")
    normal = grid.direction[:, 2]
    pitch = _plane_pitch_mm(ds, normal) or grid.spacing_mm[0]
    table = _roi_table(ds)
    wanted = None
    if roi_names is not None:
        wanted = {n.casefold() for n in roi_names}
        known = {info.name.casefold() for info, _ in table}
        unknown = sorted(n for n in roi_names if n.casefold() not in known)
        if unknown:
            raise DicomError(
                f"{where} has no ROI named {', '.join(map(repr, unknown))}; it holds: "
                f"{', '.join(info.name for info, _ in table)}"
            )
    structures: list[Structure] = []
    skipped: list[str] = []
    used: set[str] = set()
    for info, contours in table:
        if wanted is not None and info.name.casefold() not in wanted:
            continue
        if info.skip_reason:
            skipped.append(f"{info.name} ({info.skip_reason})")
            continue
        mask, span = _roi_mask(contours, grid, pitch, info.name, end_cap)
        if not mask.any():
            log.warning(
                "%s: ROI %r lies outside the target grid; its mask is empty", where, info.name
            )
        name = structure_name(info, used)
        if name != info.name:
            log.warning("%s: duplicate ROI name %r renamed %r", where, info.name, name)
        structures.append(Structure(name, mask, grid, info.kind, info.color, span))
    return StructureSet(tuple(structures), grid), skipped


def _referenced_series_uids(ds: Dataset) -> set[str]:
    return {
        str(series.SeriesInstanceUID)
        for ref in ds.get("ReferencedFrameOfReferenceSequence", [])
        for study in ref.get("RTReferencedStudySequence", [])
        for series in study.get("RTReferencedSeriesSequence", [])
        if "SeriesInstanceUID" in series
    }


def _check_ct_references(ds: Dataset, ct: CTSeries, where: str) -> None:
    """Refuse a structure set drawn on this CT series when some of its slices are absent.

    A structure set drawn on another series of the same frame of reference (a
    re-export, a registered scan) is rasterised on this CT without complaint:
    the contours are in patient coordinates.
    """
    referenced = referenced_image_uids(ds)
    series = _referenced_series_uids(ds)
    if not referenced or (series and ct.series_instance_uid not in series):
        if series:
            log.info(
                "%s was drawn on series %s; rasterising on CT series %s of the same frame",
                where,
                ", ".join(sorted(series)),
                ct.series_instance_uid,
            )
        return
    present = set(ct.slice_sop_instance_uids)
    missing = referenced - present
    if missing:
        raise DicomError(
            f"{where} references {len(referenced)} CT slices but {len(missing)} of them are not "
            f"in the CT series read ({len(present)} slice(s), {ct.series_instance_uid}): the CT "
            "export is incomplete. Export the whole CT series, or rasterise the structures on "
            "another grid that covers them, e.g. read_rtstruct(path, read_rtdose(dose_path).grid)"
        )


# ---------------------------------------------------------------------------------- writing
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
        BaseTag(_CONTOUR_DATA_TAG), "DS", len(text), text.encode("ascii"), 0, False, True
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
            item[_CONTOUR_DATA_TAG] = _contour_data_element(grid.points_lps_mm(ijk))
            # Declare the item already explicit VR little endian, so pydicom writes the encoded
            # Contour Data as it is instead of decoding and re-encoding every value.
            item.set_original_encoding(False, True, default_encoding)
            contours.append(item)
    if not contours:
        return None
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = ct.frame_of_reference_uid
    roi.ROIName = structure.name[:64]
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


def _structures_on(structures: StructureSet | Iterable[Structure], ct: CTSeries) -> list[Structure]:
    items = list(structures)
    for s in items:
        ct.grid.require_same(s.grid, f"structure {s.name!r}")
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
        _roi_table(old)  # the ROIs to be kept must be readable
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


def read_patient(
    ct_folder: str | os.PathLike[str],
    rtstruct_path: str | os.PathLike[str] | None = None,
    *,
    series_uid: str | None = None,
    slice_thickness_mm: float | None = None,
    roi_names: Sequence[str] | None = None,
) -> Patient:
    """A :class:`Patient` from a CT series and its structure set.

    Without ``rtstruct_path`` the RTSTRUCT is looked for in ``ct_folder`` (and its
    subfolders): the one in the CT's frame of reference; none gives a patient
    without structures, several are an error that lists them.
    """
    ct = read_ct(ct_folder, series_uid, slice_thickness_mm)
    if rtstruct_path is None:
        listing = list_dicom_folder(ct_folder)
        candidates = [
            o.path
            for o in listing.of_modality("RTSTRUCT")
            if o.frame_of_reference_uid == ct.frame_of_reference_uid
        ]
        if len(candidates) > 1:
            raise DicomError(
                f"{str(ct_folder)!r} holds {len(candidates)} structure sets for this CT "
                f"({', '.join(p.name for p in candidates)}); pass rtstruct_path= to choose one"
            )
        if not candidates:
            log.info("no RTSTRUCT for CT %s in %s", ct.series_instance_uid, ct_folder)
            return ct.to_patient()
        rtstruct_path = candidates[0]
    structures = read_rtstruct(rtstruct_path, ct, roi_names=roi_names)
    return ct.to_patient(structures)


@dataclass(frozen=True)
class WrittenPatient:
    """What :func:`write_patient` wrote: the CT series and the structure set's path and UID."""

    ct: CTSeries
    rtstruct_path: Path | None
    rtstruct_uid: str | None


def write_patient(
    patient: Patient,
    folder: str | os.PathLike[str],
    *,
    series_description: str = "lattice_plan CT",
    label: str = "lattice_plan",
) -> WrittenPatient:
    """Write ``patient`` as a CT series plus (when it has non-empty structures) ``RS.dcm``.

    Both go into ``folder``, in the patient's study and frame of reference (see
    :func:`~lattice_plan.io.ct.identity_for`); :func:`read_patient` reads them back.
    """
    ct = write_ct_series(patient, folder, series_description=series_description)
    structures = [s for s in patient.structures if not s.is_empty]
    if not structures:
        return WrittenPatient(ct, None, None)
    path = Path(folder) / "RS.dcm"
    uid = write_rtstruct(structures, ct, path, label=label)
    return WrittenPatient(ct, path, uid)


__all__ = [
    "INTERPRETED_TYPE_OF_KIND",
    "RoiInfo",
    "WrittenPatient",
    "add_to_rtstruct",
    "list_rois",
    "mask_slice_contours",
    "read_patient",
    "read_rtstruct",
    "referenced_image_uids",
    "rtstruct_frame_of_reference_uid",
    "write_patient",
    "write_rtstruct",
]
