"""CT series in and out.

:func:`read_ct` reads one axial CT series from a folder that may also hold RT
objects, other series and non-DICOM files: it selects the series by
SeriesInstanceUID (and by slice thickness where one UID holds several stacks),
sorts the slices along the slice normal, applies rescale slope and intercept,
checks that the spacing is uniform, and refuses oblique (non-axial) images,
gantry tilt and missing slices with a clear message. The grid is in LPS with the
CT's direction cosines and patient position.

:func:`write_ct_series` writes a :class:`~lattice_plan.geometry.Patient` CT as a
new CT series (one file per slice, 16-bit signed HU).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.uid import generate_uid

from lattice_plan.errors import DicomError, InputFileError
from lattice_plan.files import prepare_output_dir
from lattice_plan.geometry.grid import PATIENT_POSITIONS, Grid
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.io.ct_headers import (
    AXIS_TOL,
    CTSlice,
    check_axial,
    check_one_series,
    describe_groups,
    orientation,
    rescale,
    scan_ct_headers,
)
from lattice_plan.io.dicom_common import (
    CT_IMAGE_STORAGE,
    DicomIdentity,
    format_ds,
    format_ds_list,
    new_dataset,
    read_dataset,
    write_dataset,
)

log = logging.getLogger(__name__)

_SPACING_REL_TOL = 0.01  # slice gaps equal within 1 % (and 0.01 mm) count as uniform
_SPACING_ABS_TOL_MM = 0.01


@dataclass(frozen=True, eq=False)
class CTSeries:
    """A CT series as read (or written): HU volume, identity and the per-slice references.

    ``slice_sop_instance_uids[k]`` is the SOP Instance UID of array slice k; RT
    structure sets reference these.
    """

    volume: Volume
    identity: DicomIdentity
    series_instance_uid: str
    slice_sop_instance_uids: tuple[str, ...]
    files: tuple[Path, ...] = ()
    series_description: str = ""

    def __post_init__(self) -> None:
        if len(self.slice_sop_instance_uids) != self.volume.grid.shape[0]:
            raise DicomError(
                f"CT series has {len(self.slice_sop_instance_uids)} slice UIDs for "
                f"{self.volume.grid.shape[0]} slices"
            )

    @property
    def grid(self) -> Grid:
        return self.volume.grid

    @property
    def frame_of_reference_uid(self) -> str:
        return self.identity.frame_of_reference_uid

    def to_patient(self, structures: StructureSet | None = None, description: str = "") -> Patient:
        """A :class:`Patient` with this CT (and ``structures``, empty by default)."""
        uids = self.identity.as_uid_dict()
        uids["SeriesInstanceUID"] = self.series_instance_uid
        return Patient(
            ct=self.volume,
            structures=structures if structures is not None else StructureSet((), self.grid),
            patient_id=self.identity.patient_id,
            patient_name=self.identity.patient_name,
            description=description or self.series_description,
            dicom_uids=uids,
        )


def read_ct(
    folder: str | os.PathLike[str],
    series_uid: str | None = None,
    slice_thickness_mm: float | None = None,
    *,
    recursive: bool = False,
) -> CTSeries:
    """Read one axial CT series from ``folder`` into a :class:`CTSeries` (HU, LPS grid).

    ``series_uid`` picks a series when the folder holds several; ``slice_thickness_mm``
    picks one stack when one SeriesInstanceUID holds stacks of several slice
    thicknesses. Missing slices, non-uniform spacing, gantry tilt and oblique
    images raise :class:`DicomError`; nothing is guessed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(f"CT folder {str(root)!r} does not exist or is not a folder")
    slices, others, unreadable = scan_ct_headers(root, recursive)
    if not slices:
        held = ", ".join(f"{n} {m}" for m, n in sorted(others.items())) or "no files"
        raise DicomError(
            f"no CT image in {str(root)!r} (it holds: {held}); give the folder of the CT series"
            + ("" if recursive else " or pass recursive=True")
        )
    groups: dict[tuple, list[CTSlice]] = defaultdict(list)
    for s in slices:
        thickness = s.ds.get("SliceThickness")
        key = (str(s.ds.SeriesInstanceUID), None if thickness in (None, "") else float(thickness))
        groups[key].append(s)
    if series_uid is not None:
        groups = {k: v for k, v in groups.items() if k[0] == series_uid}
        if not groups:
            present = sorted({str(s.ds.SeriesInstanceUID) for s in slices})
            raise DicomError(
                f"no CT series {series_uid!r} in {str(root)!r}; series present: {', '.join(present)}"
            )
    if slice_thickness_mm is not None:
        groups = {
            k: v
            for k, v in groups.items()
            if k[1] is not None and abs(k[1] - float(slice_thickness_mm)) < 1e-3
        }
        if not groups:
            raise DicomError(
                f"no CT stack with slice thickness {slice_thickness_mm} mm in {str(root)!r}"
            )
    if len(groups) > 1:
        uids = {k[0] for k in groups}
        hint = (
            "pass series_uid= to choose one"
            if len(uids) > 1
            else "one SeriesInstanceUID holds stacks of several slice thicknesses; "
            "pass slice_thickness_mm= to choose one"
        )
        raise DicomError(
            f"{str(root)!r} holds {len(groups)} CT stacks: {describe_groups(groups)}; {hint}"
        )
    (uid, _), chosen = next(iter(groups.items()))
    return _assemble(chosen, uid, root, unreadable)


