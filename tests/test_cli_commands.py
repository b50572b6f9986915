"""The CLI commands plan, vertices, evaluate, compare and view, and their bad-input messages.

Commands that need a DICOM patient use the fast demo's output (the phantom
exported as CT + RTSTRUCT, see tests/conftest.py ``demo_run``).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from matplotlib.image import imread

from lattice_plan.cli import main
from lattice_plan.io.ct import read_ct
from lattice_plan.io.rtstruct import read_rtstruct
from tests.conftest import one_error_line as _one_error_line
from tests.conftest import reference_path

BREAST = ("dicom", "breast-boost-plan")


# ------------------------------------------------------------------------------ evaluate
def _evaluate_breast(*options: str, rtplan: bool = False) -> list[str]:
    """``evaluate`` arguments for the breast-boost plan's RTDOSE and RTSTRUCT (and RTPLAN)."""
    d = reference_path(*BREAST)
    args = ["evaluate", "--rtdose", str(d / "rtdose.dcm"), "--rtstruct", str(d / "rtss.dcm")]
    if rtplan:
        args += ["--rtplan", str(d / "rtplan.dcm")]
    return [*args, *options]


def test_evaluate_breast_boost_plan_prints_metrics_and_writes_json(tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(
        _evaluate_breast(
            "--metrics",
            "Dmean,D95%,V20Gy[cc],V5Gy,D0.03cc,EQD2:Dmean",
            "--json",
            str(out),
            rtplan=True,
        )
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Tumor Bed" in printed and "V20Gy[cc]" in printed
    assert "Areola" in printed  # the ROI without contours is named in a note
    data = json.loads(out.read_text())
    assert data["fractions"] == 7 and data["prescription_gy"] == pytest.approx(14.0)
    tb = data["structures"]["Tumor Bed"]
    assert set(tb) >= {"volume_cc", "Dmean", "D95%", "V20Gy[cc]", "V5Gy", "D0.03cc", "EQD2:Dmean"}
    # The planning system's own DVHs (DVHSequence of rtdose.dcm, DVHMeanDose in % of the
    # 14 Gy prescription): Tumor Bed 102.076 %, Tumor Bed Block 101.892 %, Heart 4.625 %.
    assert tb["Dmean"] == pytest.approx(1.02076 * 14.0, rel=0.01)
    tbb = data["structures"]["Tumor Bed Block"]["Dmean"]
    assert tbb == pytest.approx(1.01892 * 14.0, rel=0.01)
    assert data["structures"]["Heart"]["Dmean"] == pytest.approx(0.04625 * 14.0, rel=0.03)
    # V-metrics in the unit asked for: V5Gy in % (all of the tumour bed), V20Gy[cc] in cc.
    assert tb["V5Gy"] == pytest.approx(100.0, abs=0.01)
    assert tb["V20Gy[cc]"] == 0.0
    # EQD2 by the linear-quadratic model, EQD2 = D (D/n + a/b) / (2 + a/b), with n = 7 from the
    # RTPLAN and a/b = 10 Gy for the Tumor Bed (a CTV, a target kind): 2.04 Gy per fraction is
    # above 2 Gy, so EQD2 is above the physical mean, by 0.34 %. The dose is nearly uniform, so
    # the mean of the voxels' EQD2 equals the EQD2 of the mean to within 0.02 %.
    d = tb["Dmean"]
    assert tb["EQD2:Dmean"] == pytest.approx(d * (d / 7 + 10.0) / (2 + 10.0), rel=2e-4)


@pytest.mark.parametrize(("end_cap", "breast_cc"), [("half-slice", 400.4), ("none", 396.4)])
def test_evaluate_end_cap_option(tmp_path, capsys, end_cap, breast_cc):
    """--end-cap sets the contour end-cap convention: the Breast's 47 planes end in sections of
    561 and 2152 mm^2, half a 3 mm slab of each is 4.1 cc (the planning system's own DVH gives
    396.23 cc, the no-end-cap volume; tests/analysis/test_breast_boost_dvh.py)."""
    out = tmp_path / "eval.json"
    args = ["-q", *_evaluate_breast()]
    assert main([*args, "--metrics", "Dmean", "--end-cap", end_cap, "--json", str(out)]) == 0
    breast = json.loads(out.read_text())["structures"]["Breast"]
    assert breast["volume_cc"] == pytest.approx(breast_cc, abs=0.2)
    capsys.readouterr()
    assert main([*args, "--end-cap", "round"]) == 2
    assert "invalid choice: 'round'" in capsys.readouterr().err


def test_evaluate_with_protocol_arm_adds_qa(tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(
        ["-q", *_evaluate_breast("--arm", "CRT_30Gy_10fx", "--json", str(out), rtplan=True)]
    )
    assert code == 0
    assert capsys.readouterr().out == ""
    qa = json.loads(out.read_text())["qa"]
    # 7 fractions against the 10-fraction arm: a major deviation (qa.check).
    assert qa["fractions"] == 7 and qa["verdict"] == "major deviation"
    # Default metric set.
    s = json.loads(out.read_text())["structures"]["Tumor Bed"]
    for m in ("Dmin", "Dmean", "Dmax", "D98%", "D95%", "D50%", "D2%", "D0.03cc"):
        assert m in s
    assert s["Dmin"] <= s["D98%"] <= s["D50%"] <= s["D2%"] <= s["Dmax"]


def test_evaluate_bad_metric_and_missing_file_are_one_line(tmp_path, capsys):
    assert main(_evaluate_breast("--metrics", "Dfoo")) == 2
    _one_error_line(capsys, "Dfoo")
    assert main(["evaluate", "--rtdose", str(tmp_path / "no.dcm"), "--rtstruct", "x"]) == 2
    _one_error_line(capsys, "no.dcm")
    assert (
        main(_evaluate_breast("--metrics", "V95%")) == 2
    )  # relative to a prescription: needs RTPLAN
    _one_error_line(capsys, "prescription")


# ------------------------------------------------------------------------------ with the demo
@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_vertices_on_the_exported_phantom_re_read_with_the_vertices(demo_out, tmp_path, capsys):
    out = tmp_path / "RS_vertices.dcm"
    table = tmp_path / "vertices.csv"
    code = main(
        [
            "vertices",
            "--ct",
            str(demo_out / "CT"),
            "--rtstruct",
            str(demo_out / "RTSTRUCT.dcm"),
            "--gtv",
            "GTV",
            "--oar",
            "CaudaEquina",
            "SpinalCanal",
            "--diameter",
            "12",
            "--spacing",
            "25",
            "--name",
            "LV",
            "--out",
            str(out),
            "--csv",
            str(table),
        ]
    )
    assert code == 0
    assert "vertices (hcp, 12 mm spheres, 25 mm apart)" in capsys.readouterr().out
    rows = list(csv.DictReader(line for line in table.read_text().splitlines() if line[:1] != "#"))
    n = len(rows)
    assert n >= 2
    ct = read_ct(demo_out / "CT")
    structures = read_rtstruct(out, ct)
    singles = [structures.get(f"LV_{k:02d}") for k in range(1, n + 1)]
    assert f"LV_{n + 1:02d}" not in structures
    # The input's ROIs are kept and the new ones added.
    assert {"GTV", "Vertices", "CaudaEquina", "LV"} <= set(structures.names)
    union = np.logical_or.reduce([s.mask for s in singles])
    assert np.array_equal(structures.get("LV").mask, union)
    gtv = structures.get("GTV").mask
    assert not np.any(union & ~gtv)  # every sphere inside the GTV
    for s, row in zip(singles, rows, strict=True):
        centre = np.array([float(row[k]) for k in ("x_lps_mm", "y_lps_mm", "z_lps_mm")])
        # The voxelised sphere's centroid lies within one 4 mm voxel of the table's centre.
        assert np.linalg.norm(s.centroid_lps_mm() - centre) < 4.0
        assert float(row["diameter_mm"]) == 12.0
    assert (
        pydicom.dcmread(out).SOPInstanceUID
        != pydicom.dcmread(demo_out / "RTSTRUCT.dcm").SOPInstanceUID
    )


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_compare_plan_folder_prints_the_side_by_side_table(demo_out, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert main(["compare", str(demo_out), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[1:] == ["SFRT", "SCART", "CRT"]
    table = json.loads(out.read_text())
    assert set(table["GTV Dmean [Gy]"]) == {"SFRT", "SCART", "CRT"}
    # compare tabulates each plan's verdict as the plan's own QA gave it (the verdicts
    # themselves are checked in tests/qa/test_qa_phantom_plans.py).
    metrics = json.loads((demo_out / "metrics.json").read_text())
    assert table["protocol QA verdict"] == {p: metrics["qa"][p]["verdict"] for p in metrics["qa"]}
    # --rtdose lists: the same doses evaluated from DICOM.
    doses = [str(demo_out / f"RTDOSE_{p}.dcm") for p in ("SFRT", "CRT")]
    code = main(
        [
            "compare",
            "--rtdose",
            *doses,
            "--rtstruct",
            str(demo_out / "RTSTRUCT.dcm"),
            "--names",
            "SFRT",
            "CRT",
            "--metrics",
            "Dmean",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    table = json.loads(out.read_text())
    assert set(table["GTV Dmean"]) == {"SFRT", "CRT"}
    # The CRT GTV mean from the dose grid matches the workflow's (CT-grid) value within 3 %.
    metrics = json.loads((demo_out / "metrics.json").read_text())
    crt = metrics["plans"]["CRT"]["structures"]["GTV"]["Dmean"]
    assert table["GTV Dmean"]["CRT"] == pytest.approx(crt, rel=0.03)


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_view_screenshot_renders_the_plan(demo_out, tmp_path):
    png = tmp_path / "view.png"
    vtk = tmp_path / "vtk"
    assert (
        main(
            [
                "-q",
                "view",
                str(demo_out),
                "--plan",
                "SFRT",
                "--screenshot",
                str(png),
                "--export",
                str(vtk),
            ]
        )
        == 0
    )
    img = imread(png)[..., :3]
    assert np.mean(np.any(img < 0.95, axis=-1)) > 0.05
    assert (vtk / "dose.vti").is_file()
    assert any(p.name.startswith("structure_Vertices") for p in vtk.glob("*.vtp"))


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_plan_command_on_the_exported_phantom(demo_out, tmp_path, capsys):
    out = tmp_path / "plan-crt"
    code = main(
        [
            "-q",
            "plan",
            "--ct",
            str(demo_out / "CT"),
            "--rtstruct",
            str(demo_out / "RTSTRUCT.dcm"),
            "--gtv",
            "GTV",
            "--arm",
            "crt",
            "--oar",
            "CaudaEquina",
            "Kidney_L",
            "--set",
            "dose.spacing_mm=5",
            "--set",
            "prescription.dose_gy=8",
            "--set",
            "prescription.fractions=1",
            "--no-scene",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    crt = metrics["plans"]["CRT"]
    assert crt["prescription_total_gy"] == 8.0 and crt["qa"]["arm"] == "CRT_8Gy_1fx"
    assert not (out / "CT").exists()  # the input CT is referenced, not copied
    ct = pydicom.dcmread(sorted((demo_out / "CT").glob("*.dcm"))[0], stop_before_pixels=True)
    rp = pydicom.dcmread(out / "RTPLAN_CRT.dcm")
    rs = pydicom.dcmread(out / "RTSTRUCT.dcm")
    assert rp.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
    ref = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    assert ref.RTReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert (out / "report.html").is_file() and (out / "figures" / "dvh_comparison.png").is_file()
    from tests.test_workflow import _dciodvfy

    errors = _dciodvfy()
    for f in ("RTSTRUCT.dcm", "RTPLAN_CRT.dcm", "RTDOSE_CRT.dcm"):
        assert errors(out / f) == [], f


# ------------------------------------------------------------------------------ bad input
def test_plan_missing_ct_folder_is_one_line(tmp_path, capsys):
    args = ["plan", "--ct", str(tmp_path / "nope"), "--rtstruct", str(tmp_path / "rs.dcm")]
    assert main([*args, "--gtv", "GTV", "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "nope", "does not exist")


def test_plan_unreadable_spec_is_one_line(tmp_path, capsys):
    (tmp_path / "CT").mkdir()
    (tmp_path / "rs.dcm").write_bytes(b"x")
    bad = tmp_path / "bad.toml"
    bad.write_text("[plan\narm = 'SFRT'\n")
    args = ["plan", "--ct", str(tmp_path / "CT"), "--rtstruct", str(tmp_path / "rs.dcm")]
    assert main([*args, "--gtv", "GTV", "--spec", str(bad), "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "bad.toml", "TOML")
    assert main([*args, "--gtv", "GTV", "--set", "lattice", "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "KEY=VALUE")


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_plan_unknown_gtv_is_one_line(demo_out, tmp_path, capsys):
    args = ["plan", "--ct", str(demo_out / "CT"), "--rtstruct", str(demo_out / "RTSTRUCT.dcm")]
    assert main([*args, "--gtv", "Tumour_X", "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "Tumour_X", "CaudaEquina")
    assert not (tmp_path / "o").exists()


def test_compare_and_view_refuse_folders_without_outputs(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    _one_error_line(capsys, "metrics.json")
    assert main(["view", str(tmp_path), "--screenshot", str(tmp_path / "v.png")]) == 2
    _one_error_line(capsys, "RTDOSE")
