"""RTPLAN Beam Sequence items (PS3.3 C.8.8.14): a static beam, or a control-point beam.

Both write the beam-limiting devices ASYMX, ASYMY and, with an MLC, MLCX with
its Leaf Position Boundaries; MLCX Leaf/Jaw Positions hold bank X1 (B, -X_b)
first, then bank X2 (A, +X_b). Positions are at the isocentre plane in mm,
angles in degrees (IEC 61217).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.errors import DicomError
from lattice_plan.io.dicom_common import format_ds, format_ds_list

_TECHNIQUE_TEXT = {
    "static": "static field",
    "step_and_shoot": "step-and-shoot IMRT: segments are pairs of control points",
    "sliding_window": "sliding-window IMRT: leaves move between control points",
    "arc": "arc: gantry and leaves move between control points",
}


def energy_of(energy: str, beam: str) -> tuple[str, float, bool]:
    """(radiation type, nominal energy in MV or MeV, flattening-filter free) from '6X', '10FFF', '9E'."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(X|MV|FFF|E|MEV)\s*", energy.upper())
    if not m:
        raise DicomError(
            f"beam {beam!r}: energy {energy!r} is not understood; use e.g. '6X', '10FFF' or '9E'"
        )
    value, kind = float(m.group(1)), m.group(2)
    return ("ELECTRON" if kind in ("E", "MEV") else "PHOTON"), value, kind == "FFF"


def _device(kind: str, positions: Sequence[float] | ArrayLike) -> Dataset:
    item = Dataset()
    item.RTBeamLimitingDeviceType = kind
    item.LeafJawPositions = format_ds_list(positions)
    return item


def _beam_header(
    *,
    name: str,
    energy: str,
    number: int,
    machine_name: str,
    sad_mm: float,
    beam_type: str,
    description: str,
    leaf_edges_mm: ArrayLike | None,
    n_control_points: int,
) -> tuple[Dataset, float]:
    """The beam's attributes outside its control points, and its nominal energy."""
    radiation, nominal, fff = energy_of(energy, name)
    item = Dataset()
    item.BeamNumber = number
    item.BeamName = name[:64]
    item.BeamDescription = description[:64]
    item.BeamType = beam_type
    item.RadiationType = radiation
    item.TreatmentMachineName = machine_name[:16]
    item.PrimaryDosimeterUnit = "MU"
    item.SourceAxisDistance = format_ds(sad_mm)
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
    if leaf_edges_mm is not None:
        edges = np.asarray(leaf_edges_mm, dtype=float)
        d = Dataset()
        d.RTBeamLimitingDeviceType = "MLCX"
        d.NumberOfLeafJawPairs = len(edges) - 1
        d.LeafPositionBoundaries = format_ds_list(edges)
        devices.append(d)
    item.BeamLimitingDeviceSequence = devices
    item.ReferencedPatientSetupNumber = 1
    item.TreatmentDeliveryType = "TREATMENT"
    item.NumberOfWedges = 0
    item.NumberOfCompensators = 0
    item.NumberOfBoli = 0
    item.NumberOfBlocks = 0
    item.FinalCumulativeMetersetWeight = "1"
    item.NumberOfControlPoints = n_control_points
    return item, nominal


def _first_control_point(nominal_energy: float, isocenter_lps_mm: Sequence[float]) -> Dataset:
    """Control point 0 with what only the first one carries: energy, isocentre, table top."""
    cp = Dataset()
    cp.ControlPointIndex = 0
    cp.NominalBeamEnergy = format_ds(nominal_energy)
    cp.TableTopEccentricAngle = "0"
    cp.TableTopEccentricRotationDirection = "NONE"
    cp.TableTopVerticalPosition = ""
    cp.TableTopLongitudinalPosition = ""
    cp.TableTopLateralPosition = ""
    cp.IsocenterPosition = format_ds_list(isocenter_lps_mm)
    return cp


