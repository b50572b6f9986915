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

Modules: ``rois`` (the ROI table, names, kinds, contour points), ``read``
(contours to masks), ``write`` (masks to contours, new files, added ROIs),
``patient`` (CT + structures in and out).
"""

from lattice_plan.io.rtstruct.patient import WrittenPatient, read_patient, write_patient
from lattice_plan.io.rtstruct.read import read_rtstruct
from lattice_plan.io.rtstruct.rois import (
    END_CAPS,
    INTERPRETED_TYPE_OF_KIND,
    KIND_TAG,
    STUDY_COMPONENT_MANAGEMENT,
    RoiInfo,
    contour_points,
    list_rois,
    referenced_image_uids,
    roi_table,
    rtstruct_frame_of_reference_uid,
    structure_name,
)
from lattice_plan.io.rtstruct.write import add_to_rtstruct, mask_slice_contours, write_rtstruct

__all__ = [
    "END_CAPS",
    "INTERPRETED_TYPE_OF_KIND",
    "KIND_TAG",
    "STUDY_COMPONENT_MANAGEMENT",
    "RoiInfo",
    "WrittenPatient",
    "add_to_rtstruct",
    "contour_points",
    "list_rois",
    "mask_slice_contours",
    "read_patient",
    "read_rtstruct",
    "referenced_image_uids",
    "roi_table",
    "rtstruct_frame_of_reference_uid",
    "structure_name",
    "write_patient",
    "write_rtstruct",
]