def read_ct_series(
    folder: str | os.PathLike[str],
    series_uid: str | None = None,
    slice_thickness_mm: float | None = None,
    *,
    recursive: bool = False,
) -> Patient:
    """:func:`read_ct` as a :class:`Patient` (no structures; identity in ``dicom_uids``)."""
    return read_ct(folder, series_uid, slice_thickness_mm, recursive=recursive).to_patient()


def _assemble(
    slices: list[CTSlice], series_uid: str, root: Path, unreadable: list[Path]
) -> CTSeries:
    first = slices[0]
    iop0 = orientation(first.ds, first.path)
    where = f"CT series {series_uid} in {str(root)!r}"
    for s in slices[1:]:
        if not np.allclose(orientation(s.ds, s.path), iop0, atol=1e-4):
            raise DicomError(
                f"{where}: slices have different image orientations ({first.path.name} vs "
                f"{s.path.name}); the folder mixes acquisitions: separate them"
            )
    direction = check_axial(iop0, where)
    for s in slices:
        tilt = float(s.ds.get("GantryDetectorTilt", 0.0) or 0.0)
        if abs(tilt) > 1e-3:
            raise DicomError(
                f"{where}: gantry/detector tilt {tilt} degrees in {s.path.name}; tilted CTs are "
                "sheared and this tool would place them wrongly: reconstruct without tilt"
            )
    normal = direction[:, 2]
    ipp = np.array([[float(v) for v in s.ds.ImagePositionPatient] for s in slices])
    pos = ipp @ normal
    order = np.argsort(pos, kind="stable")
    slices = [slices[n] for n in order]
    ipp, pos = ipp[order], pos[order]
    dup = np.nonzero(np.diff(pos) < _SPACING_ABS_TOL_MM)[0]
    if len(dup):
        a, b = slices[dup[0]].path.name, slices[dup[0] + 1].path.name
        raise DicomError(
            f"{where}: two slices at the same position {pos[dup[0]]:.2f} mm ({a}, {b}); "
            "the folder holds two interleaved series or duplicate files: keep one series"
        )
    check_one_series(slices, where)
    in_plane = ipp - np.outer(pos, normal)
    if np.max(np.abs(in_plane - in_plane[0])) > 0.01:
        raise DicomError(
            f"{where}: slice origins drift sideways along the stack (a tilted or sheared "
            "acquisition); reconstruct without gantry tilt"
        )
    rows = {int(s.ds.Rows) for s in slices}
    cols = {int(s.ds.Columns) for s in slices}
    spacings = {tuple(float(v) for v in s.ds.PixelSpacing) for s in slices}
    if len(rows) > 1 or len(cols) > 1 or len(spacings) > 1:
        raise DicomError(
            f"{where}: slices differ in size or pixel spacing; the folder mixes acquisitions"
        )
    row_mm, col_mm = next(iter(spacings))  # PixelSpacing = (between rows, between columns)
    if len(slices) > 1:
        gaps = np.diff(pos)
        dz = float(np.min(gaps))
        if np.max(gaps) - dz > max(_SPACING_REL_TOL * dz, _SPACING_ABS_TOL_MM):
            ratio = gaps / dz
            if np.allclose(ratio, np.round(ratio), atol=0.05):
                n_missing = int(np.round(ratio).sum() - len(gaps))
                at = [f"{pos[n]:.2f}..{pos[n + 1]:.2f}" for n in np.nonzero(ratio > 1.5)[0]]
                damaged = (
                    f"; unreadable (empty or truncated?) files in the folder: "
                    f"{', '.join(p.name for p in unreadable[:5])}"
                    if unreadable
                    else ""
                )
                raise DicomError(
                    f"{where}: {n_missing} slice(s) missing (gaps at {', '.join(at[:5])} mm along "
                    f"the slice normal, regular spacing {dz:.3f} mm){damaged}; export the complete "
                    "series"
                )
            raise DicomError(
                f"{where}: slice spacing is not uniform (gaps {np.round(np.unique(gaps), 3).tolist()} "
                "mm); resample the CT to a uniform spacing first"
            )
        dz = float(np.mean(gaps))
    else:
        dz = float(first.ds.get("SpacingBetweenSlices") or first.ds.get("SliceThickness") or 0)
        if dz <= 0:
            raise DicomError(
                f"{where}: a single slice with no slice thickness; cannot build a grid"
            )
        log.warning(
            "%s: only one CT slice; the grid has one slice of %.2f mm (a partial export?)",
            where,
            dz,
        )
    position = str(first.ds.get("PatientPosition", "") or "HFS")
    if position not in PATIENT_POSITIONS:
        raise DicomError(f"{where}: patient position {position!r} is not supported")
    grid = Grid(
        shape=(len(slices), int(first.ds.Rows), int(first.ds.Columns)),
        spacing_mm=(dz, row_mm, col_mm),
        origin_lps_mm=tuple(ipp[0]),
        direction=direction,
        patient_position=position,
    )
    hu = np.empty(grid.shape, dtype=np.float32)
    for k, s in enumerate(slices):
        ds = read_dataset(s.path, what="CT slice")
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # pydicom raises several types for bad pixel data
            raise DicomError(
                f"{where}: pixel data of {s.path.name} cannot be decoded ({exc}); export it again"
            ) from None
        slope, intercept = rescale(ds, s.path)
        hu[k] = pixels.astype(np.float32) * slope + intercept
    if np.all(hu == np.round(hu)) and hu.min() >= -32768 and hu.max() <= 32767:
        hu_array: NDArray = hu.astype(np.int16)
    else:
        hu_array = hu
    log.info("read CT %s: %s", series_uid, grid)
    return CTSeries(
        volume=Volume(hu_array, grid, "HU"),
        identity=DicomIdentity.from_dataset(first.ds),
        series_instance_uid=series_uid,
        slice_sop_instance_uids=tuple(str(s.ds.SOPInstanceUID) for s in slices),
        files=tuple(s.path for s in slices),
        series_description=str(first.ds.get("SeriesDescription", "")),
    )


