"""Our DVHs of a real TPS plan against the planning system's own DVHs (RTDOSE DVHSequence).

Reference: ../shared/reference/dicom/breast-boost-plan (dicompyler-core test data, BSD-3):
the DVHs embedded in rtdose.dcm are cumulative, DVHDoseScaling 1, DVHVolumeUnits CM3, with
0.01 Gy bins (DVHData holds bin width / volume pairs). Their DVHMin/Max/MeanDose fields are in
percent of the 14 Gy prescription although DoseUnits says GY, so the test uses DVHData only.

The planning system's structure volumes follow the no-end-cap convention (a contour stack
stops at its first and last planes; see test_tps_volumes_have_no_end_caps), so the
structures are read with ``end_cap="none"`` to compare like with like.
"""

import warnings

import numpy as np
import pydicom
import pytest

from lattice_plan.analysis.comparison import standard_metrics
from lattice_plan.analysis.dvh import DVH
from lattice_plan.io.dicom_common import DicomWarning
from lattice_plan.io.rtdose import read_rtdose
from lattice_plan.io.rtstruct import read_rtstruct
from tests.conftest import reference_path

CHECKED = ("Tumor Bed", "Tumor Bed Block", "Breast", "Heart", "Lt Lung")


def tps_dvhs(rtdose_path, rtstruct_path):
    """The TPS DVHs by ROI name, read from the DVHSequence with their own units."""
    ds = pydicom.dcmread(rtdose_path)
    rs = pydicom.dcmread(rtstruct_path)
    names = {int(r.ROINumber): r.ROIName for r in rs.StructureSetROISequence}
    out = {}
    for item in ds.DVHSequence:
        assert item.DVHType == "CUMULATIVE" and item.DVHVolumeUnits == "CM3"
        assert item.DoseUnits == "GY"
        data = np.asarray(item.DVHData, dtype=float)
        widths = data[0::2] * float(item.DVHDoseScaling)
        volumes = data[1::2]
        lower_edges = np.concatenate([[0.0], np.cumsum(widths)[:-1]])
        name = names[int(item.DVHReferencedROISequence[0].ReferencedROINumber)]
        out[name] = DVH.from_cumulative(name, lower_edges, volumes)
    return out


@pytest.fixture(scope="module")
def plan():
    base = reference_path("dicom", "breast-boost-plan")
    dose = read_rtdose(base / "rtdose.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)  # the ROI without contours is skipped
        structures = read_rtstruct(base / "rtss.dcm", dose.grid, end_cap="none")
    return dose, structures, tps_dvhs(base / "rtdose.dcm", base / "rtss.dcm")


def test_tps_volumes_have_no_end_caps(plan):
    """The TPS's Breast volume, 396.23 cc (its DVH at 0 Gy), equals our no-end-cap volume
    within 0.1 % and lies 1 % below the half-slice one (its 47 planes, 3 mm apart, end in
    sections of 561 and 2152 mm^2: half a slab of each is 4.1 cc): the planning system's
    contour stacks stop at their end planes."""
    dose, structures, tps = plan
    base = reference_path("dicom", "breast-boost-plan")
    capped = read_rtstruct(base / "rtss.dcm", dose.grid, roi_names=["Breast"])["Breast"]
    theirs = tps["Breast"].volume_cc
    assert structures["Breast"].volume_cc == pytest.approx(theirs, rel=0.001)
    assert capped.volume_cc - theirs == pytest.approx(4.1, abs=0.3)


def _close(ours, theirs, rel=0.02, abs_gy=0.05):
    return abs(ours - theirs) <= max(rel * abs(theirs), abs_gy)


@pytest.mark.parametrize("name", CHECKED)
def test_volume_and_mean_match_tps(plan, name):
    """Volumes within 3 %, Dmean within 2 % (or 0.05 Gy) of the TPS's DVH."""
    dose, structures, tps = plan
    ours = DVH.from_dose(dose, structures[name])
    theirs = tps[name]
    assert ours.volume_cc == pytest.approx(theirs.volume_cc, rel=0.03)
    assert _close(ours.mean_gy, theirs.mean_gy), (ours.mean_gy, theirs.mean_gy)


@pytest.mark.parametrize("name", CHECKED)
def test_d50_matches_tps(plan, name):
    """D50 within 2 % (or 0.05 Gy) of the TPS's DVH."""
    dose, structures, tps = plan
    ours = DVH.from_dose(dose, structures[name]).metric("D50%")
    theirs = tps[name].metric("D50%")
    assert _close(ours, theirs), (ours, theirs)


def test_standard_metric_set_for_every_structure(plan):
    """Every standard metric of the five checked structures matches the same metric of the
    TPS's DVH within 2 % (or 0.05 Gy): measured within 1 % except the low doses of the Breast
    D95%/D98% (0.005 Gy). Dmax, one point, within 6 %: the Lt Lung's is 12.10 Gy against the
    TPS's 12.74 (its own point sampling). The other structures, small or far from the beams,
    are only required to give finite values (speed: benchmarks/bench_analysis.py)."""
    dose, structures, tps = plan
    for s in structures:
        dvh = DVH.from_dose(dose, s)
        for m in standard_metrics(s):
            value = dvh.metric(m, prescription_gy=14.0, n_fractions=7, alpha_beta_gy=3.0)
            assert np.isfinite(value), (s.name, m)
            if s.name not in CHECKED:
                continue
            theirs = tps[s.name].metric(m, prescription_gy=14.0, n_fractions=7, alpha_beta_gy=3.0)
            rel = 0.06 if m == "Dmax" else 0.02
            assert _close(value, theirs, rel=rel), (s.name, m, value, theirs)
