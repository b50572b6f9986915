"""Using rt-utils 1.2.7 safely with our CT series and structure sets.

rt-utils turns masks into contours and back with OpenCV; lattice_plan's own
reader and writer (:mod:`lattice_plan.io.rtstruct`) do not depend on it, but
users' scripts do. Version 1.2.7 has faults that these helpers work around:

1. ``RTStructBuilder.create_from(..., warn_only=True)`` raises ``NameError``
   (``warnings`` is used but never imported). :func:`load_rt_utils` checks the
   references itself and warns with :class:`DicomWarning`.
2. ``get_roi_mask_by_name`` crashes on an ROI without contour data (an empty
   ROI, or a POINT/MARKER ROI with no ROI Contour item). :func:`rt_utils_mask`
   returns None with a warning.
3. ``load_sorted_image_series`` takes every file with pixel data as an image
   (an RTDOSE in the CT folder becomes a "slice"). :func:`load_rt_utils` hands
   rt-utils exactly the slices of a :class:`~lattice_plan.io.ct.CTSeries`.
4. ``add_roi`` writes Contour Data from float32 arithmetic as Python floats,
   whose decimal strings exceed the 16 characters DICOM allows, and leaves out
   Type 2 attributes and the Frame of Reference module; dciodvfy reports both as
   errors. :func:`save_rt_utils` rewrites the values within 16 characters, adds
   what is missing and writes atomically.
5. Its masks are sized (Columns, Rows, slices) but filled as (row, column), so
   non-square images lose part of every slice; :func:`rt_utils_mask` refuses
   non-square images rather than return a clipped mask.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from rt_utils import RTStruct
from rt_utils import ds_helper as rtu_ds_helper
from rt_utils.rtstruct_builder import RTStructBuilder

from lattice_plan.errors import DicomError
from lattice_plan.io.ct import CTSeries
from lattice_plan.io.dicom_common import (
    DicomWarning,
    format_ds,
    read_dataset,
    require_modality,
    write_dataset,
)
from lattice_plan.io.rtstruct import referenced_image_uids, rtstruct_frame_of_reference_uid

log = logging.getLogger(__name__)

# Type 2 attributes of the RT Structure Set IOD that rt-utils 1.2.7 leaves out.
_TYPE2_DEFAULTS = {
    "ReferringPhysicianName": "",
    "AccessionNumber": "",
    "OperatorsName": "",
    "PositionReferenceIndicator": "",
}


def load_rt_utils(
    ct: CTSeries, rtstruct_path: str | os.PathLike[str] | None = None, *, warn_only: bool = False
) -> RTStruct:
    """An rt-utils ``RTStruct`` on exactly the slices of ``ct``: new, or from an RTSTRUCT file.

    An RTSTRUCT in another frame of reference is refused; one that references
    images missing from ``ct`` is refused, or only warned about with
    ``warn_only=True``.
    """
    if not ct.files:
        raise DicomError("the CT series has no files on disk; write it with write_ct_series first")
    series_data = [pydicom.dcmread(f) for f in ct.files]  # sorted along the slice normal
    if rtstruct_path is None:
        with warnings.catch_warnings():
            # rt-utils sets FileDataset.is_little_endian/is_implicit_VR, deprecated in pydicom 3.
            warnings.simplefilter("ignore", DeprecationWarning)
            ds_new = rtu_ds_helper.create_rtstruct_dataset(series_data)
        return RTStruct(series_data, ds_new)
    ds = read_dataset(rtstruct_path, what="RTSTRUCT")
    require_modality(ds, "RTSTRUCT", rtstruct_path)
    where = f"RTSTRUCT {str(rtstruct_path)!r}"
    try:
        RTStructBuilder.validate_rtstruct(ds)
    except Exception as exc:  # rt-utils raises a bare Exception
        raise DicomError(f"{where} is not a structure set rt-utils can use: {exc}") from None
    frame = rtstruct_frame_of_reference_uid(ds)
    if frame != ct.frame_of_reference_uid:
        raise DicomError(
            f"{where} is in frame of reference {frame}, the CT in {ct.frame_of_reference_uid}"
        )
    missing = referenced_image_uids(ds) - set(ct.slice_sop_instance_uids)
    if missing:
        msg = f"{where} references {len(missing)} image(s) that are not in the CT series"
        if not warn_only:
            raise DicomError(msg + "; pass warn_only=True to load it anyway")
        warnings.warn(msg, DicomWarning, stacklevel=2)
    return RTStruct(series_data, ds)


def rt_utils_mask(rtstruct: RTStruct, name: str) -> NDArray[np.bool_] | None:
    """rt-utils' mask of ROI ``name`` as an array [k, j, i]; None (warned) for an ROI without contours."""
    rows = int(rtstruct.series_data[0].Rows)
    cols = int(rtstruct.series_data[0].Columns)
    if rows != cols:
        raise DicomError(
            f"rt-utils 1.2.7 masks of non-square images ({rows} x {cols}) lose part of every "
            "slice; read the ROI with lattice_plan.io.rtstruct.read_rtstruct instead"
        )
    number = None
    for roi in rtstruct.ds.StructureSetROISequence:
        if str(roi.ROIName) == name:
            number = int(roi.ROINumber)
    if number is None:
        raise DicomError(f"no ROI named {name!r}; the RTSTRUCT holds {rtstruct.get_roi_names()}")
    has_contours = any(
        int(rc.ReferencedROINumber) == number and len(rc.get("ContourSequence", []) or [])
        for rc in rtstruct.ds.get("ROIContourSequence", [])
    )
    if not has_contours:
        warnings.warn(f"ROI {name!r} has no contour data; no mask", DicomWarning, stacklevel=2)
        return None
    mask = rtstruct.get_roi_mask_by_name(name)  # (row, column, slice) for square images
    return np.ascontiguousarray(np.moveaxis(mask, 2, 0))


def _fix_contours(ds: Dataset) -> int:
    changed = 0
    for rc in ds.get("ROIContourSequence", []):
        for c in rc.get("ContourSequence", []) or []:
            values = [float(v) for v in c.ContourData]
            c.ContourData = [format_ds(round(v, 4)) for v in values]
            c.NumberOfContourPoints = len(values) // 3
            changed += 1
    return changed


def save_rt_utils(rtstruct: RTStruct, path: str | os.PathLike[str]) -> Path:
    """Write an rt-utils structure set so that it passes dciodvfy; atomic. Returns the path.

    Contour Data are rewritten within 16 characters (0.1 micrometre kept), the
    Type 2 attributes and Frame of Reference module rt-utils leaves out are
    added; the ``RTStruct`` given is not modified.
    """
    # A plain Dataset copy: rt-utils' FileDataset carries the transfer-syntax flags that
    # pydicom 3 deprecates, and the caller's RTStruct must stay as it is.
    ds = Dataset()
    for elem in copy.deepcopy(rtstruct.ds):
        ds.add(elem)
    ds.file_meta = FileMetaDataset(copy.deepcopy(rtstruct.ds.file_meta))
    n = _fix_contours(ds)
    for keyword, value in _TYPE2_DEFAULTS.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = rtstruct.frame_of_reference_uid
    for obs in ds.get("RTROIObservationsSequence", []):
        if "ROIInterpreter" not in obs:
            obs.ROIInterpreter = ""
    target = write_dataset(ds, path)
    log.info("wrote rt-utils structure set %s (%d contours rewritten)", target, n)
    return target


__all__ = ["load_rt_utils", "rt_utils_mask", "save_rt_utils"]
