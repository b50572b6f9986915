"""RT Dose in and out.

:func:`read_rtdose` reads a (multi-frame) RTDOSE into a dose :class:`Volume`:
pixel values times DoseGridScaling, frames placed by GridFrameOffsetVector
(relative to the first frame when its first value is 0, absolute positions
along the slice normal otherwise), units GY (or RELATIVE, as unit "1").
:func:`load_rtdose` also gives the summation type (PLAN, BEAM, FRACTION, ...),
the referenced RTPLAN and the frame of reference.

:func:`write_rtdose` writes a dose volume as 32-bit unsigned integers with a
DoseGridScaling chosen so the largest dose uses the full range: the
quantisation step is below 1e-9 of the maximum, far inside the 0.01 %
precision asked of it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from lattice_plan.errors import DicomError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.volume import Volume
from lattice_plan.io.dicom_common import (
    RT_DOSE_STORAGE,
    RT_PLAN_STORAGE,
    DicomIdentity,
    decimal_value,
    format_ds,
    format_ds_list,
    malformed_as_dicom_error,
    new_dataset,
    read_dataset,
    require_modality,
    write_dataset,
)

log = logging.getLogger(__name__)

WRITABLE_SUMMATION_TYPES = ("PLAN", "FRACTION", "BEAM")
_UINT32_MAX = 2**32 - 1
_GRID_FRAME_OFFSET_POINTER = 0x3004000C


@dataclass(frozen=True, eq=False)
class RTDose:
    """A dose grid as read, with what it is the dose of."""

    volume: Volume
    summation_type: str
    dose_type: str
    frame_of_reference_uid: str
    referenced_rtplan_uid: str | None
    identity: DicomIdentity
    sop_instance_uid: str

    @property
    def grid(self) -> Grid:
        return self.volume.grid

    @property
    def max_gy(self) -> float:
        return float(self.volume.array.max())


def _frame_offsets(ds: Dataset, n_frames: int, where: str) -> np.ndarray:
    if n_frames == 1 and "GridFrameOffsetVector" not in ds:
        return np.zeros(1)
    if "GridFrameOffsetVector" not in ds:
        raise DicomError(f"{where}: {n_frames} frames but no Grid Frame Offset Vector")
    pointer = ds.get("FrameIncrementPointer")
    if pointer is not None and int(pointer) != _GRID_FRAME_OFFSET_POINTER:
        raise DicomError(
            f"{where}: frames are indexed by {pointer}, not the Grid Frame Offset Vector; "
            "this layout is not supported"
        )
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector], dtype=float)
    if offsets.size != n_frames:
        raise DicomError(
            f"{where}: Grid Frame Offset Vector has {offsets.size} values for {n_frames} frames"
        )
    return offsets


def load_rtdose(path: str | os.PathLike[str], *, patient_position: str = "HFS") -> RTDose:
    """Read an RTDOSE file into an :class:`RTDose` (dose volume in Gy plus its context).

    RTDOSE has no patient position of its own; give the CT's (default HFS).
    """
    ds = read_dataset(path, what="RTDOSE")
    require_modality(ds, "RTDOSE", path)
    where = f"RTDOSE {str(path)!r}"
    with malformed_as_dicom_error(where):
        return _rtdose_from(ds, where, patient_position)


def _dose_grid_scaling(ds: Dataset, where: str) -> float:
    """DoseGridScaling (Type 1 with pixel data, PS3.3 C.8.8.3): finite and positive, never guessed."""
    fix = "export the dose again from the planning system"
    scaling = decimal_value(ds, "DoseGridScaling")
    if scaling is None:
        raise DicomError(f"{where}: Dose Grid Scaling is missing, so the dose is unknown; {fix}")
    if not np.isfinite(scaling) or scaling <= 0:
        raise DicomError(f"{where}: Dose Grid Scaling is {scaling:g}, not a positive number; {fix}")
    return scaling


def _rtdose_from(ds: Dataset, where: str, patient_position: str) -> RTDose:
    if ds.get("PixelData") is None:
        raise DicomError(f"{where} holds no dose grid (it may carry DVHs only)")
    if str(ds.get("DoseType", "")).upper() == "ERROR":
        raise DicomError(
            f"{where}: Dose Type is ERROR, an uncertainty estimate and not a dose; give the "
            "RTDOSE of the dose itself (Dose Type PHYSICAL or EFFECTIVE)"
        )
    units = str(ds.get("DoseUnits", "")).upper()
    if units == "GY":
        unit = "Gy"
    elif units == "RELATIVE":
        unit = "1"
        log.warning("%s: dose is RELATIVE, read as unit '1'", where)
    else:
        raise DicomError(f"{where}: Dose Units {units!r} is not GY or RELATIVE")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    offsets = _frame_offsets(ds, n_frames, where)
    if offsets[0] != 0.0:
        # Absolute: the offsets are positions along the normal; the first equals the origin's.
        if abs(offsets[0] - ipp @ normal) > 0.01:
            raise DicomError(
                f"{where}: Grid Frame Offset Vector starts at {offsets[0]} mm, neither 0 "
                f"(relative) nor the first frame's position {ipp @ normal:.3f} mm (absolute)"
            )
        offsets = offsets - offsets[0]
    if n_frames > 1:
        gaps = np.diff(offsets)
        dk = float(np.mean(gaps))
        if np.any(np.abs(gaps - dk) > max(1e-3 * abs(dk), 1e-3)) or dk == 0:
            raise DicomError(
                f"{where}: frames are not evenly spaced (offsets {np.round(offsets[:6], 3).tolist()}...); "
                "resample the dose to a regular grid"
            )
    else:
        dk = float(ds.get("SliceThickness") or 1.0)
    k_dir = normal if dk > 0 else -normal
    direction = np.stack([row, col, k_dir], axis=1)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    grid = Grid(
        shape=(n_frames, int(ds.Rows), int(ds.Columns)),
        spacing_mm=(abs(dk), row_mm, col_mm),
        origin_lps_mm=tuple(ipp),
        direction=direction,
        patient_position=patient_position,
    )
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for bad pixel data
        raise DicomError(f"{where}: dose pixel data cannot be decoded ({exc})") from None
    pixels = np.asarray(pixels).reshape(grid.shape)
    if pixels.min() < 0:
        raise DicomError(
            f"{where}: negative dose pixel values (down to {int(pixels.min())}); a dose "
            "cannot be negative: export the dose again from the planning system"
        )
    dose = pixels.astype(np.float64) * _dose_grid_scaling(ds, where)
    summation = str(ds.get("DoseSummationType", ""))
    plan_uid = None
    if "ReferencedRTPlanSequence" in ds and len(ds.ReferencedRTPlanSequence):
        plan_uid = str(ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID)
    log.info("read %s: %s, %s dose, max %.3f", where, grid, summation, float(dose.max()))
    return RTDose(
        volume=Volume(dose, grid, unit),
        summation_type=summation,
        dose_type=str(ds.get("DoseType", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        referenced_rtplan_uid=plan_uid,
        identity=DicomIdentity.from_dataset(ds),
        sop_instance_uid=str(ds.SOPInstanceUID),
    )


def read_rtdose(path: str | os.PathLike[str], *, patient_position: str = "HFS") -> Volume:
    """Read an RTDOSE file into a dose :class:`Volume` (unit "Gy")."""
    return load_rtdose(path, patient_position=patient_position).volume


def dose_grid_scaling(max_dose_gy: float) -> str:
    """The DoseGridScaling decimal string for a uint32 grid whose largest value is ``max_dose_gy``."""
    if not np.isfinite(max_dose_gy) or max_dose_gy < 0:
        raise DicomError(f"dose maximum {max_dose_gy} must be finite and non-negative")
    if max_dose_gy == 0:
        return "1"
    # Round the scaling up (in its 16-character form) so the maximum still fits in uint32.
    text = format_ds(max_dose_gy / _UINT32_MAX * (1 + 1e-9))
    while float(text) * _UINT32_MAX < max_dose_gy:
        text = format_ds(float(text) * (1 + 1e-9))
    return text


def write_rtdose(
    dose: Volume,
    path: str | os.PathLike[str],
    identity: DicomIdentity,
    *,
    referenced_rtplan_uid: str | None = None,
    summation_type: str = "PLAN",
    referenced_beam_number: int | None = None,
    series_description: str = "lattice_plan dose",
    comment: str = "",
) -> str:
    """Write ``dose`` (unit "Gy") as an RTDOSE in ``identity``'s study and frame; returns its SOP Instance UID.

    ``summation_type`` says what the dose is of: "PLAN" (all fractions of the
    RTPLAN ``referenced_rtplan_uid``), "FRACTION" (one fraction of its fraction
    group 1) or "BEAM" (one fraction of beam ``referenced_beam_number``).
    """
    if dose.unit != "Gy":
        raise DicomError(f"write_rtdose needs a dose in Gy, got unit {dose.unit!r}")
    summation_type = summation_type.upper()
    if summation_type not in WRITABLE_SUMMATION_TYPES:
        raise DicomError(
            f"summation_type {summation_type!r}: this writer makes "
            f"{', '.join(WRITABLE_SUMMATION_TYPES)} doses"
        )
    if not referenced_rtplan_uid:
        raise DicomError(
            f"a {summation_type} dose must reference its RTPLAN; pass referenced_rtplan_uid"
        )
    if (summation_type == "BEAM") != (referenced_beam_number is not None):
        raise DicomError(
            "referenced_beam_number is needed for a BEAM dose, and only for a BEAM dose"
        )
    values = np.asarray(dose.array, dtype=np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise DicomError("dose values must be finite and non-negative to write an RTDOSE")
    grid = dose.grid
    scaling_text = dose_grid_scaling(float(values.max()))
    scaled = np.rint(values / float(scaling_text))
    pixels = np.clip(scaled, 0, _UINT32_MAX).astype(np.uint32)
    ds = new_dataset(
        RT_DOSE_STORAGE,
        identity,
        modality="RTDOSE",
        series_description=series_description,
    )
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = format_ds_list(grid.origin_lps_mm)
    ds.ImageOrientationPatient = format_ds_list(
        np.concatenate([grid.direction[:, 0], grid.direction[:, 1]])
    )
    dk, dj, di = grid.spacing_mm
    normal = np.cross(grid.direction[:, 0], grid.direction[:, 1])
    sign = float(np.sign(normal @ grid.direction[:, 2]))
    ds.PixelSpacing = format_ds_list([dj, di])
    ds.SliceThickness = format_ds(dk)
    ds.NumberOfFrames = grid.shape[0]
    ds.FrameIncrementPointer = _GRID_FRAME_OFFSET_POINTER
    ds.GridFrameOffsetVector = format_ds_list(sign * dk * np.arange(grid.shape[0]))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = grid.shape[1]
    ds.Columns = grid.shape[2]
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = summation_type
    ds.DoseGridScaling = scaling_text
    if comment:
        ds.DoseComment = comment[:64]
    ref = Dataset()
    ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
    ref.ReferencedSOPInstanceUID = referenced_rtplan_uid
    if summation_type in ("FRACTION", "BEAM"):  # PS3.3 C.8.8.3: which fraction group (and beam)
        group = Dataset()
        group.ReferencedFractionGroupNumber = 1
        if referenced_beam_number is not None:
            beam = Dataset()
            beam.ReferencedBeamNumber = int(referenced_beam_number)
            group.ReferencedBeamSequence = DicomSequence([beam])
        ref.ReferencedFractionGroupSequence = DicomSequence([group])
    ds.ReferencedRTPlanSequence = DicomSequence([ref])
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    write_dataset(ds, path)
    log.info("wrote RTDOSE %s (max %.3f Gy)", path, float(values.max()))
    return str(ds.SOPInstanceUID)


__all__ = [
    "WRITABLE_SUMMATION_TYPES",
    "RTDose",
    "dose_grid_scaling",
    "load_rtdose",
    "read_rtdose",
    "write_rtdose",
]