def static_beam_item(beam: Beam, number: int, machine_name: str) -> Dataset:
    """A STATIC beam of two control points: the beam's jaws and MLC for its whole meterset."""
    item, nominal = _beam_header(
        name=beam.name,
        energy=beam.energy,
        number=number,
        machine_name=str(beam.extra.get("treatment_machine_name", machine_name)),
        sad_mm=beam.sad_mm,
        beam_type="STATIC",
        description="fluence beam: optimal fluence in the plan's .optimal_fluence file"
        if beam.fluence is not None
        else "static conformal beam",
        leaf_edges_mm=None if beam.mlc is None else beam.mlc.leaf_edges_mm,
        n_control_points=2,
    )
    cp0 = _first_control_point(nominal, beam.isocenter_lps_mm)
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
    cp0.CumulativeMetersetWeight = "0"
    cp1 = Dataset()
    cp1.ControlPointIndex = 1
    cp1.CumulativeMetersetWeight = "1"
    item.ControlPointSequence = DicomSequence([cp0, cp1])
    return item


def _rotation(angles_deg: Sequence[float], index: int) -> str:
    """Rotation for the segment after control point ``index``: the shorter way to the next angle."""
    if index + 1 >= len(angles_deg) or angles_deg[index + 1] == angles_deg[index]:
        return "NONE"
    step = (angles_deg[index + 1] - angles_deg[index] + 180.0) % 360.0 - 180.0
    return "CW" if step > 0 else "CC"


def control_point_beam_item(beam: ControlPointBeam, number: int, machine_name: str) -> Dataset:
    """A beam with its whole control-point sequence (PS3.3 C.8.8.14.5).

    Jaws and angles are written at control point 0 and where they change; the
    MLC at every control point, which is what step-and-shoot segments (pairs of
    control points with equal leaves) and sliding windows both read plainly.
    """
    has_mlc = beam.control_points[0].mlc_x1_mm is not None
    item, nominal = _beam_header(
        name=beam.name,
        energy=beam.energy,
        number=number,
        machine_name=machine_name,
        sad_mm=beam.sad_mm,
        beam_type=beam.beam_type,
        description=_TECHNIQUE_TEXT.get(beam.technique, beam.technique),
        leaf_edges_mm=beam.leaf_edges_mm if has_mlc else None,
        n_control_points=len(beam.control_points),
    )
    collimator = [cp.collimator_deg for cp in beam.control_points]
    couch = [cp.couch_deg for cp in beam.control_points]
    items = DicomSequence()
    previous: ControlPoint | None = None
    for index, cp in enumerate(beam.control_points):
        out = _first_control_point(nominal, beam.isocenter_lps_mm) if index == 0 else Dataset()
        out.ControlPointIndex = index
        positions = DicomSequence()
        j, pj = cp.jaws, None if previous is None else previous.jaws
        if pj is None or (j.x1_mm, j.x2_mm) != (pj.x1_mm, pj.x2_mm):
            positions.append(_device("ASYMX", [j.x1_mm, j.x2_mm]))
        if pj is None or (j.y1_mm, j.y2_mm) != (pj.y1_mm, pj.y2_mm):
            positions.append(_device("ASYMY", [j.y1_mm, j.y2_mm]))
        if has_mlc:
            positions.append(_device("MLCX", np.concatenate([cp.mlc_x1_mm, cp.mlc_x2_mm])))
        if len(positions):
            out.BeamLimitingDevicePositionSequence = positions
        if previous is None or cp.gantry_deg != previous.gantry_deg:
            out.GantryAngle = format_ds(cp.gantry_deg)
        if previous is None or cp.gantry_direction != previous.gantry_direction:
            out.GantryRotationDirection = cp.gantry_direction
        for angle_key, direction_key, angles in (
            ("BeamLimitingDeviceAngle", "BeamLimitingDeviceRotationDirection", collimator),
            ("PatientSupportAngle", "PatientSupportRotationDirection", couch),
        ):
            direction = _rotation(angles, index)
            if index == 0 or angles[index] != angles[index - 1]:
                setattr(out, angle_key, format_ds(angles[index]))
            if index == 0 or direction != _rotation(angles, index - 1):
                setattr(out, direction_key, direction)
        out.CumulativeMetersetWeight = format_ds(cp.cumulative_meterset_weight)
        items.append(out)
        previous = cp
    item.ControlPointSequence = items
    return item


__all__ = ["control_point_beam_item", "energy_of", "static_beam_item"]
