"""RTPLAN writing: static beams, and control-point beams as a machine delivers them.

:func:`write_rtplan` writes photon beams with machine name, energy, angles,
isocentre, MU per fraction in the fraction group and a dose reference for the
prescription.

- A static :class:`~lattice_plan.dose.beam.Beam` (conformal field) is a STATIC
  beam of two control points with its jaws and MLC. A beam with a fluence map
  also gets its map written beside the plan as an optimal-fluence text file
  (:mod:`lattice_plan.io.fluence_text`), for a planning system to sequence.
- A :class:`~lattice_plan.dose.control_points.ControlPointBeam` is written
  with its whole control-point sequence: DYNAMIC for sliding window and arcs
  (gantry angle and rotation direction per control point), STATIC with
  segments (pairs of control points) for step-and-shoot. Its MLCX positions
  are written at every control point, bank X1 (B, -X_b) first and then X2
  (A, +X_b), as planning systems export them; jaws, gantry, collimator and
  couch angles are written at the first control point and wherever they
  change (PS3.3 C.8.8.14). Cumulative meterset weights run from 0 to the
  Final Cumulative Meterset Weight 1.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.control_points import ControlPointBeam
from lattice_plan.dose.machine import Machine
from lattice_plan.errors import DicomError
from lattice_plan.files import safe_file_part
from lattice_plan.io.dicom_common import (
    RT_PLAN_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    DicomIdentity,
    format_ds,
    new_dataset,
    write_dataset,
)
from lattice_plan.io.fluence_text import write_optimal_fluence
from lattice_plan.io.rtplan_beams import control_point_beam_item, static_beam_item

log = logging.getLogger(__name__)

DEFAULT_MACHINE_NAME = "LATTICE_6X"


@dataclass(frozen=True)
class WrittenRTPlan:
    """What :func:`write_rtplan` wrote: the plan and each fluence beam's text file."""

    sop_instance_uid: str
    path: Path
    fluence_files: dict[str, Path] = field(default_factory=dict)


