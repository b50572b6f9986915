"""``evaluate``, ``qa`` and ``compare`` on exported plans: the branches for the dose's
summation type and units, the RTPLAN it references, the overrides and the exit codes.

The doses are the breast-boost RTDOSE (PLAN dose, 14 Gy in 7 fractions) edited with
pydicom: a FRACTION dose is the same grid with DoseGridScaling divided by 7, so the course
dose must come back as the PLAN dose. Expected values come from the planning system's own
DVHs embedded in the RTDOSE (DVHSequence; DVHMeanDose of the Tumor Bed 102.076 % and of the
Heart 4.625 % of 14 Gy, see tests/test_cli_commands.py), not from our DVH code.
"""

from __future__ import annotations

import json

import pydicom
import pytest

from lattice_plan.cli import main
from lattice_plan.io.dicom_common import DicomWarning
from tests.conftest import reference_path

RX_GY, N_FX = 14.0, 7
TUMOR_BED_DMEAN_GY = 1.02076 * RX_GY  # the planning system's DVHMeanDose
HEART_DMEAN_GY = 0.04625 * RX_GY  # 0.6475 Gy
ALPHA_BETA_TARGET_GY = 10.0  # Tumor Bed is a CTV: a target kind (lattice_plan radiobiology)

PROTOCOL = """\
[protocol]
name = "exported plan test"
version = "1"

[arms.Boost]
fractions = 7
prescriptions = [{ target = "Tumor Bed", dose = "14 Gy" }]

[[arms.Boost.constraints]]
structure = "Tumor Bed"
metric = "Dmean"
comparison = ">="
limit = "13 Gy"

[[arms.Boost.constraints]]
structure = "Heart"
metric = "Dmean"
comparison = "<"
limit = "HEART_LIMIT"
"""


def _breast(name: str):
    return reference_path("dicom", "breast-boost-plan", name)


@pytest.fixture(scope="module")
def edited_doses(tmp_path_factory):
    """RTDOSE copies: one fraction, one beam, relative units, and one naming another RTPLAN."""
    folder = tmp_path_factory.mktemp("edited-doses")
    original = pydicom.dcmread(_breast("rtdose.dcm"))
    scaling = float(original.DoseGridScaling)
    paths = {}
    for kind in ("FRACTION", "BEAM", "RELATIVE", "OTHER_PLAN"):
        ds = pydicom.dcmread(_breast("rtdose.dcm"))
        if kind == "FRACTION":
            ds.DoseSummationType = "FRACTION"
            ds.DoseGridScaling = f"{scaling / N_FX:.10g}"  # 2e-6: one seventh of the course
        elif kind == "BEAM":
            ds.DoseSummationType = "BEAM"
        elif kind == "RELATIVE":
            ds.DoseUnits = "RELATIVE"
        else:
            ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
        paths[kind] = folder / f"{kind}.dcm"
        ds.save_as(paths[kind])
    return paths


def _evaluate(rtdose, *options, rtplan=True):
    args = ["-q", "evaluate", "--rtdose", str(rtdose), "--rtstruct", str(_breast("rtss.dcm"))]
    if rtplan:
        args += ["--rtplan", str(_breast("rtplan.dcm"))]
    return [*args, *options]


def _error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0], err[0]


def _tumor_bed(path, tmp_path, *options, rtplan=True):
    out = tmp_path / "eval.json"
    assert (
        main([*_evaluate(path, "--metrics", "Dmean", "--json", str(out), *options, rtplan=rtplan)])
        == 0
    )
    return json.loads(out.read_text())


def test_fraction_dose_is_multiplied_by_the_planned_fractions(edited_doses, tmp_path):
    data = _tumor_bed(edited_doses["FRACTION"], tmp_path)
    assert data["dose"]["summation_type"] == "FRACTION" and data["fractions"] == N_FX
    assert data["structures"]["Tumor Bed"]["Dmean"] == pytest.approx(TUMOR_BED_DMEAN_GY, rel=0.01)


