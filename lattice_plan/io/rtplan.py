"""RT Plan in and out.

:func:`write_rtplan` writes static photon beams (:class:`~lattice_plan.dose.beam.Beam`):
machine name, energy, gantry/collimator/couch angles, isocentre, MU per
fraction in the fraction group, jaws and MLC leaf positions (two control
points, the aperture fixed) and a dose reference for the prescription. A beam
with a fluence map also gets its map written beside the plan as an
optimal-fluence text file (:mod:`lattice_plan.io.fluence_text`), for the
planning system to sequence.

:func:`read_rtplan` reads an RTPLAN's beams, isocentre, MU and fractions. Each
beam's aperture is that of its first control point; dynamic beams (IMRT, arcs)
keep their beam type and number of control points in ``Beam.extra``.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from lattice_plan.dose.beam import MLC, Beam, Jaws
from lattice_plan.errors import DicomError, DoseError
from lattice_plan.files import safe_file_part
from lattice_plan.io.dicom_common import (
    RT_PLAN_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    DicomIdentity,
    format_ds,
    format_ds_list,
    malformed_as_dicom_error,
    new_dataset,
    read_dataset,
    require_modality,
    write_dataset,
)
from lattice_plan.io.fluence_text import write_optimal_fluence

log = logging.getLogger(__name__)

DEFAULT_MACHINE_NAME = "LATTICE_6X"
_JAW_LIMIT_MM = 200.0


@dataclass(frozen=True, eq=False)
class RTPlan:
    """An RTPLAN as read: beams (MU per fraction), fractions and prescription."""

    label: str
    name: str
    beams: tuple[Beam, ...]
    n_fractions: int | None
    prescription_dose_gy: float | None
    patient_position: str
    frame_of_reference_uid: str | None
    referenced_rtstruct_uid: str | None
    sop_instance_uid: str
    identity: DicomIdentity | None = None

    @property
    def total_mu(self) -> float:
        """Sum of the beams' MU per fraction."""
        return float(sum(b.mu for b in self.beams))

    @property
    def dose_per_fraction_gy(self) -> float | None:
        if self.prescription_dose_gy is None or not self.n_fractions:
            return None
        return self.prescription_dose_gy / self.n_fractions


@dataclass(frozen=True)
class WrittenRTPlan:
    """What :func:`write_rtplan` wrote: the plan and each fluence beam's text file."""

    sop_instance_uid: str
    path: Path
    fluence_files: dict[str, Path] = field(default_factory=dict)


