"""Protocol QA of another planning system's plan: the breast-boost DICOM-RT export.

The expected outcomes follow from the planning system's own DVHs embedded in the
RTDOSE (DVHSequence, read here with pydicom), not from our DVH code.
"""

import numpy as np
import pydicom
import pytest

from lattice_plan.analysis.radiobiology import eqd2_gy
from lattice_plan.errors import DicomError, ProtocolError
from lattice_plan.io.dicom_common import DicomWarning
from lattice_plan.qa.check import Verdict
from lattice_plan.qa.dicom_check import check_dicom, rois_outside_grid
from lattice_plan.qa.protocol import Outcome, parse_protocol
from tests.conftest import reference_path

# Rx 14 Gy in 7 fractions (RTPLAN). Structure names as a protocol writes them: "Lung_L"
# reaches "Lt Lung" by TG-263 key, "TumorBed" reaches "Tumor Bed".
PROTOCOL = """\
[protocol]
name = "Breast boost QA test"
version = "1"

[structures.Esophagus]
synonyms = ["Oesophagus"]

[arms.Boost]
fractions = 7
prescriptions = [{ target = "TumorBed", dose = "14 Gy" }]

[[arms.Boost.constraints]]
structure = "Heart"
metric = "Dmean"
comparison = "<"
limit = "1 Gy"
source = "test: heart mean"

[[arms.Boost.constraints]]
structure = "Lung_L"
metric = "V5Gy[cc]"
comparison = "<"
limit = "50 cc"

[[arms.Boost.constraints]]
structure = "Lung_L"
metric = "V5Gy[cc]"
comparison = "<"
limit = "35 cc"
acceptable = "45 cc"

[[arms.Boost.constraints]]
structure = "Breast"
metric = "V10Gy[cc]"
comparison = "<="
limit = "100 cc"
acceptable = "110 cc"

[[arms.Boost.constraints]]
structure = "TumorBed"
metric = "D95%[%]"
comparison = ">="
limit = "95 %"

[[arms.Boost.constraints]]
structure = "Heart"
metric = "EQD2:Dmean"
alpha_beta = "3 Gy"
comparison = "<"
limit = "0.3 Gy"
acceptable = "0.5 Gy"

[[arms.Boost.constraints]]
structure = "Areola"
metric = "Dmax"
comparison = "<="
limit = "14 Gy"

[[arms.Boost.constraints]]
structure = "Esophagus"
metric = "Dmax"
comparison = "<="
limit = "10 Gy"
required = false
"""

RX_GY = 14.0
N_FRACTIONS = 7


def _tps_dvhs(rtdose, rtstruct):
    """Cumulative DVHs (dose edges Gy, volume >= edge in cc) per ROI name from DVHSequence."""
    names = {
        int(r.ROINumber): str(r.ROIName) for r in pydicom.dcmread(rtstruct).StructureSetROISequence
    }
    out = {}
    for item in pydicom.dcmread(rtdose).DVHSequence:
        assert item.DVHType == "CUMULATIVE" and item.DoseUnits == "GY"
        assert item.DVHVolumeUnits == "CM3"
        data = np.asarray(item.DVHData, dtype=float).reshape(-1, 2)
        widths = data[:, 0] * float(item.DVHDoseScaling)
        edges = np.concatenate([[0.0], np.cumsum(widths)])
        cumulative = np.concatenate([data[:, 1], [0.0]])  # volume receiving >= the bin start
        out[names[int(item.DVHReferencedROISequence[0].ReferencedROINumber)]] = (edges, cumulative)
    return out


def _tps_value(dvh, metric):
    """The TPS value of the metrics used above, from its cumulative DVH.

    (DVHMeanDose of this export is in % of the prescription, so means are taken from the
    bins: each bin's volume at its centre dose.)"""
    edges, cum = dvh
    diff = -np.diff(cum)
    centres = 0.5 * (edges[:-1] + edges[1:])
    if metric == "Dmean":
        return float((diff * centres).sum() / diff.sum())
    if metric == "EQD2:Dmean":
        return float((diff * eqd2_gy(centres, N_FRACTIONS, 3.0)).sum() / diff.sum())
    if metric.startswith("V") and metric.endswith("Gy[cc]"):
        return float(np.interp(float(metric[1:-6]), edges, cum))
    if metric == "D95%[%]":
        v = 0.95 * cum[0]  # dose at which the cumulative curve falls to 95 % of the volume
        return float(np.interp(-v, -cum, edges)) / RX_GY * 100.0
    raise AssertionError(metric)


@pytest.fixture(scope="module", params=["half-slice", "none"])
def breast_result(request):
    """QA with either contour end-cap convention (the TPS's own is "none"; the metrics
    checked here lie well above the few cc of end caps, so both must give its outcomes)."""
    folder = reference_path("dicom", "breast-boost-plan")
    protocol = parse_protocol(PROTOCOL, "breast-test.toml")
    with pytest.warns(DicomWarning, match="Areola"):
        result = check_dicom(
            folder / "rtdose.dcm",
            folder / "rtss.dcm",
            protocol,
            "Boost",
            rtplan_path=folder / "rtplan.dcm",
            end_cap=request.param,
        )
    return result, protocol, _tps_dvhs(folder / "rtdose.dcm", folder / "rtss.dcm")