def test_fraction_dose_without_rtplan_needs_the_fractions(edited_doses, tmp_path, capsys):
    assert main(_evaluate(edited_doses["FRACTION"], "--metrics", "Dmean", rtplan=False)) == 2
    _error(capsys, "dose of one fraction", "number of fractions")
    data = _tumor_bed(edited_doses["FRACTION"], tmp_path, "--fractions", "7", rtplan=False)
    assert data["structures"]["Tumor Bed"]["Dmean"] == pytest.approx(TUMOR_BED_DMEAN_GY, rel=0.01)


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("BEAM", ("Dose Summation Type 'BEAM'", "PLAN dose")),
        ("RELATIVE", ("RELATIVE dose", "absolute Gy")),
        ("OTHER_PLAN", ("RTPLAN 1.2.3.4.5.6.7", "give the matching plan")),
    ],
)
def test_partial_relative_or_foreign_doses_are_refused(
    edited_doses, tmp_path, capsys, kind, needles
):
    """evaluate and qa both refuse them with one line (exit 2): a BEAM dose is one beam of
    one fraction, a RELATIVE dose has no Gy, and a dose of another plan is not this plan's."""
    assert main(_evaluate(edited_doses[kind], "--metrics", "Dmean")) == 2
    _error(capsys, *needles)
    protocol = tmp_path / "p.toml"
    protocol.write_text(PROTOCOL.replace("HEART_LIMIT", "1 Gy"))
    qa = ["-q", "qa", "--rtdose", str(edited_doses[kind]), "--rtstruct", str(_breast("rtss.dcm"))]
    qa += ["--rtplan", str(_breast("rtplan.dcm")), "--protocol", str(protocol), "--arm", "Boost"]
    assert main(qa) == 2
    _error(capsys, *needles)


def test_fractions_and_prescription_overrides_replace_the_rtplan_values(tmp_path):
    """--fractions 5 and --prescription-gy 10 win over the RTPLAN's 7 and 14 Gy: the
    linear-quadratic EQD2 = D (D/n + a/b) / (2 + a/b) takes n = 5 (Tumor Bed a/b 10 Gy, nearly
    uniform dose so EQD2 of the mean equals the mean EQD2 to 0.01 %), and D95%[%] is relative to
    10 Gy, 1.4 times its value relative to 14 Gy."""
    metrics = ["--metrics", "Dmean,EQD2:Dmean,D95%[%]"]
    plain, over = tmp_path / "plain.json", tmp_path / "over.json"
    rtdose = _breast("rtdose.dcm")
    assert main(_evaluate(rtdose, *metrics, "--json", str(plain))) == 0
    overrides = ["--fractions", "5", "--prescription-gy", "10"]
    assert main(_evaluate(rtdose, *metrics, *overrides, "--json", str(over))) == 0
    a, b = json.loads(plain.read_text()), json.loads(over.read_text())
    assert (a["fractions"], a["prescription_gy"]) == (7, pytest.approx(14.0))
    assert (b["fractions"], b["prescription_gy"]) == (5, pytest.approx(10.0))
    ta, tb = a["structures"]["Tumor Bed"], b["structures"]["Tumor Bed"]
    d = tb["Dmean"]
    ab = ALPHA_BETA_TARGET_GY
    assert tb["EQD2:Dmean"] == pytest.approx(d * (d / 5 + ab) / (2 + ab), rel=2e-4)
    assert ta["EQD2:Dmean"] == pytest.approx(d * (d / 7 + ab) / (2 + ab), rel=2e-4)
    assert tb["D95%[%]"] == pytest.approx(ta["D95%[%]"] * 14.0 / 10.0, rel=1e-9)