def _energy(energy: str, beam: str) -> tuple[str, float, bool]:
    """(radiation type, nominal energy in MV or MeV, flattening-filter free) from '6X', '10FFF', '9E'."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(X|MV|FFF|E|MEV)\s*", energy.upper())
    if not m:
        raise DicomError(
            f"beam {beam!r}: energy {energy!r} is not understood; use e.g. '6X', '10FFF' or '9E'"
        )
    value, kind = float(m.group(1)), m.group(2)
    return ("ELECTRON" if kind in ("E", "MEV") else "PHOTON"), value, kind == "FFF"


def _device(kind: str, positions: Sequence[float]) -> Dataset:
    item = Dataset()
    item.RTBeamLimitingDeviceType = kind
    item.LeafJawPositions = format_ds_list(positions)
    return item


def write_rtplan(
    beams: Sequence[Beam],
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
    machine_name: str = DEFAULT_MACHINE_NAME,
    plan_intent: str = "PALLIATIVE",
) -> WrittenRTPlan:
    """Write an RTPLAN for ``beams`` (``Beam.mu`` = MU per fraction).

    The prescription (``n_fractions`` x ``dose_per_fraction_gy``) goes into a
    TARGET dose reference, of the ROI ``target_roi_number`` of the structure set
    ``referenced_rtstruct_uid`` when both are given. Beams with a fluence map
    also get ``<plan stem>.<beam number>_<beam name>.optimal_fluence`` beside the plan.
    ``machine_name`` is the Treatment Machine Name of beams that do not carry one
    in ``Beam.extra["treatment_machine_name"]`` (beams read from another plan do).
    Angles in degrees, positions in mm (LPS for the isocentre), doses in Gy.
    """
    if not beams:
        raise DicomError("an RTPLAN needs at least one beam")
    if int(n_fractions) < 1:
        raise DicomError(f"n_fractions must be at least 1, got {n_fractions}")
    if not (np.isfinite(dose_per_fraction_gy) and dose_per_fraction_gy > 0):
        raise DicomError(f"dose_per_fraction_gy must be positive, got {dose_per_fraction_gy}")
    names = [b.name for b in beams]
    if len(set(names)) != len(names):
        raise DicomError(f"beam names must be unique within a plan, got {names}")
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

    positions = {b.extra.get("patient_position") for b in beams} - {None}
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
    for number, beam in enumerate(beams, start=1):
        ds.BeamSequence.append(_beam_item(beam, number, machine_name))
        ref_beam = Dataset()
        ref_beam.ReferencedBeamNumber = number
        ref_beam.BeamMeterset = format_ds(beam.mu)
        fraction.ReferencedBeamSequence.append(ref_beam)
        if beam.fluence is not None:
            fpath = target.with_name(
                f"{target.stem}.{number:02d}_{safe_file_part(beam.name, 'beam')}.optimal_fluence"
            )
            fluence_jobs.append((beam, number, fpath))
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


def _beam_item(beam: Beam, number: int, machine_name: str) -> Dataset:
    radiation, energy, fff = _energy(beam.energy, beam.name)
    item = Dataset()
    item.BeamNumber = number
    item.BeamName = beam.name[:64]
    item.BeamDescription = (
        "fluence beam: optimal fluence in the plan's .optimal_fluence file"
        if beam.fluence is not None
        else "static conformal beam"
    )
    item.BeamType = "STATIC"
    item.RadiationType = radiation
    item.TreatmentMachineName = str(beam.extra.get("treatment_machine_name", machine_name))[:16]
    item.PrimaryDosimeterUnit = "MU"
    item.SourceAxisDistance = format_ds(beam.sad_mm)
    if fff:
        mode = Dataset()
        mode.FluenceMode = "NON_STANDARD"
        mode.FluenceModeID = "FFF"
        item.PrimaryFluenceModeSequence = DicomSequence([mode])
    devices = DicomSequence()
    for kind in ("ASYMX", "ASYMY"):
        d = Dataset()
        d.RTBeamLimitingDeviceType = kind
        d.NumberOfLeafJawPairs = 1
        devices.append(d)
    if beam.mlc is not None:
        d = Dataset()
        d.RTBeamLimitingDeviceType = "MLCX"
        d.NumberOfLeafJawPairs = beam.mlc.n_pairs
        d.LeafPositionBoundaries = format_ds_list(beam.mlc.leaf_edges_mm)
        devices.append(d)
    item.BeamLimitingDeviceSequence = devices
    item.ReferencedPatientSetupNumber = 1
    item.TreatmentDeliveryType = "TREATMENT"
    item.NumberOfWedges = 0
    item.NumberOfCompensators = 0
    item.NumberOfBoli = 0
    item.NumberOfBlocks = 0
    item.FinalCumulativeMetersetWeight = "1"
    item.NumberOfControlPoints = 2

    cp0 = Dataset()
    cp0.ControlPointIndex = 0
    cp0.NominalBeamEnergy = format_ds(energy)
    positions = DicomSequence(
        [
            _device("ASYMX", [beam.jaws.x1_mm, beam.jaws.x2_mm]),
            _device("ASYMY", [beam.jaws.y1_mm, beam.jaws.y2_mm]),
        ]
    )
    if beam.mlc is not None:
        positions.append(
            _device("MLCX", np.concatenate([beam.mlc.bank_x1_mm, beam.mlc.bank_x2_mm]))
        )
    cp0.BeamLimitingDevicePositionSequence = positions
    cp0.GantryAngle = format_ds(beam.gantry_deg)
    cp0.GantryRotationDirection = "NONE"
    cp0.BeamLimitingDeviceAngle = format_ds(beam.collimator_deg)
    cp0.BeamLimitingDeviceRotationDirection = "NONE"
    cp0.PatientSupportAngle = format_ds(beam.couch_deg)
    cp0.PatientSupportRotationDirection = "NONE"
    cp0.TableTopEccentricAngle = "0"
    cp0.TableTopEccentricRotationDirection = "NONE"
    cp0.TableTopVerticalPosition = ""
    cp0.TableTopLongitudinalPosition = ""
    cp0.TableTopLateralPosition = ""
    cp0.IsocenterPosition = format_ds_list(beam.isocenter_lps_mm)
    cp0.CumulativeMetersetWeight = "0"
    cp1 = Dataset()
    cp1.ControlPointIndex = 1
    cp1.CumulativeMetersetWeight = "1"
    item.ControlPointSequence = DicomSequence([cp0, cp1])
    return item


# ---------------------------------------------------------------------------------- reading
def _positions(cp: Dataset) -> dict[str, list[float]]:
    out = {}
    for d in cp.get("BeamLimitingDevicePositionSequence", []) or []:
        out[str(d.RTBeamLimitingDeviceType)] = [float(v) for v in d.LeafJawPositions]
    return out


def _angle(cp: Dataset, keyword: str) -> float:
    """An angle in degrees, rounded to 1e-6 (planning systems write 7e-10 for 0)."""
    return round(float(cp.get(keyword, 0.0) or 0.0), 6)


def _read_beam(item: Dataset, mu: float | None, patient_position: str, where: str) -> Beam:
    name = str(item.get("BeamName", "") or f"Beam {item.BeamNumber}")
    cps = list(item.get("ControlPointSequence", []) or [])
    if not cps:
        raise DicomError(f"{where}: beam {name!r} has no control points")
    cp0 = cps[0]
    iso = cp0.get("IsocenterPosition")
    if iso is None:
        raise DicomError(f"{where}: beam {name!r} has no isocentre in its first control point")
    pos = _positions(cp0)
    x = pos.get("ASYMX") or pos.get("X")
    y = pos.get("ASYMY") or pos.get("Y")
    boundaries = None
    for d in item.get("BeamLimitingDeviceSequence", []) or []:
        if str(d.RTBeamLimitingDeviceType) == "MLCX" and "LeafPositionBoundaries" in d:
            boundaries = np.array([float(v) for v in d.LeafPositionBoundaries])
    mlc = None
    note = ""
    if "MLCX" in pos and boundaries is not None:
        leaves = np.array(pos["MLCX"])
        n = len(boundaries) - 1
        if leaves.size == 2 * n:
            try:
                mlc = MLC(boundaries, leaves[:n], leaves[n:])
            except DoseError as exc:
                note = f"MLC of the first control point not usable: {exc}"
            else:
                if mlc.is_closed:
                    mlc, note = None, "MLC closed at the first control point"
    if x is None:
        x = [-_JAW_LIMIT_MM, _JAW_LIMIT_MM]
    if y is None:
        y = [-_JAW_LIMIT_MM, _JAW_LIMIT_MM]
    radiation = str(item.get("RadiationType", "PHOTON"))
    energy = cp0.get("NominalBeamEnergy")
    fff = any(
        str(m.get("FluenceModeID", "")) == "FFF" for m in item.get("PrimaryFluenceModeSequence", [])
    )
    suffix = "E" if radiation == "ELECTRON" else ("FFF" if fff else "X")
    if energy is None:
        raise DicomError(
            f"{where}: beam {name!r} has no Nominal Beam Energy in its first control point"
        )
    energy_text = f"{float(energy):g}{suffix}"
    extra: dict[str, object] = {
        "beam_number": int(item.BeamNumber),
        "beam_type": str(item.get("BeamType", "")),
        "radiation_type": radiation,
        "treatment_machine_name": str(item.get("TreatmentMachineName", "")),
        "n_control_points": len(cps),
        "patient_position": patient_position,
    }
    if note:
        extra["note"] = note
    if mu is None:
        extra["note"] = (note + "; " if note else "") + "no Beam Meterset in the fraction group"
    try:
        return Beam(
            name=name,
            gantry_deg=_angle(cp0, "GantryAngle"),
            isocenter_lps_mm=tuple(float(v) for v in iso),
            jaws=Jaws(x[0], x[1], y[0], y[1]),
            mu=float(mu or 0.0),
            collimator_deg=_angle(cp0, "BeamLimitingDeviceAngle"),
            couch_deg=_angle(cp0, "PatientSupportAngle"),
            mlc=mlc,
            sad_mm=float(item.get("SourceAxisDistance", 1000.0)),
            energy=energy_text,
            extra=extra,
        )
    except DoseError as exc:
        raise DicomError(f"{where}: beam {name!r} cannot be read: {exc}") from None


def read_rtplan(path: str | os.PathLike[str]) -> RTPlan:
    """Read an RTPLAN's beams (aperture of the first control point, MU per fraction) and fractions."""
    ds = read_dataset(path, what="RTPLAN")
    require_modality(ds, "RTPLAN", path)
    where = f"RTPLAN {str(path)!r}"
    with malformed_as_dicom_error(where):
        return _rtplan_from(ds, where)


