"""What a folder of DICOM files holds: patients, studies, series, RT objects and their references.

:func:`list_dicom_folder` reads headers only (fast) and never fails on a stray
file: non-DICOM and unreadable files are counted and named. Each RT object
lists what it references (RTSTRUCT -> CT series and frame of reference,
RTPLAN -> RTSTRUCT, RTDOSE -> RTPLAN) and whether that is in the folder.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from lattice_plan.errors import DicomError, InputFileError
from lattice_plan.io.dicom_common import modality_of, read_dataset


@dataclass(frozen=True)
class SeriesEntry:
    """One series (or one RT object's series) of a study."""

    patient_id: str
    patient_name: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    description: str
    frame_of_reference_uid: str
    files: tuple[Path, ...]
    slice_thicknesses_mm: tuple[float, ...] = ()


@dataclass(frozen=True)
class RTObjectEntry:
    """One RTSTRUCT, RTPLAN or RTDOSE and what it references."""

    path: Path
    modality: str
    sop_instance_uid: str
    label: str
    frame_of_reference_uid: str
    references: tuple[tuple[str, str], ...]  # (what, UID)
    missing: tuple[str, ...]  # references not found in the folder


@dataclass(frozen=True)
class DicomListing:
    """The content of a folder, grouped by patient, study and series."""

    folder: Path
    series: tuple[SeriesEntry, ...]
    rt_objects: tuple[RTObjectEntry, ...]
    unreadable: tuple[tuple[Path, str], ...] = field(default_factory=tuple)

    def ct_series(self) -> list[SeriesEntry]:
        return [s for s in self.series if s.modality == "CT"]

    def of_modality(self, modality: str) -> list[RTObjectEntry]:
        return [o for o in self.rt_objects if o.modality == modality]

    def __str__(self) -> str:
        lines = [f"{self.folder}:"]
        by_patient: dict[tuple[str, str], dict[str, list[SeriesEntry]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for s in self.series:
            by_patient[(s.patient_id, s.patient_name)][s.study_instance_uid].append(s)
        rt_by_path = {o.path: o for o in self.rt_objects}
        for (pid, pname), studies in by_patient.items():
            lines.append(f"  patient {pid} ({pname})")
            for study, entries in studies.items():
                lines.append(f"    study {study}")
                for s in entries:
                    thick = (
                        f", slice thickness {', '.join(f'{t:g}' for t in s.slice_thicknesses_mm)} mm"
                        if s.slice_thicknesses_mm
                        else ""
                    )
                    lines.append(
                        f"      {s.modality} series {s.series_instance_uid}: {len(s.files)} file(s)"
                        f"{thick}{', ' + repr(s.description) if s.description else ''}"
                    )
                    for f in s.files:
                        o = rt_by_path.get(f)
                        if o is None:
                            continue
                        lines.append(f"        {o.modality} {f.name} {o.label!r}")
                        for what, uid in o.references:
                            flag = " (not in folder)" if uid in o.missing else ""
                            lines.append(f"          -> {what} {uid}{flag}")
        for path, why in self.unreadable:
            lines.append(f"  skipped {path.name}: {why}")
        return "\n".join(lines)


def _references(ds: Dataset, modality: str) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []
    if modality == "RTSTRUCT":
        for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
            if "FrameOfReferenceUID" in fr:
                refs.append(("frame of reference", str(fr.FrameOfReferenceUID)))
            for st in fr.get("RTReferencedStudySequence", []):
                for se in st.get("RTReferencedSeriesSequence", []):
                    refs.append(("image series", str(se.SeriesInstanceUID)))
    elif modality == "RTPLAN":
        for r in ds.get("ReferencedStructureSetSequence", []):
            refs.append(("RTSTRUCT", str(r.ReferencedSOPInstanceUID)))
        for r in ds.get("ReferencedDoseSequence", []):
            refs.append(("RTDOSE", str(r.ReferencedSOPInstanceUID)))
    elif modality == "RTDOSE":
        for r in ds.get("ReferencedRTPlanSequence", []):
            refs.append(("RTPLAN", str(r.ReferencedSOPInstanceUID)))
        for r in ds.get("ReferencedStructureSetSequence", []):
            refs.append(("RTSTRUCT", str(r.ReferencedSOPInstanceUID)))
    return refs


def list_dicom_folder(folder: str | os.PathLike[str], *, recursive: bool = True) -> DicomListing:
    """List the DICOM content of ``folder`` (and its subfolders when ``recursive``)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(f"{str(root)!r} is not a folder")
    paths = sorted(
        p
        for p in (root.rglob("*") if recursive else root.iterdir())
        if p.is_file() and not p.name.startswith(".")
    )
    headers: list[tuple[Path, Dataset]] = []
    unreadable: list[tuple[Path, str]] = []
    for p in paths:
        try:
            headers.append((p, read_dataset(p, header_only=True)))
        except DicomError as exc:
            unreadable.append((p, str(exc).split(";")[0]))
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for p, ds in headers:
        groups[str(ds.get("SeriesInstanceUID", ""))].append((p, ds))
    present = {str(ds.SOPInstanceUID) for _, ds in headers}
    present |= {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    present |= {str(ds.get("FrameOfReferenceUID", "")) for _, ds in headers}
    series = []
    rt_objects = []
    for uid, items in groups.items():
        ds0 = items[0][1]
        modality = modality_of(ds0)
        thick = sorted(
            {
                float(ds.SliceThickness)
                for _, ds in items
                if ds.get("SliceThickness") not in (None, "")
            }
        )
        series.append(
            SeriesEntry(
                patient_id=str(ds0.get("PatientID", "")),
                patient_name=str(ds0.get("PatientName", "")),
                study_instance_uid=str(ds0.get("StudyInstanceUID", "")),
                series_instance_uid=uid,
                modality=modality,
                description=str(ds0.get("SeriesDescription", "")),
                frame_of_reference_uid=str(ds0.get("FrameOfReferenceUID", "")),
                files=tuple(p for p, _ in items),
                slice_thicknesses_mm=tuple(thick) if modality == "CT" else (),
            )
        )
        for p, ds in items:
            modality = modality_of(ds)
            if modality not in ("RTSTRUCT", "RTPLAN", "RTDOSE"):
                continue
            refs = _references(ds, modality)
            label = str(
                ds.get("StructureSetLabel", "")
                or ds.get("RTPlanLabel", "")
                or ds.get("DoseSummationType", "")
            )
            frame = str(ds.get("FrameOfReferenceUID", ""))
            if not frame and refs and refs[0][0] == "frame of reference":
                frame = refs[0][1]
            rt_objects.append(
                RTObjectEntry(
                    path=p,
                    modality=modality,
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    label=label,
                    frame_of_reference_uid=frame,
                    references=tuple(refs),
                    missing=tuple(u for _, u in refs if u not in present),
                )
            )
    return DicomListing(root, tuple(series), tuple(rt_objects), tuple(unreadable))


__all__ = ["DicomListing", "RTObjectEntry", "SeriesEntry", "list_dicom_folder"]
