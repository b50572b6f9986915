"""RTPLAN reading (reference plan) and writing (beams, MLC, MU, prescription, fluence files)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from lattice_plan.dose.beam import MLC, Beam, FluenceMap, Jaws
from lattice_plan.errors import DicomError
from lattice_plan.io.dicom_common import DicomIdentity
from lattice_plan.io.fluence_text import read_optimal_fluence, write_optimal_fluence
from lattice_plan.io.rtplan import read_rtplan, write_rtplan
from tests.conftest import reference_path

RS_UID = "1.2.826.0.1.3680043.8.498.2"
ISO = (52.0, 38.0, 0.0)


@pytest.fixture(scope="module")
def identity():
    return DicomIdentity.new("PLAN-1", "Plan^Test")


@pytest.fixture(scope="module")
def beams():
    edges = (np.arange(81) - 40) * 5.0
    centres = 0.5 * (edges[:-1] + edges[1:])
    open_pair = np.abs(centres) < 30
    mlc = MLC(edges, np.where(open_pair, -25.0, 0.0), np.where(open_pair, 35.0, 0.0))
    jaws = Jaws(-30.0, 40.0, -30.0, 30.0)
    rng = np.random.default_rng(3)
    fluence = FluenceMap.covering(jaws, 5.0, rng.uniform(0.0, 1.0, (12, 14)))
    return [
        Beam("AP", 0.0, ISO, jaws, mu=123.4, mlc=mlc),
        Beam("LAO", 45.0, ISO, jaws, mu=80.25, collimator_deg=10.0, couch_deg=350.0, mlc=mlc),
        Beam("LAT", 90.0, ISO, jaws, mu=50.0, fluence=fluence, energy="10FFF"),
    ]


def test_breast_boost_plan_reads():
    plan = read_rtplan(reference_path("dicom", "breast-boost-plan", "rtplan.dcm"))
    # README of the reference set: 4 dynamic photon beams, 7 fractions, 14 Gy.
    assert plan.n_fractions == 7
    assert plan.prescription_dose_gy == pytest.approx(14.0)
    assert plan.dose_per_fraction_gy == pytest.approx(2.0)
    assert [b.name for b in plan.beams] == ["3 RAO", "4 AP", "5 LAO", "6 LPO"]
    # Beam Meterset of each beam in the fraction group (MU per fraction).
    assert [b.mu for b in plan.beams] == [97.0, 87.0, 89.0, 94.0]
    assert [b.gantry_deg for b in plan.beams] == [327.0, 0.0, 56.0, 150.0]
    assert [b.energy for b in plan.beams] == ["10X", "6X", "6X", "10X"]
    for b in plan.beams:
        np.testing.assert_allclose(
            b.isocenter_lps_mm, (72.5304715048, -304.3445582552, -9.3092401018882)
        )
        assert b.extra["beam_type"] == "DYNAMIC"
        assert b.extra["treatment_machine_name"] == "txmachine"
        assert b.mlc is not None and b.mlc.n_pairs == 60
    assert plan.beams[0].jaws.x2_mm == pytest.approx(70.0)
    assert plan.patient_position == "HFS"
    rs = pydicom.dcmread(
        reference_path("dicom", "breast-boost-plan", "rtss.dcm"), stop_before_pixels=True
    )
    assert plan.referenced_rtstruct_uid == rs.SOPInstanceUID


def test_write_read_round_trip(beams, identity, tmp_path, dciodvfy_errors):
    path = tmp_path / "RP.dcm"
    written = write_rtplan(
        beams,
        path,
        identity,
        n_fractions=5,
        dose_per_fraction_gy=4.0,
        label="SFRT",
        referenced_rtstruct_uid=RS_UID,
        target_roi_number=3,
        machine_name="TrueBeam1",
    )
    assert dciodvfy_errors(path) == []
    plan = read_rtplan(path)
    assert plan.sop_instance_uid == written.sop_instance_uid
    assert plan.label == "SFRT"
    assert plan.n_fractions == 5
    assert plan.prescription_dose_gy == pytest.approx(20.0)
    assert plan.referenced_rtstruct_uid == RS_UID
    assert plan.frame_of_reference_uid == identity.frame_of_reference_uid
    assert plan.total_mu == pytest.approx(123.4 + 80.25 + 50.0)
    for a, b in zip(beams, plan.beams, strict=True):
        assert (b.name, b.gantry_deg, b.collimator_deg, b.couch_deg) == (
            a.name,
            a.gantry_deg,
            a.collimator_deg,
            a.couch_deg,
        )
        assert b.mu == pytest.approx(a.mu)
        assert b.energy == a.energy
        np.testing.assert_allclose(b.isocenter_lps_mm, a.isocenter_lps_mm)
        assert b.jaws == a.jaws
        assert b.extra["treatment_machine_name"] == "TrueBeam1"
        if a.mlc is not None:
            np.testing.assert_array_equal(b.mlc.leaf_edges_mm, a.mlc.leaf_edges_mm)
            np.testing.assert_array_equal(b.mlc.bank_x1_mm, a.mlc.bank_x1_mm)
            np.testing.assert_array_equal(b.mlc.bank_x2_mm, a.mlc.bank_x2_mm)
    ds = pydicom.dcmread(path)
    dref = ds.DoseReferenceSequence[0]
    assert (dref.DoseReferenceStructureType, int(dref.ReferencedROINumber)) == ("VOLUME", 3)
    assert ds.BeamSequence[2].PrimaryFluenceModeSequence[0].FluenceModeID == "FFF"
    # The fluence beam's map travels as an optimal-fluence file beside the plan.
    assert set(written.fluence_files) == {"LAT"}
    fluence = read_optimal_fluence(written.fluence_files["LAT"])
    np.testing.assert_allclose(fluence.values, beams[2].fluence.values, rtol=1e-5, atol=1e-6)
    assert fluence.origin_bld_mm == pytest.approx(beams[2].fluence.origin_bld_mm)


def test_optimal_fluence_layout(tmp_path):
    # Rows written top (largest Y_b) first; origin = centre of the top-left value.
    fluence = FluenceMap(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), 2.5, (-2.5, -1.25))
    path = write_optimal_fluence(fluence, tmp_path / "f.optimal_fluence", comment="test")
    lines = path.read_text().splitlines()
    assert lines[:9] == [
        "# test",
        "optimalfluence",
        "sizex\t3",
        "sizey\t2",
        "spacingx\t2.5",
        "spacingy\t2.5",
        "originx\t-2.5",
        "originy\t1.25",
        "values",
    ]
    assert lines[9:] == ["4\t5\t6", "1\t2\t3"]
    back = read_optimal_fluence(path)
    np.testing.assert_array_equal(back.values, fluence.values)
    assert back.origin_bld_mm == (-2.5, -1.25)
    (tmp_path / "bad.txt").write_text("optimalfluence\nsizex\t3\nvalues\n1\t2\t3\n")
    with pytest.raises(DicomError, match="missing sizey"):
        read_optimal_fluence(tmp_path / "bad.txt")


def test_plan_without_structure_set_and_bad_input(beams, identity, tmp_path, dciodvfy_errors):
    path = tmp_path / "RP.dcm"
    write_rtplan(beams[:2], path, identity, n_fractions=1, dose_per_fraction_gy=8.0)
    assert dciodvfy_errors(path) == []
    assert pydicom.dcmread(path).RTPlanGeometry == "TREATMENT_DEVICE"
    out = tmp_path / "never.dcm"
    with pytest.raises(DicomError, match="at least one beam"):
        write_rtplan([], out, identity, n_fractions=1, dose_per_fraction_gy=8.0)
    with pytest.raises(DicomError, match="unique"):
        write_rtplan([beams[0], beams[0]], out, identity, n_fractions=1, dose_per_fraction_gy=8.0)
    with pytest.raises(DicomError, match="energy"):
        bad = Beam("X", 0.0, ISO, beams[0].jaws, energy="6 MeV photons")
        write_rtplan([bad], out, identity, n_fractions=1, dose_per_fraction_gy=8.0)
    with pytest.raises(DicomError, match="n_fractions"):
        write_rtplan(beams, out, identity, n_fractions=0, dose_per_fraction_gy=8.0)
    assert not out.exists()
    with pytest.raises(DicomError, match="not an RTPLAN"):
        read_rtplan(reference_path("dicom", "breast-boost-plan", "rtss.dcm"))
