"""Reading RT Structure Sets: contours to masks on a target grid (see the package docstring)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from lattice_plan.errors import DicomError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import Structure, StructureSet
from lattice_plan.io.ct import CTSeries
from lattice_plan.io.dicom_common import (
    DicomWarning,
    malformed_as_dicom_error,
    read_dataset,
    require_modality,
)
from lattice_plan.io.rtstruct.rois import (
    END_CAPS,
    PLANE_TOL_MM,
    SPAN_TOL,
    RoiInfo,
    contour_points,
    contour_values,
    referenced_image_uids,
    roi_table,
    rtstruct_frame_of_reference_uid,
    structure_name,
)

log = logging.getLogger(__name__)


def _plane_pitch_mm(ds: Dataset, normal: NDArray[np.float64]) -> float | None:
    """The contour-plane pitch of the whole structure set (median gap between planes)."""
    planes = set()
    for rc in ds.get("ROIContourSequence", []):
        for c in rc.get("ContourSequence", []) or []:
            data = contour_values(c)
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
        ijk = grid.continuous_ijk(contour_points(c, name))
        k_span = float(ijk[:, 2].max() - ijk[:, 2].min()) * dk
        if k_span > PLANE_TOL_MM:
            raise DicomError(
                f"ROI {name!r}: a contour spans {k_span:.2f} mm across the grid's slices; its "
                "plane is not parallel to the grid slices (non-axial contours or an oblique "
                "grid): rasterise on an axial grid"
            )
        polygons.append((float(ijk[:, 2].mean()), ijk[:, :2]))
    mask = np.zeros(grid.shape, dtype=bool)
    if not polygons:
        return mask, None
    # Contours within PLANE_TOL_MM of each other share a plane (z written with rounding noise).
    polygons.sort(key=lambda item: item[0])
    plane_k: list[float] = []
    plane_polys: list[list[NDArray[np.float64]]] = []
    for k_c, poly in polygons:
        if plane_k and (k_c - plane_k[-1]) * dk <= PLANE_TOL_MM:
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
        overlapping = np.flatnonzero(hi - lo > SPAN_TOL)
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
    span[span[:, 0] < -0.5 + SPAN_TOL, 0] = -0.5
    span[span[:, 1] > 0.5 - SPAN_TOL, 1] = 0.5
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
    table = roi_table(ds)
    wanted = None if roi_names is None else _matching_names(roi_names, table, where)
    structures: list[Structure] = []
    skipped: list[str] = []
    used: set[str] = set()
    for info, contours in table:
        if wanted is not None and info.name not in wanted:
            continue
        if info.skip_reason:
            skipped.append(f"{info.name} ({info.skip_reason})")
            continue
        if frame_of_reference_uid and info.frame_of_reference_uid not in (
            "",
            frame_of_reference_uid,
        ):
            raise DicomError(
                f"{where}: ROI {info.name!r} is in frame of reference "
                f"{info.frame_of_reference_uid}, the image in {frame_of_reference_uid}: it "
                "belongs to another scan; remove it from the structure set or leave it unread"
            )
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


def _matching_names(
    roi_names: Sequence[str], table: list[tuple[RoiInfo, list[Dataset]]], where: str
) -> set[str]:
    """The ROI names ``roi_names`` ask for: each name exactly where an ROI has it, otherwise
    every ROI whose name differs only in case."""
    present = [info.name for info, _ in table]
    wanted: set[str] = set()
    unknown = []
    for n in roi_names:
        matches = [n] if n in present else [m for m in present if m.casefold() == n.casefold()]
        if not matches:
            unknown.append(n)
        wanted.update(matches)
    if unknown:
        raise DicomError(
            f"{where} has no ROI named {', '.join(map(repr, sorted(unknown)))}; it holds: "
            f"{', '.join(present)}"
        )
    return wanted


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
