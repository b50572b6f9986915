"""Input and output: DICOM CT, RTSTRUCT, RTDOSE, RTPLAN; vertex tables; fluence files.

Atomic writes and two-column CSV live in the base module :mod:`lattice_plan.files`
(``io.atomic`` and ``io.two_column_csv`` re-export them).

DICOM modules (import from the submodule):

- ``io.ct``: ``read_ct`` / ``read_ct_series`` (a CT series from a folder), ``write_ct_series``,
  ``identity_for`` (the study and frame of reference a patient's outputs share).
- ``io.rtstruct``: ``read_rtstruct`` (masks on a CT or any axial grid), ``write_rtstruct``,
  ``add_to_rtstruct``, ``list_rois``, ``read_patient`` / ``write_patient`` (CT + structures).
- ``io.rtdose``: ``read_rtdose`` (a dose Volume) / ``load_rtdose`` (with its context),
  ``write_rtdose``.
- ``io.rtplan``: ``read_rtplan`` (static view), ``read_rtplan_delivery`` (every beam as
  control points, with its machine), ``write_rtplan`` (static and control-point beams);
  implemented in ``rtplan_read``, ``rtplan_delivery``, ``rtplan_write`` and ``rtplan_beams``.
  ``io.fluence_text``: optimal-fluence files.
- ``io.listing``: ``list_dicom_folder`` (what a folder holds and what references what).
- ``io.rtutils_compat``: rt-utils 1.2.7 used around its known faults (tests only: rt-utils
  and OpenCV come with the test extra, ``pip install lattice-plan[test]``).
- ``io.dicom_common``: ``DicomIdentity``, ``DicomWarning``, ``read_dataset``, ``format_ds``.
"""

__all__ = [
    "atomic",
    "ct",
    "dicom_common",
    "fluence_text",
    "listing",
    "rtdose",
    "rtplan",
    "rtstruct",
    "two_column_csv",
    "vertex_table",
]
