"""A patient (CT series and structures) read from and written to DICOM files."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lattice_plan.errors import DicomError
from lattice_plan.geometry.patient import Patient
from lattice_plan.io.ct import CTSeries, read_ct, write_ct_series
from lattice_plan.io.listing import list_dicom_folder
from lattice_plan.io.rtstruct.read import read_rtstruct
from lattice_plan.io.rtstruct.write import write_rtstruct

log = logging.getLogger(__name__)


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