def test_breast_boost_outcomes_follow_the_tps_dvhs(breast_result):
    result, protocol, tps = breast_result
    assert result.fractions == N_FRACTIONS and result.fractions_match  # from the RTPLAN
    constraints = protocol.arm("Boost").constraints
    plan_names = {
        "Heart": "Heart",
        "Lung_L": "Lt Lung",
        "Breast": "Breast",
        "TumorBed": "Tumor Bed",
    }
    evaluated = 0
    for row, c in zip(result.rows, constraints, strict=True):
        if c.structure not in plan_names:
            continue
        evaluated += 1
        assert row.plan_structure == plan_names[c.structure]
        tps_value = _tps_value(tps[row.plan_structure], c.metric)
        # the TPS value must be clearly on one side of each limit, so the outcome it implies
        # cannot flip within the agreement between our DVH and the TPS's
        for limit in (c.limit, c.acceptable):
            if limit is not None:
                assert abs(tps_value - limit.value) > 0.05 * limit.value, (c.text, tps_value)
        # our DVH agrees with the TPS's: 3 % (or 0.02 Gy / 1 cc for small values)
        abs_tol = 0.02 if row.unit == "Gy" else 1.0
        assert row.value == pytest.approx(tps_value, rel=0.03, abs=abs_tol), c.text
        assert row.outcome is c.outcome(tps_value), (c.text, row.value, tps_value)
    assert evaluated == 6
    assert [r.outcome for r in result.rows[:6]] == [
        Outcome.PER_PROTOCOL,  # heart mean 0.64 Gy < 1 Gy
        Outcome.PER_PROTOCOL,  # lung V5Gy 40.8 cc < 50 cc
        Outcome.MINOR_DEVIATION,  # 40.8 cc over 35 cc, within 45 cc
        Outcome.MAJOR_DEVIATION,  # breast V10Gy 119 cc over 110 cc
        Outcome.PER_PROTOCOL,  # tumour bed D95 > 100 % of 14 Gy
        Outcome.MINOR_DEVIATION,  # heart EQD2 mean 0.40 Gy over 0.3, within 0.5
    ]
    assert result.verdict is Verdict.MAJOR_DEVIATION


def test_breast_boost_missing_rois_are_not_evaluated(breast_result):
    result, _, _ = breast_result
    areola, oesophagus = result.rows[6], result.rows[7]
    # Areola is listed in the RTSTRUCT but has no contours; there is no oesophagus at all.
    assert areola.outcome is Outcome.NOT_EVALUATED and "no structure 'Areola'" in areola.note
    assert oesophagus.outcome is Outcome.NOT_EVALUATED and not oesophagus.required
    csv_text = result.to_csv()
    assert csv_text.count("not evaluated") == 2


def test_fractions_contradicting_the_rtplan_is_refused():
    folder = reference_path("dicom", "breast-boost-plan")
    protocol = parse_protocol(PROTOCOL)
    with pytest.raises(ProtocolError, match="contradicts the 7 fractions planned"):
        check_dicom(
            folder / "rtdose.dcm",
            folder / "rtss.dcm",
            protocol,
            "Boost",
            rtplan_path=folder / "rtplan.dcm",
            fractions=5,
        )


def test_rois_reaching_outside_the_dose_grid_are_found():
    folder = reference_path("dicom", "breast-boost-plan")
    from lattice_plan.io.rtdose import read_rtdose

    grid = read_rtdose(folder / "rtdose.dcm").grid
    assert rois_outside_grid(folder / "rtss.dcm", grid) == {}  # the TPS grid covers every ROI
    # Keep slices z <= 60 mm only (origin z = -122.44 mm, 3 mm slices): the lung (contours up
    # to z = 129.6 mm) body and the Borders ROI reach beyond it; the breast (z <= 51.6 mm) does not.
    n_keep = int((60.0 - grid.origin_lps_mm[2]) // 3.0) + 1
    cropped = grid.crop((0, 0, 0), (n_keep, *grid.shape[1:]))
    outside = rois_outside_grid(folder / "rtss.dcm", cropped)
    assert set(outside) == {"BODY", "Lt Lung", "Borders"}  # Borders: z 69.6-72.6 mm
    assert "outside the dose grid" in outside["Lt Lung"]


def test_contour_data_parsed_raw_or_converted_alike():
    from pydicom.dataset import Dataset

    # rois_outside_grid parses contours with the RTSTRUCT reader's own parser.
    from lattice_plan.io.rtstruct import contour_points

    item = Dataset()
    item.ContourData = [1.5, -2.25, 3.0, 4.0, 5.0, 6.0]  # a converted (not raw) element
    assert contour_points(item, "T").tolist() == [[1.5, -2.25, 3.0], [4.0, 5.0, 6.0]]
    item.ContourData = [1.0, 2.0]
    with pytest.raises(DicomError, match="2 coordinates"):
        contour_points(item, "T")


def test_outside_grid_rois_are_named_as_the_reader_names_them(tmp_path):
    """An ROI with a blank name is read as ROI_<n>; its outside-grid note must use that name,
    or check() would judge it on its clipped part without saying so."""
    from lattice_plan.io.rtdose import read_rtdose
    from lattice_plan.io.rtstruct import read_rtstruct

    folder = reference_path("dicom", "breast-boost-plan")
    ds = pydicom.dcmread(folder / "rtss.dcm")
    for roi in ds.StructureSetROISequence:
        if roi.ROIName == "BODY":
            roi.ROIName = ""
    path = tmp_path / "rtss_blank_name.dcm"
    ds.save_as(path)
    grid = read_rtdose(folder / "rtdose.dcm").grid
    half = grid.crop((0, 0, 0), (grid.shape[0] // 2, grid.shape[1], grid.shape[2]))
    with pytest.warns(DicomWarning):
        names = read_rtstruct(path, half).names
    outside = rois_outside_grid(path, half)
    assert "ROI_1" in outside  # the body reaches past half the dose grid
    assert set(outside) <= set(names)
