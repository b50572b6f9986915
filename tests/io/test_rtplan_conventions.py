"""Reading other systems' RTPLAN conventions, and refusing what cannot be computed.

Each file is one of our own plans (or the shared breast-boost export) copied
to tmp_path and changed with pydicom the way another system writes it, or
broken the way the issue lists; nothing corrupt is stored in the repository.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from lattice_plan.dose.beam import Jaws
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.dose.machine import default_machine
from lattice_plan.errors import DicomError
from lattice_plan.io.dicom_common import DicomIdentity
from lattice_plan.io.rtplan import read_rtplan_delivery, write_rtplan
from tests.conftest import reference_path

ISO = (0.0, 0.0, 0.0)


def _beam(machine, name="SW", beam_type="DYNAMIC"):
    n = machine.mlc.n_pairs
    jaws = Jaws(-50.0, 50.0, -40.0, 40.0)
    if beam_type == "DYNAMIC":
        pts = [
            ControlPoint(
                w, 90.0, 0.0, 0.0, jaws, np.full(n, -45.0 + 60 * w), np.full(n, -30.0 + 70 * w)
            )
            for w in (0.0, 0.5, 1.0)
        ]
    else:  # two step-and-shoot segments
        pts = [
            ControlPoint(w, 90.0, 0.0, 0.0, jaws, np.full(n, a), np.full(n, b))
            for w, a, b in (
                (0.0, -20.0, 0.0),
                (0.5, -20.0, 0.0),
                (0.5, -5.0, 20.0),
                (1.0, -5.0, 20.0),
            )
        ]
    return ControlPointBeam(name, ISO, 100.0, tuple(pts), machine.mlc.leaf_edges_mm, beam_type)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    """A two-beam plan (sliding window, step-and-shoot) on the 120-leaf machine."""
    machine = default_machine("varian-120")
    path = tmp_path_factory.mktemp("conventions") / "RP.dcm"
    beams = [_beam(machine, "SW"), _beam(machine, "SNS", "STATIC")]
    write_rtplan(
        beams,
        path,
        DicomIdentity.new("C", "Conv"),
        n_fractions=1,
        dose_per_fraction_gy=2.0,
        machine=machine,
    )
    return path


def _edit(src, dst, change):
    ds = pydicom.dcmread(src)
    change(ds)
    ds.save_as(dst)
    return dst


def _positions(cp, kind):
    return next(
        d for d in cp.BeamLimitingDevicePositionSequence if d.RTBeamLimitingDeviceType == kind
    )


def _drop_device(ds, kind):
    for item in ds.BeamSequence:
        item.BeamLimitingDeviceSequence = DicomSequence(
            [d for d in item.BeamLimitingDeviceSequence if d.RTBeamLimitingDeviceType != kind]
        )
        for cp in item.ControlPointSequence:
            if "BeamLimitingDevicePositionSequence" in cp:
                cp.BeamLimitingDevicePositionSequence = DicomSequence(
                    [
                        d
                        for d in cp.BeamLimitingDevicePositionSequence
                        if d.RTBeamLimitingDeviceType != kind
                    ]
                )


def test_elekta_agility_80_pairs_without_x_jaws(tmp_path):
    # Agility: 80 leaf pairs (160 leaves) of 5 mm, Y diaphragms (ASYMY), no X jaws.
    machine = default_machine("mlc-80")
    assert machine.mlc.n_pairs == 80
    src = tmp_path / "src.dcm"
    write_rtplan(
        [_beam(machine)],
        src,
        DicomIdentity.new("E", "Elekta"),
        n_fractions=1,
        dose_per_fraction_gy=2.0,
        machine=machine,
    )

    def agility(ds):
        _drop_device(ds, "ASYMX")
        ds.BeamSequence[0].TreatmentMachineName = "Agility_1"

    path = _edit(src, tmp_path / "agility.dcm", agility)
    beam = read_rtplan_delivery(path).beams[0]
    x1, x2 = beam.banks()
    assert x1.shape == (3, 80)
    np.testing.assert_allclose(x1[1], -15.0)
    np.testing.assert_allclose(x2[2], 40.0)
    # no X jaws: the MLC alone limits X; the Y diaphragms are read
    np.testing.assert_allclose(beam.jaw_array()[0], [-200.0, 200.0, -40.0, 40.0])


def test_symmetric_jaws_and_any_final_weight(plan_file, tmp_path):
    def elekta(ds):
        item = ds.BeamSequence[0]
        for d in item.BeamLimitingDeviceSequence:
            if d.RTBeamLimitingDeviceType == "ASYMY":
                d.RTBeamLimitingDeviceType = "Y"  # symmetric pair, positions still two values
        _positions(item.ControlPointSequence[0], "ASYMY").RTBeamLimitingDeviceType = "Y"
        item.FinalCumulativeMetersetWeight = "100"
        for cp in item.ControlPointSequence:
            cp.CumulativeMetersetWeight = str(100 * float(cp.CumulativeMetersetWeight))

    beam = read_rtplan_delivery(_edit(plan_file, tmp_path / "e.dcm", elekta)).beams[0]
    np.testing.assert_allclose(beam.weights, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(beam.jaw_array()[1], [-50.0, 50.0, -40.0, 40.0])


def test_control_points_inherit_what_they_do_not_repeat(plan_file, tmp_path):
    # DICOM repeats only what changes: drop each segment's second MLC (unchanged within it).
    def sparse(ds):
        cps = ds.BeamSequence[1].ControlPointSequence
        for k in (1, 3):
            del cps[k].BeamLimitingDevicePositionSequence

    beam = read_rtplan_delivery(_edit(plan_file, tmp_path / "s.dcm", sparse)).beams[1]
    x1, x2 = beam.banks()
    np.testing.assert_allclose(x1[:, 0], [-20.0, -20.0, -5.0, -5.0])
    np.testing.assert_allclose(x2[:, 0], [0.0, 0.0, 20.0, 20.0])
    assert beam.technique == "step_and_shoot"


def _no_weight(ds):
    del ds.BeamSequence[0].ControlPointSequence[1].CumulativeMetersetWeight


def _cross(ds):
    d = _positions(ds.BeamSequence[0].ControlPointSequence[1], "MLCX")
    v = [float(x) for x in d.LeafJawPositions]
    v[29] = v[60 + 29] + 5.0  # leaf pair 30: bank X1 beyond bank X2
    d.LeafJawPositions = v


def _non_monotonic(ds):
    ds.BeamSequence[1].ControlPointSequence[2].CumulativeMetersetWeight = "0.3"


def _missing_mlc(ds):
    cp = ds.BeamSequence[0].ControlPointSequence[0]
    cp.BeamLimitingDevicePositionSequence = DicomSequence(
        [d for d in cp.BeamLimitingDevicePositionSequence if d.RTBeamLimitingDeviceType != "MLCX"]
    )


def _wedge(ds):
    item = ds.BeamSequence[1]
    item.NumberOfWedges = 1
    wedge = Dataset()
    wedge.WedgeNumber = 1
    wedge.WedgeType = "STANDARD"
    wedge.WedgeAngle = "30"
    wedge.WedgeFactor = "0.6"
    wedge.WedgeOrientation = "0"
    item.WedgeSequence = DicomSequence([wedge])


def _electron(ds):
    ds.BeamSequence[1].RadiationType = "ELECTRON"


def _proton(ds):
    ds.BeamSequence[1].RadiationType = "PROTON"


def _ion_plan(ds):
    # an RT Ion Plan (protons): its beams are in IonBeamSequence, there is no BeamSequence
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.8"
    ds.IonBeamSequence = ds.BeamSequence
    del ds.BeamSequence
    for item in ds.IonBeamSequence:
        item.RadiationType = "PROTON"


def _leaf_count(ds):
    mlc = next(
        d
        for d in ds.BeamSequence[0].BeamLimitingDeviceSequence
        if d.RTBeamLimitingDeviceType == "MLCX"
    )
    mlc.NumberOfLeafJawPairs = 40


def _positions_count(ds):
    d = _positions(ds.BeamSequence[0].ControlPointSequence[2], "MLCX")
    d.LeafJawPositions = [float(x) for x in d.LeafJawPositions][:80]


def _unknown_machine(ds):
    for item in ds.BeamSequence:
        item.TreatmentMachineName = "Versa_7"
        for d in item.BeamLimitingDeviceSequence:
            if d.RTBeamLimitingDeviceType == "MLCX":
                del d.LeafPositionBoundaries


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _non_monotonic,
            r"beam 2 'SNS', control point 2: cumulative meterset weight 0.3 is below the previous 0.5",
        ),
        (_no_weight, r"beam 1 'SW', control point 1: no cumulative meterset weight"),
        (_cross, r"beam 1 'SW', control point 1: leaf pair 30 crosses"),
        (
            _missing_mlc,
            r"beam 1 'SW', control point 0: the beam declares an MLCX but no leaf positions",
        ),
        (_wedge, r"beam 2 'SNS': 1 wedge\(s\)"),
        (_electron, r"beam 2 'SNS': radiation type ELECTRON; only photon beams"),
        (_proton, r"beam 2 'SNS': radiation type PROTON; only photon beams"),
        (_ion_plan, r"beam 1 'SW': radiation type PROTON \(an RT Ion Plan\); only photon beams"),
        (_leaf_count, r"beam 1 'SW': MLCX declares 40 leaf pairs but 61 leaf position boundaries"),
        (
            _positions_count,
            r"beam 1 'SW', control point 2: MLCX has 80 leaf positions; 60 leaf pairs need 120",
        ),
        (
            _unknown_machine,
            r"beam 1 'SW': treatment machine 'Versa_7' is not a shipped machine .* pass its machine file",
        ),
    ],
    ids=[
        "non-monotonic",
        "no-weight",
        "crossing",
        "missing-mlc",
        "wedge",
        "electron",
        "proton",
        "ion-plan",
        "leaf-count",
        "positions",
        "machine",
    ],
)
def test_refused_with_one_line(plan_file, tmp_path, change, message):
    path = _edit(plan_file, tmp_path / "bad.dcm", change)
    with pytest.raises(DicomError, match=message) as err:
        read_rtplan_delivery(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text


def test_unknown_machine_is_read_with_its_machine_file(plan_file, tmp_path):
    path = _edit(plan_file, tmp_path / "m.dcm", _unknown_machine)
    delivery = read_rtplan_delivery(path, default_machine("varian-120"))
    assert [m.mlc.n_pairs for m in delivery.machines] == [60, 60]
    with pytest.raises(DicomError, match="MLCX has 60 leaf pairs but machine 'mlc-80' has 80"):
        read_rtplan_delivery(path, default_machine("mlc-80"))


def test_rtplan_leaf_boundaries_win_over_the_machine_file(plan_file):
    # DESIGN.md / issue 16 item 1: the machine file adds delivery values; the RTPLAN's
    # LeafPositionBoundaries (60 pairs, 5/10 mm) replace the file's MLC (mlc-80: 80 x 5 mm).
    ds = pydicom.dcmread(plan_file)
    mlc = next(
        d
        for d in ds.BeamSequence[0].BeamLimitingDeviceSequence
        if d.RTBeamLimitingDeviceType == "MLCX"
    )
    given = default_machine("mlc-80")
    delivery = read_rtplan_delivery(plan_file, given)
    for beam, m in zip(delivery.beams, delivery.machines, strict=True):
        np.testing.assert_allclose(
            m.mlc.leaf_edges_mm, [float(v) for v in mlc.LeafPositionBoundaries]
        )
        np.testing.assert_allclose(beam.leaf_edges_mm, m.mlc.leaf_edges_mm)
        assert m.mlc.n_pairs == 60 and given.mlc.n_pairs == 80
        assert (m.name, m.leaf_transmission) == (given.name, given.leaf_transmission)


def test_breast_boost_copy_with_a_wedge_is_refused(tmp_path):
    src = tmp_path / "rtplan.dcm"
    shutil.copy(reference_path("dicom", "breast-boost-plan", "rtplan.dcm"), src)
    path = _edit(src, tmp_path / "wedged.dcm", _wedge)
    with pytest.raises(
        DicomError, match=r"beam 2 '4 AP': 1 wedge\(s\); beams with a wedge are not computed"
    ):
        read_rtplan_delivery(path)
