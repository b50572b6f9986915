"""What every DICOM reader and writer of the package shares.

- :func:`read_dataset`: one file in, a pydicom Dataset out, or a :class:`DicomError`
  that names the file and says why (missing, not DICOM, truncated).
- :class:`DicomIdentity`: the patient, study and frame of reference that every
  object written for one patient must share; fresh series and instance UIDs are
  made per object.
- :func:`new_dataset` / :func:`write_dataset`: a dataset with the file meta,
  SOP common, patient, study, series and equipment modules filled in, written
  atomically (temporary name, then rename).
- :func:`format_ds`: numbers as DICOM decimal strings of at most 16 characters.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import ArrayLike
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from lattice_plan import __version__
from lattice_plan.errors import DicomError, InputFileError, LatticePlanError
from lattice_plan.files import atomic_output_path

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
MANUFACTURER = "lattice_plan"
SOFTWARE_VERSION = __version__

_MODALITY_OF_SOP_CLASS = {
    CT_IMAGE_STORAGE: "CT",
    RT_DOSE_STORAGE: "RTDOSE",
    RT_STRUCTURE_SET_STORAGE: "RTSTRUCT",
    RT_PLAN_STORAGE: "RTPLAN",
}


class DicomWarning(UserWarning):
    """Something in a DICOM input was skipped or guessed; the result is still usable."""


def format_ds(value: float, max_chars: int = 16) -> str:
    """``value`` as a DICOM Decimal String of at most ``max_chars`` characters.

    Uses the most significant digits that fit (DICOM DS allows 16 characters),
    so 1/3 becomes '0.33333333333333' and -123.456789012345678 '-123.45678901235'.
    """
    v = float(value)
    if not np.isfinite(v):
        raise DicomError(f"cannot write {value!r} as a DICOM decimal string: not finite")
    if v == 0.0:
        return "0"
    for digits in range(max_chars, 0, -1):
        text = f"{v:.{digits}g}"
        if "e" in text:
            mant, exp = text.split("e")
            text = f"{mant}e{int(exp)}"
        if len(text) <= max_chars:
            return text
    raise DicomError(f"cannot write {value!r} in {max_chars} characters")


def format_ds_list(values: ArrayLike, max_chars: int = 16) -> list[str]:
    """A sequence of numbers as DICOM decimal strings (see :func:`format_ds`)."""
    return [format_ds(v, max_chars) for v in np.asarray(values, dtype=float).ravel()]


def read_dataset(
    path: str | os.PathLike[str], *, header_only: bool = False, what: str = "DICOM file"
) -> Dataset:
    """Read one DICOM file; a clear :class:`DicomError` if it is not DICOM or is truncated.

    ``header_only`` skips the pixel data (fast listing); the full read checks that
    the pixel data is complete.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} {str(p)!r} does not exist; check the path")
    if p.is_dir():
        raise InputFileError(f"{what} {str(p)!r} is a folder; give the path of one file")
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=header_only)
    except InvalidDicomError:
        raise DicomError(
            f"{str(p)!r} is not a DICOM file (no DICM preamble or readable header); "
            f"give a DICOM {what}"
        ) from None
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DicomError(
            f"{str(p)!r} could not be read as DICOM ({type(exc).__name__}: {exc}); the file "
            "is probably truncated or corrupt: export it again"
        ) from None
    if "SOPClassUID" not in ds:
        raise DicomError(
            f"{str(p)!r} has no SOP Class UID, so it is not a DICOM object this tool can read"
        )
    if not header_only and ds.get("PixelData") is not None:
        expected = _expected_pixel_bytes(ds)
        actual = len(ds.PixelData)
        if expected is not None and actual < expected:
            raise DicomError(
                f"{str(p)!r}: pixel data holds {actual} bytes but the header needs {expected}; "
                "the file is truncated: export it again"
            )
    return ds


