"""RTPLAN reading as static beams: the plan's fractions, prescription and each beam's first aperture.

:func:`read_rtplan` reads an RTPLAN's beams, isocentre, MU and fractions. Each
beam's aperture is that of its first control point; dynamic beams (IMRT, arcs)
keep their beam type and number of control points in ``Beam.extra``. This is
the view protocol QA needs (fractions, prescription, beam list); the full
control-point sequences, as the dose is recalculated from them, are read by
:mod:`lattice_plan.io.rtplan_delivery`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from lattice_plan.dose.beam import MLC, Beam, Jaws
from lattice_plan.errors import DicomError, DoseError
from lattice_plan.io.dicom_common import (
    DicomIdentity,
    malformed_as_dicom_error,
    read_dataset,
    require_modality,
)

log = logging.getLogger(__name__)

_JAW_LIMIT_MM = 200.0


@dataclass(frozen=True, eq=False)
class BeamItem:
    """One treatment beam of an RTPLAN dataset: its Beam Sequence item, MU per fraction, position."""

    item: Dataset
    mu: float | None
    patient_position: str


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
        return rtplan_from_dataset(ds, where)


def treatment_beam_items(ds: Dataset, where: str) -> tuple[int | None, list[BeamItem]]:
    """(fractions planned, the treatment beams of fraction group 1 with MU and patient position).

    Setup beams and beams outside the first fraction group are left out; a
    beam without a Beam Meterset gets ``mu = None``.
    """
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
    items = []
    for item in ds.get("BeamSequence", []):
        number = int(item.BeamNumber)
        if in_group is not None and number not in in_group:
            continue
        if str(item.get("TreatmentDeliveryType", "TREATMENT")) != "TREATMENT":
            continue
        position = setups.get(int(item.get("ReferencedPatientSetupNumber", 1) or 1), "HFS")
        items.append(BeamItem(item, mu_of.get(number), position))
    if not items and ds.get("IonBeamSequence"):
        ion = ds.IonBeamSequence[0]
        raise DicomError(
            f"{where}, beam {ion.get('BeamNumber', 1)} {str(ion.get('BeamName', '') or '')!r}: "
            f"radiation type {ion.get('RadiationType', 'ION') or 'ION'} (an RT Ion Plan); "
            "only photon beams are computed"
        )
    if not items:
        raise DicomError(f"{where} holds no treatment beams")
    return n_fractions, items


def rtplan_from_dataset(ds: Dataset, where: str) -> RTPlan:
    n_fractions, items = treatment_beam_items(ds, where)
    beams = [_read_beam(b.item, b.mu, b.patient_position, where) for b in items]
    setups = [
        str(s.get("PatientPosition", "") or "HFS") for s in ds.get("PatientSetupSequence", [])
    ]
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
        patient_position=setups[0] if setups else "HFS",
        frame_of_reference_uid=str(ds["FrameOfReferenceUID"].value)
        if "FrameOfReferenceUID" in ds
        else None,
        referenced_rtstruct_uid=rs_uid,
        sop_instance_uid=str(ds.SOPInstanceUID),
        identity=identity,
    )


__all__ = ["BeamItem", "RTPlan", "read_rtplan", "rtplan_from_dataset", "treatment_beam_items"]
