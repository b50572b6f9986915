"""RTPLAN control points: what write_rtplan writes (raw tags read with pydicom) and read back.

Expected tag values are computed here from the beams' own numbers, not read
through the package; the MLCX layout is checked against the shared
breast-boost export of a commercial planning system (bank X1 values first).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pydicom
import pytest

from lattice_plan.dose.beam import MLC, Beam, Jaws
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.dose.machine import default_machine
from lattice_plan.io.dicom_common import DicomIdentity
from lattice_plan.io.rtplan import read_rtplan, read_rtplan_delivery, write_rtplan
from tests.conftest import reference_path

ISO_A = (10.0, -20.0, 5.0)
ISO_B = (-30.0, 15.0, -12.5)
BREAST = ("dicom", "breast-boost-plan", "rtplan.dcm")


def _cp(w, gantry, x1, x2, jaws=None, direction="NONE", coll=0.0, couch=0.0):
    jaws = jaws or Jaws(-60.0, 60.0, -50.0, 50.0)
    return ControlPoint(w, gantry, coll, couch, jaws, np.asarray(x1), np.asarray(x2), direction)


@pytest.fixture(scope="module")
def machine():
    return default_machine("varian-120")


@pytest.fixture(scope="module")
def cp_beams(machine):
    """A sliding window, a step-and-shoot beam (two segments) and an arc, two isocentres."""
    edges = machine.mlc.leaf_edges_mm
    n = machine.mlc.n_pairs
    centres = 0.5 * (edges[:-1] + edges[1:])
    rows = np.abs(centres) < 45.0
    closed = np.where(rows, -40.0, 0.0)

    def bank(x):
        return np.where(rows, x, 0.0)

    sweep = [0.0, 0.25, 0.5, 0.75, 1.0]
    sliding = ControlPointBeam(
        "SW 30",
        ISO_A,
        mu=157.25,
        control_points=tuple(
            _cp(w, 30.0, bank(-40.0 + 70.0 * w), bank(-20.0 + 70.0 * w), coll=15.0) for w in sweep
        ),
        leaf_edges_mm=edges,
        beam_type="DYNAMIC",
    )
    seg = [(-30.0, 10.0), (-10.0, 30.0)]
    sns_points = []
    for k, (a, b) in enumerate(seg):
        w0, w1 = k * 0.4, 0.4 + k * 0.6
        for w in (w0, w1):
            sns_points.append(
                _cp(w, 300.0, bank(a), bank(b), Jaws(-35.0, 35.0, -45.0, 45.0), couch=10.0)
            )
    sns = ControlPointBeam(
        "SNS 300",
        ISO_A,
        mu=88.5,
        control_points=tuple(sns_points),
        leaf_edges_mm=edges,
        beam_type="STATIC",
        energy="10X",
    )
    gantries = [181.0, 240.0, 300.0, 0.0, 60.0, 179.0]
    weights = np.linspace(0.0, 1.0, len(gantries))
    arc = ControlPointBeam(
        "ARC CW",
        ISO_B,
        mu=321.0,
        control_points=tuple(
            _cp(
                w,
                g,
                bank(-25.0 + 5 * i),
                bank(25.0 + 5 * i),
                direction="CW" if i < len(gantries) - 1 else "NONE",
                coll=30.0,
            )
            for i, (w, g) in enumerate(zip(weights, gantries, strict=True))
        ),
        leaf_edges_mm=edges,
        beam_type="DYNAMIC",
    )
    assert (sliding.technique, sns.technique, arc.technique) == (
        "sliding_window",
        "step_and_shoot",
        "arc",
    )
    assert n == 60 and closed.shape == (n,)
    return [sliding, sns, arc]


@pytest.fixture(scope="module")
def written(cp_beams, machine, tmp_path_factory):
    path = tmp_path_factory.mktemp("cp_plan") / "RP.dcm"
    identity = DicomIdentity.new("CP-1", "ControlPoints^Test")
    write_rtplan(cp_beams, path, identity, n_fractions=3, dose_per_fraction_gy=2.5, machine=machine)
    return path, identity


def test_written_plan_is_valid_dicom(written, dciodvfy_errors):
    assert dciodvfy_errors(written[0]) == []


def test_raw_tags_of_written_control_points(written, cp_beams, machine):
    ds = pydicom.dcmread(written[0])
    assert int(ds.FractionGroupSequence[0].NumberOfFractionsPlanned) == 3
    refs = ds.FractionGroupSequence[0].ReferencedBeamSequence
    assert [float(r.BeamMeterset) for r in refs] == [157.25, 88.5, 321.0]
    assert [b.BeamType for b in ds.BeamSequence] == ["DYNAMIC", "STATIC", "DYNAMIC"]
    assert {b.TreatmentMachineName for b in ds.BeamSequence} == {"varian-120"}
    assert [float(b.ControlPointSequence[0].NominalBeamEnergy) for b in ds.BeamSequence] == [
        6.0,
        10.0,
        6.0,
    ]
    for item, beam in zip(ds.BeamSequence, cp_beams, strict=True):
        devices = {d.RTBeamLimitingDeviceType: d for d in item.BeamLimitingDeviceSequence}
        assert set(devices) == {"ASYMX", "ASYMY", "MLCX"}
        assert int(devices["MLCX"].NumberOfLeafJawPairs) == 60
        np.testing.assert_allclose(
            [float(v) for v in devices["MLCX"].LeafPositionBoundaries], machine.mlc.leaf_edges_mm
        )
        cps = item.ControlPointSequence
        assert int(item.NumberOfControlPoints) == len(cps) == beam.n_control_points
        np.testing.assert_allclose(
            [float(v) for v in cps[0].IsocenterPosition], beam.isocenter_lps_mm
        )
        weights = np.array([float(c.CumulativeMetersetWeight) for c in cps])
        assert weights[0] == 0.0 and np.all(np.diff(weights) >= 0)
        assert weights[-1] == float(item.FinalCumulativeMetersetWeight) == 1.0
        for c, point in zip(cps, beam.control_points, strict=True):
            mlc = [
                d
                for d in c.BeamLimitingDevicePositionSequence
                if d.RTBeamLimitingDeviceType == "MLCX"
            ]
            values = np.array([float(v) for v in mlc[0].LeafJawPositions])
            # bank X1 (B, -X_b) first, then X2 (A, +X_b)
            np.testing.assert_allclose(values[:60], point.mlc_x1_mm)
            np.testing.assert_allclose(values[60:], point.mlc_x2_mm)
    arc = ds.BeamSequence[2].ControlPointSequence
    assert [float(c.GantryAngle) for c in arc] == [181.0, 240.0, 300.0, 0.0, 60.0, 179.0]
    assert arc[0].GantryRotationDirection == "CW" and arc[-1].GantryRotationDirection == "NONE"
    assert float(arc[0].BeamLimitingDeviceAngle) == 30.0
    # step-and-shoot: the gantry is written once; segment k's leaves at control points 2k, 2k+1
    sns = ds.BeamSequence[1].ControlPointSequence
    assert ["GantryAngle" in c for c in sns] == [True, False, False, False]
    assert float(sns[0].PatientSupportAngle) == 10.0
    assert [float(c.CumulativeMetersetWeight) for c in sns] == [0.0, 0.4, 0.4, 1.0]


def test_mlc_layout_matches_the_breast_boost_export():
    # A commercial system's sliding-window export: at every control point the first half of the
    # MLCX positions (bank X1/B) lies at or behind the second half (bank X2/A).
    ds = pydicom.dcmread(reference_path(*BREAST))
    for item in ds.BeamSequence:
        for cp in item.ControlPointSequence:
            for d in cp.BeamLimitingDevicePositionSequence:
                if d.RTBeamLimitingDeviceType == "MLCX":
                    v = np.array([float(x) for x in d.LeafJawPositions])
                    assert np.all(v[:60] <= v[60:])


def test_written_plan_reads_back(written, cp_beams, machine):
    delivery = read_rtplan_delivery(written[0])
    assert delivery.n_fractions == 3
    assert delivery.plan.frame_of_reference_uid == written[1].frame_of_reference_uid
    assert delivery.total_mu == pytest.approx(157.25 + 88.5 + 321.0)
    assert [m.name for m in delivery.machines] == ["varian-120"] * 3
    for got, want in zip(delivery.beams, cp_beams, strict=True):
        assert (got.name, got.beam_type, got.technique, got.energy) == (
            want.name,
            want.beam_type,
            want.technique,
            want.energy,
        )
        assert got.mu == pytest.approx(want.mu)
        np.testing.assert_allclose(got.isocenter_lps_mm, want.isocenter_lps_mm)
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-14)
        np.testing.assert_allclose(got.gantry_path_deg(), want.gantry_path_deg())
        np.testing.assert_allclose(got.jaw_array(), want.jaw_array())
        for a, b in zip(got.banks(), want.banks(), strict=True):
            np.testing.assert_allclose(a, b)
        assert [c.collimator_deg for c in got.control_points] == [
            c.collimator_deg for c in want.control_points
        ]
        assert [c.couch_deg for c in got.control_points] == [
            c.couch_deg for c in want.control_points
        ]
    # The static view used by protocol QA still reads the plan (first control point).
    plan = read_rtplan(written[0])
    assert [b.extra["n_control_points"] for b in plan.beams] == [5, 4, 6]


def test_static_and_control_point_beams_in_one_plan(cp_beams, machine, tmp_path, dciodvfy_errors):
    edges = machine.mlc.leaf_edges_mm
    mlc = MLC(edges, np.full(60, -30.0), np.full(60, 30.0))
    static = Beam("CRT AP", 0.0, ISO_A, Jaws(-40.0, 40.0, -40.0, 40.0), mu=200.0, mlc=mlc)
    path = tmp_path / "RP.dcm"
    write_rtplan(
        [static, cp_beams[0]],
        path,
        DicomIdentity.new("M", "Mixed"),
        n_fractions=1,
        dose_per_fraction_gy=8.0,
    )
    assert dciodvfy_errors(path) == []
    delivery = read_rtplan_delivery(path, machine)
    assert [b.technique for b in delivery.beams] == ["static", "sliding_window"]
    np.testing.assert_allclose(delivery.beams[0].banks()[0], -30.0)
    assert delivery.beams[0].mu == 200.0


def test_breast_boost_control_points_against_pydicom():
    path = reference_path(*BREAST)
    ds = pydicom.dcmread(path)
    delivery = read_rtplan_delivery(path)
    mu = {
        int(r.ReferencedBeamNumber): float(r.BeamMeterset)
        for r in ds.FractionGroupSequence[0].ReferencedBeamSequence
    }
    assert len(delivery.beams) == len(ds.BeamSequence) == 4
    for beam, item in zip(delivery.beams, ds.BeamSequence, strict=True):
        cps = item.ControlPointSequence
        assert beam.n_control_points == len(cps) == int(item.NumberOfControlPoints)
        assert beam.mu == mu[int(item.BeamNumber)]
        assert beam.beam_type == "DYNAMIC" and beam.technique == "sliding_window"
        mlc = next(
            d for d in item.BeamLimitingDeviceSequence if d.RTBeamLimitingDeviceType == "MLCX"
        )
        np.testing.assert_allclose(
            beam.leaf_edges_mm, [float(v) for v in mlc.LeafPositionBoundaries]
        )
        x1, x2 = beam.banks()
        assert x1.shape == (len(cps), int(mlc.NumberOfLeafJawPairs)) == (len(cps), 60)
        for k in (0, len(cps) // 2, len(cps) - 1):
            raw = [
                d
                for d in cps[k].BeamLimitingDevicePositionSequence
                if d.RTBeamLimitingDeviceType == "MLCX"
            ]
            v = np.array([float(x) for x in raw[0].LeafJawPositions])
            np.testing.assert_allclose(np.concatenate([x1[k], x2[k]]), v)
        # jaws and gantry are given only at control point 0 and inherited by the others
        jaw0 = {
            d.RTBeamLimitingDeviceType: [float(x) for x in d.LeafJawPositions]
            for d in cps[0].BeamLimitingDevicePositionSequence
        }
        np.testing.assert_allclose(beam.jaw_array()[-1], jaw0["ASYMX"] + jaw0["ASYMY"])
        assert {c.gantry_deg for c in beam.control_points} == {float(cps[0].GantryAngle)}
        w = np.array([float(c.CumulativeMetersetWeight) for c in cps]) / float(
            item.FinalCumulativeMetersetWeight
        )
        np.testing.assert_allclose(beam.weights, w)


@pytest.mark.slow
def test_breast_boost_fluence_maps_integrate_the_leaf_motion():
    """Each beam's fluence map (delivery-core's exact trajectory integral), summed along a leaf
    row, equals the meterset integral of that row's open width between leaves and jaws, computed
    here by brute force from the control points (transmission, leaf ends and T&G set to 0)."""
    from lattice_plan.dose.delivery import beams_for_dose

    delivery = read_rtplan_delivery(reference_path(*BREAST))
    t = np.linspace(0.0, 1.0, 201)[:, None]  # sub-steps per interval: the width is piecewise linear
    for cp_beam, machine in zip(delivery.beams, delivery.machines, strict=True):
        ideal = replace(
            machine,
            leaf_transmission=0.0,
            jaw_transmission=0.0,
            dosimetric_leaf_gap_mm=0.0,
            tongue_groove_mm=0.0,
        )
        (beam,) = beams_for_dose(cp_beam, ideal, pixel_mm=1.0)
        assert beam.mu == cp_beam.mu and beam.gantry_deg == cp_beam.control_points[0].gantry_deg
        fmap = beam.fluence
        x1, x2 = cp_beam.banks()
        jaws = cp_beam.jaw_array()
        w = cp_beam.weights
        integral = np.zeros(x1.shape[1])  # per leaf pair, mm x meterset fraction
        for k in range(len(w) - 1):
            a1 = x1[k] + t * (x1[k + 1] - x1[k])
            a2 = x2[k] + t * (x2[k + 1] - x2[k])
            width = np.clip(np.minimum(a2, jaws[k, 1]) - np.maximum(a1, jaws[k, 0]), 0.0, None)
            integral += (w[k + 1] - w[k]) * np.trapezoid(width, t[:, 0], axis=0)
        edges = cp_beam.leaf_edges_mm
        y = fmap.y_centers_mm()
        pair = np.searchsorted(edges, y) - 1
        inside = (y > jaws[0, 2] + 1) & (y < jaws[0, 3] - 1) & (pair >= 0) & (pair < len(edges) - 1)
        summed = fmap.values[inside].sum(axis=1) * fmap.beamlet_mm
        np.testing.assert_allclose(summed, integral[pair[inside]], rtol=0.01, atol=0.05)
        assert np.count_nonzero(inside) > 60  # 1 mm rows across the jaw opening