def identity_for(patient: Patient) -> DicomIdentity:
    """The DICOM identity of ``patient``: its CT's study and frame of reference.

    A patient read from DICOM keeps its UIDs (``dicom_uids``). A synthetic
    patient without them gets UIDs derived from its id, name and description,
    so every call (and every export of the same phantom) agrees: the CT, RTSTRUCT,
    RTPLAN and RTDOSE written for it share one study and frame of reference.
    """
    uids = patient.dicom_uids
    if "StudyInstanceUID" in uids and "FrameOfReferenceUID" in uids:
        study, frame = uids["StudyInstanceUID"], uids["FrameOfReferenceUID"]
    else:
        key = [patient.patient_id, patient.patient_name, patient.description]
        study = generate_uid(entropy_srcs=[*key, "study"])
        frame = generate_uid(entropy_srcs=[*key, "frame of reference"])
    return DicomIdentity(
        patient_id=patient.patient_id,
        patient_name=patient.patient_name,
        study_instance_uid=study,
        frame_of_reference_uid=frame,
        study_description=patient.description[:64],
        patient_position=patient.grid.patient_position,
    )


def write_ct_series(
    patient: Patient,
    folder: str | os.PathLike[str],
    identity: DicomIdentity | None = None,
    *,
    series_description: str = "lattice_plan CT",
    file_prefix: str = "CT",
) -> CTSeries:
    """Write ``patient.ct`` as a new CT series, one file per slice, in ``folder``.

    The study and frame of reference come from ``identity`` (default: the
    patient's own, see :func:`identity_for`); the series and instances get fresh
    UIDs. HU are rounded to integers and stored as 16-bit signed values. Returns
    the written series (with the slice UIDs an RTSTRUCT needs).
    """
    grid = patient.grid
    if not grid.is_axis_aligned or abs(abs(grid.direction[2, 2]) - 1) > AXIS_TOL:
        raise DicomError(
            "write_ct_series writes axial CTs only; this grid's direction is "
            f"{grid.direction.tolist()}"
        )
    hu = np.asarray(patient.ct.array, dtype=float)
    if not np.all(np.isfinite(hu)):
        raise DicomError("the CT holds non-finite HU values; cannot write it")
    hu_int = np.round(hu)
    if hu_int.min() < -32768 or hu_int.max() > 32767:
        raise DicomError(
            f"CT values {hu_int.min():.0f}..{hu_int.max():.0f} HU do not fit 16-bit storage"
        )
    hu_int = hu_int.astype(np.int16)
    identity = identity or identity_for(patient)
    out = prepare_output_dir(folder)
    series_uid = generate_uid()
    sop_uids = tuple(generate_uid() for _ in range(grid.shape[0]))
    iop = format_ds_list(np.concatenate([grid.direction[:, 0], grid.direction[:, 1]]))
    dk, dj, di = grid.spacing_mm
    datasets = []
    for k in range(grid.shape[0]):
        ds = new_dataset(
            CT_IMAGE_STORAGE,
            identity,
            modality="CT",
            series_instance_uid=series_uid,
            series_description=series_description,
            sop_instance_uid=sop_uids[k],
            instance_number=k + 1,
        )
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.Laterality = ""  # Type 2C, unknown for a synthetic or trunk CT
        ds.AcquisitionNumber = 1
        ds.KVP = ""
        ds.SliceThickness = format_ds(dk)
        ds.PatientPosition = grid.patient_position
        ds.FrameOfReferenceUID = identity.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ipp = grid.points_lps_mm(np.array([0.0, 0.0, float(k)]))
        ds.ImagePositionPatient = format_ds_list(ipp)
        ds.ImageOrientationPatient = iop
        ds.SliceLocation = format_ds(float(ipp[2]))
        ds.PixelSpacing = format_ds_list([dj, di])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = grid.shape[1]
        ds.Columns = grid.shape[2]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = np.ascontiguousarray(hu_int[k]).tobytes()
        datasets.append(ds)
    paths = []
    for k, ds in enumerate(datasets):
        paths.append(write_dataset(ds, out / f"{file_prefix}.{k + 1:04d}.dcm"))
    log.info("wrote CT series %s (%d slices) to %s", series_uid, len(paths), out)
    return CTSeries(
        volume=Volume(hu_int, grid, "HU"),
        identity=identity,
        series_instance_uid=series_uid,
        slice_sop_instance_uids=sop_uids,
        files=tuple(paths),
        series_description=series_description,
    )


__all__ = [
    "CTSeries",
    "identity_for",
    "read_ct",
    "read_ct_series",
    "write_ct_series",
]