def write_rtplan(
    beams: Sequence[Beam | ControlPointBeam],
    path: str | os.PathLike[str],
    identity: DicomIdentity,
    *,
    n_fractions: int,
    dose_per_fraction_gy: float,
    label: str = "lattice_plan",
    plan_name: str = "",
    referenced_rtstruct_uid: str | None = None,
    target_roi_number: int | None = None,
    prescription_description: str = "target",
    machine_name: str | None = None,
    plan_intent: str = "PALLIATIVE",
    machine: Machine | None = None,
    fluence_beams: Sequence[Beam] = (),
) -> WrittenRTPlan:
    """Write an RTPLAN for ``beams`` (static or control-point beams; ``mu`` = MU per fraction).

    The prescription (``n_fractions`` x ``dose_per_fraction_gy``) goes into a
    TARGET dose reference, of the ROI ``target_roi_number`` of the structure set
    ``referenced_rtstruct_uid`` when both are given. Beams with a fluence map
    also get ``<plan stem>.<beam number>_<beam name>.optimal_fluence`` beside the plan.
    ``fluence_beams`` are the optimised fluence-map beams that control-point
    beams of the same name were sequenced from: their maps are written too.
    ``machine_name`` (default: ``machine.name``, else ``DEFAULT_MACHINE_NAME``)
    is the Treatment Machine Name of beams that do not carry one in
    ``Beam.extra["treatment_machine_name"]`` (beams read from another plan do).
    Angles in degrees, positions in mm (LPS for the isocentre), doses in Gy.
    """
    if machine_name is None:
        machine_name = machine.name if machine is not None else DEFAULT_MACHINE_NAME
    if not beams:
        raise DicomError("an RTPLAN needs at least one beam")
    if int(n_fractions) < 1:
        raise DicomError(f"n_fractions must be at least 1, got {n_fractions}")
    if not (np.isfinite(dose_per_fraction_gy) and dose_per_fraction_gy > 0):
        raise DicomError(f"dose_per_fraction_gy must be positive, got {dose_per_fraction_gy}")
    names = [b.name for b in beams]
    if len(set(names)) != len(names):
        raise DicomError(f"beam names must be unique within a plan, got {names}")
    unknown = [b.name for b in fluence_beams if b.name not in names]
    if unknown:
        raise DicomError(
            f"fluence_beams {unknown} are not beams of the plan {names}; "
            "pass the fluence beams the plan's beams were sequenced from"
        )
    if target_roi_number is not None and referenced_rtstruct_uid is None:
        raise DicomError("target_roi_number needs referenced_rtstruct_uid (the RTSTRUCT it is in)")
    target = Path(path)
    ds = new_dataset(RT_PLAN_STORAGE, identity, modality="RTPLAN", series_description=label)
    now = datetime.datetime.now()
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = label[:16]
    ds.RTPlanName = (plan_name or label)[:64]
    ds.RTPlanDate = now.strftime("%Y%m%d")
    ds.RTPlanTime = now.strftime("%H%M%S")
    ds.PlanIntent = plan_intent
    if referenced_rtstruct_uid:
        ds.RTPlanGeometry = "PATIENT"
        ref = Dataset()
        ref.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
        ref.ReferencedSOPInstanceUID = referenced_rtstruct_uid
        ds.ReferencedStructureSetSequence = DicomSequence([ref])
    else:
        ds.RTPlanGeometry = "TREATMENT_DEVICE"

    total_gy = float(n_fractions) * float(dose_per_fraction_gy)
    dref = Dataset()
    dref.DoseReferenceNumber = 1
    dref.DoseReferenceUID = generate_uid()
    if target_roi_number is not None:
        dref.DoseReferenceStructureType = "VOLUME"
        dref.ReferencedROINumber = int(target_roi_number)
    else:
        dref.DoseReferenceStructureType = "SITE"
    dref.DoseReferenceDescription = prescription_description[:64]
    dref.DoseReferenceType = "TARGET"
    dref.TargetPrescriptionDose = format_ds(total_gy)
    ds.DoseReferenceSequence = DicomSequence([dref])

    positions = {b.extra.get("patient_position") for b in beams if isinstance(b, Beam)} - {None}
    patient_position = str(positions.pop()) if len(positions) == 1 else identity.patient_position
    setup = Dataset()
    setup.PatientPosition = patient_position
    setup.PatientSetupNumber = 1
    setup.SetupTechnique = "ISOCENTRIC"
    ds.PatientSetupSequence = DicomSequence([setup])

    fraction = Dataset()
    fraction.FractionGroupNumber = 1
    fraction.NumberOfFractionsPlanned = int(n_fractions)
    fraction.NumberOfBeams = len(beams)
    fraction.NumberOfBrachyApplicationSetups = 0
    fraction.ReferencedBeamSequence = DicomSequence()
    ds.BeamSequence = DicomSequence()
    fluence_files: dict[str, Path] = {}
    fluence_jobs = []
    fluence_of = {b.name: b for b in fluence_beams}
    for number, beam in enumerate(beams, start=1):
        if isinstance(beam, ControlPointBeam):
            ds.BeamSequence.append(control_point_beam_item(beam, number, machine_name))
        else:
            ds.BeamSequence.append(static_beam_item(beam, number, machine_name))
            if beam.fluence is not None:
                fluence_of.setdefault(beam.name, beam)
        ref_beam = Dataset()
        ref_beam.ReferencedBeamNumber = number
        ref_beam.BeamMeterset = format_ds(beam.mu)
        fraction.ReferencedBeamSequence.append(ref_beam)
        source = fluence_of.get(beam.name)
        if source is not None and source.fluence is not None:
            fpath = target.with_name(
                f"{target.stem}.{number:02d}_{safe_file_part(beam.name, 'beam')}.optimal_fluence"
            )
            fluence_jobs.append((source, number, fpath))
    ds.FractionGroupSequence = DicomSequence([fraction])
    ds.ApprovalStatus = "UNAPPROVED"
    write_dataset(ds, target)
    for beam, number, fpath in fluence_jobs:
        write_optimal_fluence(
            beam.fluence,  # type: ignore[arg-type]
            fpath,
            comment=f"plan {label}, beam {number} {beam.name}, gantry {beam.gantry_deg:g} deg",
        )
        fluence_files[beam.name] = fpath
    log.info("wrote RTPLAN %s: %d beams, %d fractions", target, len(beams), n_fractions)
    return WrittenRTPlan(str(ds.SOPInstanceUID), target, fluence_files)


__all__ = ["DEFAULT_MACHINE_NAME", "WrittenRTPlan", "write_rtplan"]
