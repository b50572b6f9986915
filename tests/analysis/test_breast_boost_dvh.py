"""Our DVHs of a real TPS plan against the planning system's own DVHs (RTDOSE DVHSequence).

Reference: ../shared/reference/dicom/breast-boost-plan (dicompyler-core test data, BSD-3):
the DVHs embedded in rtdose.dcm are cumulative, DVHDoseScaling 1, DVHVolumeUnits CM3, with
0.01 Gy bins (DVHData holds bin width / volume pairs). Their DVHMin/Max/MeanDose fields are in
percent of the 14 Gy prescription although DoseUnits says GY, so the test uses DVHData only.
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
        structures = read_rtstruct(base / "rtss.dcm", dose.grid)
    return dose, structures, tps_dvhs(base / "rtdose.dcm", base / "rtss.dcm")


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


@pytest.mark.parametrize(
    "name",
    [
        *[n for n in CHECKED if n != "Breast"],
        pytest.param(
            "Breast",
            marks=pytest.mark.xfail(
                strict=True,
                reason="Breast D50 lies on a flat part of its DVH (about 11 cc/Gy near 3 Gy): our "
                "mask is 1 % larger than the TPS's, all of it below 0.1 Gy (contour ends), which "
                "moves D50 by 0.15 Gy (5 %); see test_breast_d50_at_tps_volume",
            ),
        ),
    ],
)
def test_d50_matches_tps(plan, name):
    """D50 within 2 % (or 0.05 Gy) of the TPS's DVH."""
    dose, structures, tps = plan
    ours = DVH.from_dose(dose, structures[name]).metric("D50%")
    theirs = tps[name].metric("D50%")
    assert _close(ours, theirs), (ours, theirs)


def test_breast_d50_at_tps_volume(plan):
    """At the same absolute volume (half the TPS's Breast volume) the doses agree within 2 %,
    and the cumulative curves agree within 1 cc above 0.5 Gy: the D50 gap is the volume, not the
    dose sampling."""
    dose, structures, tps = plan
    ours = DVH.from_dose(dose, structures["Breast"])
    theirs = tps["Breast"]
    half = 0.5 * theirs.volume_cc
    assert _close(ours.dose_at_volume_cc(half), theirs.dose_at_volume_cc(half))
    for d in (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 13.0, 14.0):
        assert ours.volume_at_dose_cc(d) == pytest.approx(theirs.volume_at_dose_cc(d), abs=1.5)


def test_standard_metric_set_for_every_structure(plan):
    """Every structure's DVH and standard metrics evaluate (speed: benchmarks/bench_analysis.py)."""
    dose, structures, _ = plan
    for s in structures:
        dvh = DVH.from_dose(dose, s)
        for m in standard_metrics(s):
            value = dvh.metric(m, prescription_gy=14.0, n_fractions=7, alpha_beta_gy=3.0)
            assert np.isfinite(value)