def _rtplan_from(ds: Dataset, where: str) -> RTPlan:
    setups = {
        int(s.PatientSetupNumber): str(s.get("PatientPosition", "") or "HFS")
        for s in ds.get("PatientSetupSequence", [])
    }
    groups = list(ds.get("FractionGroupSequence", []))
    if len(groups) > 1:
        log.warning("%s has %d fraction groups; reading the first", where, len(groups))
    mu_of: dict[int, float] = {}
    n_fractions = None
    if groups:
        n_fractions = int(groups[0].get("NumberOfFractionsPlanned", 0) or 0) or None
        for ref in groups[0].get("ReferencedBeamSequence", []):
            if ref.get("BeamMeterset") is not None:
                mu_of[int(ref.ReferencedBeamNumber)] = float(ref.BeamMeterset)
        in_group = set(mu_of) or {
            int(r.ReferencedBeamNumber) for r in groups[0].get("ReferencedBeamSequence", [])
        }
    else:
        in_group = None
    beams = []
    for item in ds.get("BeamSequence", []):
        number = int(item.BeamNumber)
        if in_group is not None and number not in in_group:
            continue
        if str(item.get("TreatmentDeliveryType", "TREATMENT")) != "TREATMENT":
            continue
        position = setups.get(int(item.get("ReferencedPatientSetupNumber", 1) or 1), "HFS")
        beams.append(_read_beam(item, mu_of.get(number), position, where))
    if not beams:
        raise DicomError(f"{where} holds no treatment beams")
    prescription = None
    for dref in ds.get("DoseReferenceSequence", []):
        if (
            str(dref.get("DoseReferenceType", "")) == "TARGET"
            and dref.get("TargetPrescriptionDose") is not None
        ):
            dose = float(dref.TargetPrescriptionDose)
            prescription = dose if prescription is None else max(prescription, dose)
    rs_uid = None
    if ds.get("ReferencedStructureSetSequence"):
        rs_uid = str(ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID)
    try:
        identity = DicomIdentity.from_dataset(ds)
    except DicomError:
        identity = None
    return RTPlan(
        label=str(ds.get("RTPlanLabel", "")),
        name=str(ds.get("RTPlanName", "")),
        beams=tuple(beams),
        n_fractions=n_fractions,
        prescription_dose_gy=prescription,
        patient_position=next(iter(setups.values()), "HFS"),
        frame_of_reference_uid=str(ds["FrameOfReferenceUID"].value)
        if "FrameOfReferenceUID" in ds
        else None,
        referenced_rtstruct_uid=rs_uid,
        sop_instance_uid=str(ds.SOPInstanceUID),
        identity=identity,
    )


__all__ = ["DEFAULT_MACHINE_NAME", "RTPlan", "WrittenRTPlan", "read_rtplan", "write_rtplan"]
