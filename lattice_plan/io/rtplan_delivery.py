"""RTPLAN beams as control-point sequences, for recalculating any photon plan's dose.

:func:`read_rtplan_delivery` reads every treatment beam of fraction group 1 as
a :class:`~lattice_plan.dose.control_points.ControlPointBeam` with the
:class:`~lattice_plan.dose.machine.Machine` it is computed with.

Conventions read (PS3.3 C.8.8.14):

- A control point carries only what changes (C.8.8.14.5): angles, jaws, leaves
  and isocentre not given are those of the control point before.
- Jaws: ASYMX/ASYMY or the symmetric X/Y pairs (Elekta); a jaw pair that is
  absent (Elekta Agility has no X jaws: MLCX + ASYMY) is open to +/-200 mm.
- MLCX Leaf/Jaw Positions: bank X1 (B, -X_b) first, then X2 (A, +X_b); 2 x
  NumberOfLeafJawPairs values (40, 60 or 80 pairs alike). The RTPLAN's Leaf
  Position Boundaries win over the machine's.
- Cumulative meterset weights are divided by the Final Cumulative Meterset
  Weight (any value; 1, 100 or the MU are all found in practice).

Refused, with one line naming the plan, the beam and the reason: non-photon
radiation, wedges, compensators, blocks, MLCY, a dosimeter unit other than MU,
decreasing weights, crossing leaves, a declared MLC without positions, leaf
counts that do not match the boundaries, and an unknown machine when the plan
does not say where its leaves are.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from lattice_plan.dose.beam import Jaws
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.dose.machine import Machine, default_machine, shipped_machines
from lattice_plan.errors import DicomError, DoseError
from lattice_plan.io.dicom_common import malformed_as_dicom_error, read_dataset, require_modality
from lattice_plan.io.rtplan_read import BeamItem, RTPlan, rtplan_from_dataset, treatment_beam_items

log = logging.getLogger(__name__)

_OPEN_JAW_MM = 200.0
_CROSS_TOL_MM = 1e-3  # leaves "crossed" by less than this are round-off of a closed pair
_WEIGHT_TOL = 1e-6  # relative: decimal strings of 8 digits
_JAW_KEYS = {"ASYMX": "X", "X": "X", "ASYMY": "Y", "Y": "Y"}
_ANGLES = (
    ("GantryAngle", "gantry"),
    ("BeamLimitingDeviceAngle", "collimator"),
    ("PatientSupportAngle", "couch"),
)


@dataclass(frozen=True, eq=False)
class DeliveryPlan:
    """An RTPLAN as the machine delivers it: control-point beams (MU per fraction) and machines.

    ``machines[i]`` is the machine of ``beams[i]``, with the RTPLAN's leaf
    boundaries; ``plan`` holds fractions, prescription and frame of reference.
    """

    plan: RTPlan
    beams: tuple[ControlPointBeam, ...]
    machines: tuple[Machine, ...]

    @property
    def n_fractions(self) -> int:
        """Fractions planned (1 when the RTPLAN does not say)."""
        return self.plan.n_fractions or 1

    @property
    def total_mu(self) -> float:
        """MU of one fraction, summed over the beams."""
        return float(sum(b.mu for b in self.beams))


def read_rtplan_delivery(
    path: str | os.PathLike[str], machine: Machine | None = None
) -> DeliveryPlan:
    """Read every photon treatment beam of an RTPLAN as a control-point beam.

    ``machine``: the machine of every beam (a user's file); without it each
    beam's Treatment Machine Name picks a shipped machine, and a name that is
    not shipped falls back to the default machine's delivery values when the
    RTPLAN gives its leaf boundaries (and is refused when it does not).
    """
    ds = read_dataset(path, what="RTPLAN")
    require_modality(ds, "RTPLAN", path)
    where = f"RTPLAN {str(path)!r}"
    with malformed_as_dicom_error(where):
        plan = rtplan_from_dataset(ds, where)
        _, items = treatment_beam_items(ds, where)
        pairs = [_read_beam(b, machine, where) for b in items]
    return DeliveryPlan(plan, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))


def _refuse(where: str, label: str, reason: str) -> DicomError:
    return DicomError(f"{where}, {label}: {reason}")


def _check_computable(item: Dataset, where: str, label: str) -> None:
    radiation = str(item.get("RadiationType", "") or "")
    if radiation != "PHOTON":
        raise _refuse(
            where, label, f"radiation type {radiation or 'missing'}; only photon beams are computed"
        )
    for count, what in (
        ("NumberOfWedges", "wedge"),
        ("NumberOfCompensators", "compensator"),
        ("NumberOfBlocks", "block"),
    ):
        n = int(item.get(count, 0) or 0)
        if n > 0:
            raise _refuse(
                where,
                label,
                f"{n} {what}(s); beams with a {what} are not computed (no {what} model)",
            )
    unit = str(item.get("PrimaryDosimeterUnit", "MU") or "MU")
    if unit != "MU":
        raise _refuse(where, label, f"primary dosimeter unit {unit}; only MU is computed")


def _devices(item: Dataset, where: str, label: str) -> dict[str, Dataset]:
    devices = {}
    for d in item.get("BeamLimitingDeviceSequence", []) or []:
        kind = str(d.RTBeamLimitingDeviceType)
        if kind == "MLCY":
            raise _refuse(where, label, "MLCY (leaves along Y) is not supported; only MLCX is")
        if kind not in _JAW_KEYS and kind != "MLCX":
            raise _refuse(where, label, f"unknown beam limiting device {kind!r}")
        devices[kind] = d
    return devices


def _machine_for(
    item: Dataset, machine: Machine | None, boundaries: np.ndarray | None, where: str, label: str
) -> Machine:
    name = str(item.get("TreatmentMachineName", "") or "")
    if machine is None:
        if name in shipped_machines():
            machine = default_machine(name)
        elif boundaries is None:
            raise _refuse(
                where,
                label,
                f"treatment machine {name!r} is not a shipped machine "
                f"({', '.join(shipped_machines())}) and the RTPLAN gives no leaf boundaries; "
                "pass its machine file (--machine FILE)",
            )
        else:
            machine = default_machine()
            log.info(
                "%s, %s: machine %r is not shipped; %s delivery values with the plan's leaves",
                where,
                label,
                name,
                machine.name,
            )
    if boundaries is not None:
        try:
            machine = machine.with_leaf_edges(boundaries)
        except DoseError as exc:
            raise _refuse(where, label, f"leaf position boundaries not usable: {exc}") from None
    return machine


def _read_beam(
    b: BeamItem, machine: Machine | None, where: str
) -> tuple[ControlPointBeam, Machine]:
    item = b.item
    number = int(item.BeamNumber)
    name = str(item.get("BeamName", "") or f"Beam {number}")
    label = f"beam {number} {name!r}"
    _check_computable(item, where, label)
    if b.mu is None:
        raise _refuse(where, label, "no Beam Meterset in the fraction group; MU unknown")
    devices = _devices(item, where, label)
    boundaries = None
    n_pairs = None
    if "MLCX" in devices:
        d = devices["MLCX"]
        n_pairs = int(d.get("NumberOfLeafJawPairs", 0) or 0)
        if "LeafPositionBoundaries" in d and d.LeafPositionBoundaries is not None:
            boundaries = np.array([float(v) for v in d.LeafPositionBoundaries])
            if len(boundaries) != n_pairs + 1:
                raise _refuse(
                    where,
                    label,
                    f"MLCX declares {n_pairs} leaf pairs but {len(boundaries)} leaf position "
                    f"boundaries (needs {n_pairs + 1})",
                )
    mach = _machine_for(item, machine, boundaries, where, label)
    if n_pairs is not None and n_pairs != mach.mlc.n_pairs:
        raise _refuse(
            where,
            label,
            f"MLCX has {n_pairs} leaf pairs but machine {mach.name!r} has {mach.mlc.n_pairs}; "
            "give the matching machine file",
        )
    cps = list(item.get("ControlPointSequence", []) or [])
    if len(cps) < 2:
        raise _refuse(where, label, f"{len(cps)} control point(s); a beam needs at least 2")
    last_w = _weight(cps[-1], len(cps) - 1, where, label)
    final = item.get("FinalCumulativeMetersetWeight")
    final_w = float(final) if final not in (None, "") else last_w
    if not final_w > 0:
        raise _refuse(where, label, f"final cumulative meterset weight {final_w} is not positive")
    if abs(last_w - final_w) > _WEIGHT_TOL * final_w:
        raise _refuse(
            where,
            label,
            f"the last control point's cumulative meterset weight {last_w:g} differs from the "
            f"Final Cumulative Meterset Weight {final_w:g}",
        )
    points = _control_points(cps, n_pairs, final_w, "MLCX" in devices, where, label)
    iso = cps[0].get("IsocenterPosition")
    energy = cps[0].get("NominalBeamEnergy")
    if iso is None or energy in (None, ""):
        raise _refuse(where, label, "the first control point lacks its isocentre or energy")
    fff = any(
        str(m.get("FluenceModeID", "")) == "FFF" for m in item.get("PrimaryFluenceModeSequence", [])
    )
    try:
        beam = ControlPointBeam(
            name=name,
            isocenter_lps_mm=tuple(float(v) for v in iso),
            mu=float(b.mu),
            control_points=tuple(points),
            leaf_edges_mm=mach.mlc.leaf_edges_mm if "MLCX" in devices else None,
            beam_type=str(item.get("BeamType", "STATIC")),
            energy=f"{float(energy):g}{'FFF' if fff else 'X'}",
            sad_mm=float(item.get("SourceAxisDistance", 1000.0) or 1000.0),
            number=number,
        )
    except DoseError as exc:
        raise _refuse(where, label, str(exc)) from None
    return beam, mach


def _weight(cp: Dataset, index: int, where: str, label: str) -> float:
    w = cp.get("CumulativeMetersetWeight")
    if w in (None, ""):
        raise _refuse(where, f"{label}, control point {index}", "no cumulative meterset weight")
    return float(w)


def _control_points(
    cps: list[Dataset],
    n_pairs: int | None,
    final_w: float,
    has_mlc: bool,
    where: str,
    label: str,
) -> list[ControlPoint]:
    """The control points with the values each inherits from the ones before."""
    state: dict[str, object] = {"gantry_direction": "NONE"}
    jaws = {"X": (-_OPEN_JAW_MM, _OPEN_JAW_MM), "Y": (-_OPEN_JAW_MM, _OPEN_JAW_MM)}
    leaves: np.ndarray | None = None
    iso0 = cps[0].get("IsocenterPosition")
    out = []
    previous_w = 0.0
    for index, cp in enumerate(cps):
        at = f"{label}, control point {index}"
        for keyword, key in _ANGLES:
            if cp.get(keyword) not in (None, ""):
                state[key] = round(float(cp.get(keyword)), 6)  # TPSs write 7e-10 for 0
            elif key not in state:
                raise _refuse(where, at, f"no {keyword} at or before this control point")
        if cp.get("GantryRotationDirection") not in (None, ""):
            state["gantry_direction"] = str(cp.GantryRotationDirection)
        iso = cp.get("IsocenterPosition")
        if (
            index > 0
            and iso is not None
            and iso0 is not None
            and not np.allclose([float(v) for v in iso], [float(v) for v in iso0], atol=1e-3)
        ):
            raise _refuse(where, at, "the isocentre moves within the beam; this is not computed")
        for d in cp.get("BeamLimitingDevicePositionSequence", []) or []:
            kind = str(d.RTBeamLimitingDeviceType)
            values = np.array([float(v) for v in d.LeafJawPositions])
            if kind in _JAW_KEYS:
                if len(values) != 2:
                    raise _refuse(where, at, f"{kind} has {len(values)} positions, not 2")
                jaws[_JAW_KEYS[kind]] = (float(values[0]), float(values[1]))
            elif kind == "MLCX":
                if n_pairs is None:
                    raise _refuse(where, at, "MLCX positions for an MLC the beam does not declare")
                if len(values) != 2 * n_pairs:
                    raise _refuse(
                        where,
                        at,
                        f"MLCX has {len(values)} leaf positions; {n_pairs} leaf pairs need "
                        f"{2 * n_pairs}",
                    )
                leaves = values
        if has_mlc and leaves is None:
            raise _refuse(where, at, "the beam declares an MLCX but no leaf positions are given")
        weight = _weight(cp, index, where, label) / final_w
        if abs(weight - 1.0) <= _WEIGHT_TOL:
            weight = 1.0  # written as 0.99999999 or 1.00000001 by some systems
        if weight > 1.0:
            raise _refuse(
                where,
                at,
                f"cumulative meterset weight {weight * final_w:g} exceeds the Final Cumulative "
                f"Meterset Weight {final_w:g}",
            )
        if weight < previous_w - _WEIGHT_TOL:
            raise _refuse(
                where,
                at,
                f"cumulative meterset weight {weight * final_w:g} is below the previous "
                f"{previous_w * final_w:g}; weights must not decrease",
            )
        previous_w = weight
        out.append(_control_point(state, jaws, leaves, n_pairs, weight, where, at))
    return out


def _control_point(
    state: dict[str, object],
    jaws: dict[str, tuple[float, float]],
    leaves: np.ndarray | None,
    n_pairs: int | None,
    weight: float,
    where: str,
    at: str,
) -> ControlPoint:
    x1 = x2 = None
    if leaves is not None and n_pairs is not None:
        x1, x2 = leaves[:n_pairs].copy(), leaves[n_pairs:].copy()
        crossed = np.flatnonzero(x1 > x2 + _CROSS_TOL_MM)
        if len(crossed):
            k = int(crossed[0])
            raise _refuse(
                where,
                at,
                f"leaf pair {k + 1} crosses: bank X1 (B) at {x1[k]:g} mm lies beyond "
                f"bank X2 (A) at {x2[k]:g} mm",
            )
        x1 = np.minimum(x1, x2)
    try:
        return ControlPoint(
            cumulative_meterset_weight=weight,
            gantry_deg=float(state["gantry"]),  # type: ignore[arg-type]
            collimator_deg=float(state["collimator"]),  # type: ignore[arg-type]
            couch_deg=float(state["couch"]),  # type: ignore[arg-type]
            jaws=Jaws(jaws["X"][0], jaws["X"][1], jaws["Y"][0], jaws["Y"][1]),
            mlc_x1_mm=x1,
            mlc_x2_mm=x2,
            gantry_direction=str(state["gantry_direction"]),
        )
    except DoseError as exc:
        raise _refuse(where, at, str(exc)) from None


__all__ = ["DeliveryPlan", "read_rtplan_delivery"]