def _qa_args(tmp_path, heart_limit):
    protocol = tmp_path / "p.toml"
    protocol.write_text(PROTOCOL.replace("HEART_LIMIT", heart_limit))
    out = tmp_path / "qa.json"
    args = [
        "-q",
        "qa",
        "--rtstruct",
        str(_breast("rtss.dcm")),
        "--rtplan",
        str(_breast("rtplan.dcm")),
    ]
    return [*args, "--protocol", str(protocol), "--arm", "Boost", "--json", str(out)], out


@pytest.mark.parametrize(
    ("heart_limit", "code", "verdict"),
    [("1 Gy", 0, "per protocol"), ("0.5 Gy", 1, "major deviation")],
)
def test_qa_exit_code_follows_the_verdict(tmp_path, heart_limit, code, verdict):
    """The heart's mean dose is 0.65 Gy (the planning system's DVH): under a 1 Gy limit the plan
    is per protocol (exit 0), over a 0.5 Gy limit with no acceptable band a major deviation
    (exit 1, so scripts can stop on it)."""
    args, out = _qa_args(tmp_path, heart_limit)
    with pytest.warns(DicomWarning, match="Areola"):  # the ROI without contours
        assert main([*args, "--rtdose", str(_breast("rtdose.dcm"))]) == code
    data = json.loads(out.read_text())
    assert data["verdict"] == verdict
    heart = next(r for r in data["rows"] if r["structure"] == "Heart")
    assert heart["value"] == pytest.approx(HEART_DMEAN_GY, rel=0.03)


def test_qa_of_a_fraction_dose_judges_the_course(edited_doses, tmp_path):
    """A FRACTION dose times the RTPLAN's 7 fractions: the Tumor Bed mean (14.3 Gy) meets
    >= 13 Gy; judged on one fraction (2.04 Gy) it would be a major deviation."""
    args, out = _qa_args(tmp_path, "1 Gy")
    with pytest.warns(DicomWarning, match="Areola"):
        assert main([*args, "--rtdose", str(edited_doses["FRACTION"])]) == 0
    rows = json.loads(out.read_text())["rows"]
    bed = next(r for r in rows if r["structure"] == "Tumor Bed")
    assert bed["value"] == pytest.approx(TUMOR_BED_DMEAN_GY, rel=0.01)


def test_compare_argument_errors_are_one_line(tmp_path, capsys):
    rtdose, rtss = str(_breast("rtdose.dcm")), str(_breast("rtss.dcm"))
    assert main(["compare", str(tmp_path), "--rtdose", rtdose]) == 2
    _error(capsys, "not both")
    assert main(["compare", "--rtdose", rtdose]) == 2
    _error(capsys, "--rtdose needs --rtstruct")
    assert main(["compare", "--rtdose", rtdose, rtdose, "--rtstruct", rtss, "--names", "A"]) == 2
    _error(capsys, "--names gives 1 names for 2 --rtdose files")
    assert main(["compare"]) == 2
    _error(capsys, "give plan folders")


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_evaluate_with_ct_rasterises_the_rois_on_the_ct(demo_out, demo_metrics, tmp_path):
    """--ct reads the ROIs on the CT grid, as the workflow did when it wrote metrics.json: the
    GTV's volume and mean dose then match the workflow's (computed on the CT) closely."""
    out = tmp_path / "ct.json"
    args = ["-q", "evaluate", "--rtdose", str(demo_out / "RTDOSE_CRT.dcm")]
    args += ["--rtstruct", str(demo_out / "RTSTRUCT.dcm"), "--metrics", "Dmean"]
    assert main([*args, "--ct", str(demo_out / "CT"), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["ct"] == str(demo_out / "CT")
    gtv = demo_metrics["plans"]["CRT"]["structures"]["GTV"]
    assert data["structures"]["GTV"]["volume_cc"] == pytest.approx(gtv["volume_cc"], rel=1e-3)
    assert data["structures"]["GTV"]["Dmean"] == pytest.approx(gtv["Dmean"], rel=2e-3)