def _expected_pixel_bytes(ds: Dataset) -> int | None:
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            return None
    except AttributeError:
        pass
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return (
            int(ds.Rows)
            * int(ds.Columns)
            * frames
            * int(ds.get("SamplesPerPixel", 1))
            * (int(ds.BitsAllocated) // 8)
        )
    except (AttributeError, TypeError, ValueError):
        return None


@contextlib.contextmanager
def malformed_as_dicom_error(where: str) -> Iterator[None]:
    """Turn a missing or malformed element met while interpreting ``where`` into a DicomError.

    pydicom reads a file cut inside a sequence without complaint; what is missing
    then shows up as an absent element when the object is interpreted.
    """
    try:
        yield
    except LatticePlanError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise DicomError(
            f"{where} is incomplete or malformed ({type(exc).__name__}: {exc}); the file may be "
            "truncated or not follow the standard: export it again"
        ) from None


def decimal_value(ds: Dataset, keyword: str) -> float | None:
    """The number a single-valued decimal string (DS) element holds, read from its text without
    pydicom's value checks (so NaN or junk gives NaN, not a warning); None when absent or empty."""
    if keyword not in ds:
        return None
    value = ds.get_item(keyword).value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    text = text.strip("\0 ")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return float("nan")


def modality_of(ds: Dataset) -> str:
    """'CT', 'RTSTRUCT', 'RTDOSE', 'RTPLAN' from the SOP class, else the Modality tag."""
    return _MODALITY_OF_SOP_CLASS.get(str(ds.get("SOPClassUID", "")), str(ds.get("Modality", "")))


def require_modality(ds: Dataset, modality: str, path: str | os.PathLike[str]) -> None:
    """Raise a DicomError unless ``ds`` is the expected kind of object."""
    found = modality_of(ds)
    if found != modality:
        raise DicomError(
            f"{str(path)!r} is a {found or 'non-RT'} object, not an {modality}; give the {modality} file"
        )


@dataclass(frozen=True)
class DicomIdentity:
    """Patient, study and frame of reference shared by every object written for one patient.

    Build it from a CT that was read (:meth:`from_dataset`) so outputs join that
    study, or :meth:`new` for a synthetic patient (fresh study and frame UIDs).
    """

    patient_id: str
    patient_name: str
    study_instance_uid: str
    frame_of_reference_uid: str
    study_id: str = "1"
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    patient_position: str = "HFS"

    def __post_init__(self) -> None:
        for name in ("study_instance_uid", "frame_of_reference_uid"):
            uid = getattr(self, name)
            if not isinstance(uid, str) or not _is_valid_uid(uid):
                raise DicomError(f"DicomIdentity {name} {uid!r} is not a valid DICOM UID")
        if not str(self.patient_id).strip():
            raise DicomError("DicomIdentity patient_id must not be empty")

    @classmethod
    def new(
        cls,
        patient_id: str,
        patient_name: str,
        study_description: str = "",
        patient_position: str = "HFS",
    ) -> DicomIdentity:
        """A new study and frame of reference for a patient with no DICOM history."""
        now = datetime.datetime.now()
        return cls(
            patient_id=patient_id,
            patient_name=patient_name,
            study_instance_uid=generate_uid(),
            frame_of_reference_uid=generate_uid(),
            study_date=now.strftime("%Y%m%d"),
            study_time=now.strftime("%H%M%S"),
            study_description=study_description[:64],
            patient_position=patient_position,
        )

    @classmethod
    def from_dataset(cls, ds: Dataset) -> DicomIdentity:
        """The identity of an existing object (CT slice, RTSTRUCT, ...)."""
        frame = ds.get("FrameOfReferenceUID")
        if frame is None and "ReferencedFrameOfReferenceSequence" in ds:
            frame = ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
        if frame is None:
            raise DicomError(
                "the DICOM object has no Frame of Reference UID; it cannot anchor RT objects"
            )
        return cls(
            patient_id=str(ds.get("PatientID", "")) or "ANON",
            patient_name=str(ds.get("PatientName", "")),
            study_instance_uid=str(ds.StudyInstanceUID),
            frame_of_reference_uid=str(frame),
            study_id=str(ds.get("StudyID", "")) or "1",
            study_date=str(ds.get("StudyDate", "")),
            study_time=str(ds.get("StudyTime", "")),
            study_description=str(ds.get("StudyDescription", "")),
            accession_number=str(ds.get("AccessionNumber", "")),
            referring_physician_name=str(ds.get("ReferringPhysicianName", "")),
            patient_birth_date=str(ds.get("PatientBirthDate", "")),
            patient_sex=str(ds.get("PatientSex", "")),
            patient_position=str(ds.get("PatientPosition", "")) or "HFS",
        )

    def as_uid_dict(self) -> dict[str, str]:
        """The UIDs as :class:`~lattice_plan.geometry.Patient` ``dicom_uids`` keys."""
        return {
            "StudyInstanceUID": self.study_instance_uid,
            "FrameOfReferenceUID": self.frame_of_reference_uid,
        }


def _is_valid_uid(uid: str) -> bool:
    if not 0 < len(uid) <= 64:
        return False
    parts = uid.split(".")
    return all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts)


def new_dataset(
    sop_class_uid: str,
    identity: DicomIdentity,
    *,
    modality: str,
    series_instance_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "",
    sop_instance_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """A dataset with file meta, SOP common, patient, study, series and equipment modules."""
    now = datetime.datetime.now()
    sop_uid = sop_instance_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"LATTICE_PLAN_{SOFTWARE_VERSION}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = identity.study_date
    ds.StudyTime = identity.study_time
    ds.AccessionNumber = identity.accession_number
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = identity.referring_physician_name
    ds.StudyDescription = identity.study_description
    ds.SeriesDescription = series_description[:64]
    ds.ManufacturerModelName = MANUFACTURER
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.patient_birth_date
    ds.PatientSex = identity.patient_sex
    ds.SoftwareVersions = SOFTWARE_VERSION
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.StudyID = identity.study_id[:16]
    ds.SeriesNumber = int(series_number)
    ds.InstanceNumber = int(instance_number)
    ds.SeriesDate = now.strftime("%Y%m%d")
    ds.SeriesTime = now.strftime("%H%M%S")
    return ds


def write_dataset(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as a DICOM Part 10 file atomically; returns the path written."""
    target = Path(path)
    if not target.parent.exists():
        raise InputFileError(
            f"cannot write {str(target)!r}: folder {str(target.parent)!r} does not exist"
        )
    with atomic_output_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    log.debug("wrote %s", target)
    return target
