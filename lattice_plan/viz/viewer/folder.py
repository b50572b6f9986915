"""The viewer of a plan folder: its CT, RTSTRUCT, and every RTDOSE with its RTPLAN.

A folder written by ``lattice-plan plan`` or ``demo`` holds ``CT/``,
``RTSTRUCT.dcm`` and ``RTDOSE_<plan>.dcm`` / ``RTPLAN_<plan>.dcm`` pairs; a
plan exported by another system may name its files as it likes: the DICOM
files directly in the folder are told apart by their Modality, and the CT is
read from ``CT/`` or else from the folder itself. The plan's arm is read from
its RTPLAN name ("SFRT-1 (SFRT)"); a dose whose RTPLAN is absent or names no
prescription is shown against its own maximum (100 %) in one fraction, and the
page says so in the plan's label.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from lattice_plan.errors import InputFileError
from lattice_plan.io.ct import read_ct
from lattice_plan.io.dicom_common import DicomWarning, read_dataset
from lattice_plan.io.rtdose import load_rtdose
from lattice_plan.io.rtplan import RTPlan, read_rtplan
from lattice_plan.io.rtstruct import read_rtstruct
from lattice_plan.viz.viewer.payload import ViewerPlan, viewer_payload

_ARM = re.compile(r"\(([A-Za-z]+)\)\s*$")


def _by_modality(root: Path) -> dict[str, list[Path]]:
    """The DICOM files directly in ``root`` by Modality (RTDOSE, RTPLAN, RTSTRUCT, ...)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.glob("*.dcm")):
        modality = str(read_dataset(path, header_only=True).get("Modality", ""))
        found.setdefault(modality, []).append(path)
    return found


def _viewer_plan(dose_path: Path, rtplan: RTPlan | None, patient_position: str) -> ViewerPlan:
    dose = load_rtdose(dose_path, patient_position=patient_position).volume
    name = dose_path.stem.removeprefix("RTDOSE_")
    if rtplan is None or rtplan.prescription_dose_gy is None:
        top = float(dose.array.max())
        return ViewerPlan(f"{name} (no Rx: % of max)", "plan", dose, 1, top if top > 0 else 1.0)
    match = _ARM.search(rtplan.name or "")
    return ViewerPlan(
        rtplan.label or name,
        match.group(1).upper() if match else "plan",
        dose,
        int(rtplan.n_fractions or 1),
        float(rtplan.prescription_dose_gy),
        rtplan.beams,
    )


def folder_payload(folder: str | os.PathLike[str], reference_plan: str | None = "CRT") -> dict:
    """:func:`viewer_payload` of every plan in ``folder`` (see the module docstring)."""
    root = Path(folder)
    files = _by_modality(root)
    if not files.get("RTDOSE"):
        raise InputFileError(
            f"{str(root)!r} holds no RTDOSE file (*.dcm); give a folder written by "
            "'lattice-plan plan' or 'demo', or a folder with an exported CT, RTSTRUCT and RTDOSE"
        )
    structure_files = files.get("RTSTRUCT", [])
    if len(structure_files) != 1:
        raise InputFileError(
            f"{str(root)!r} holds {len(structure_files)} RTSTRUCT files; the viewer needs exactly one"
        )
    ct = read_ct(root / "CT" if (root / "CT").is_dir() else root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)  # ROIs without contours are not drawn
        structures = read_rtstruct(structure_files[0], ct)
    by_uid = {
        str(read_dataset(p, header_only=True).SOPInstanceUID): p for p in files.get("RTPLAN", [])
    }
    position = ct.volume.grid.patient_position
    plans = []
    for path in files["RTDOSE"]:
        uid = load_rtdose(path, patient_position=position).referenced_rtplan_uid
        rtplan = read_rtplan(by_uid[uid]) if uid in by_uid else None
        plans.append(_viewer_plan(path, rtplan, position))
    return viewer_payload(
        ct.volume, list(structures), plans, title=str(root.name), reference_plan=reference_plan
    )
