"""Bad planning input that lost data or was read wrongly without a word (issue 20).

Every bad input is made by the test: from the fast demo's output folder, or
from a coarse built-in phantom written as CT + RTSTRUCT into a temporary folder;
nothing corrupted is stored. Each refusal is checked for its exit code (2), its
one line, no output left behind and the inputs unchanged to the byte.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.sequence import Sequence as DicomSequence

from lattice_plan.cli import main
from lattice_plan.errors import InputFileError, StructureNotFoundError
from lattice_plan.workflow import load_dicom_case

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"


def _digest(*roots: Path) -> dict[str, str]:
    files = [p for r in roots for p in ([r] if r.is_file() else sorted(r.rglob("*")))]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def _one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if ln.startswith("lattice-plan")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def written_case(tmp_path_factory):
    """A coarse phantom (5 mm) written once as a CT series with its RTSTRUCT ``RS.dcm``."""
    from lattice_plan.io.rtstruct import write_patient
    from lattice_plan.phantoms import build_phantom

    folder = tmp_path_factory.mktemp("case") / "CT"
    write_patient(build_phantom(spacing_mm=(5.0, 5.0, 5.0), length_mm=100.0), folder)
    return folder


@pytest.fixture
def case(written_case, tmp_path):
    """A private copy of the written case: (CT folder, RTSTRUCT path)."""
    folder = tmp_path / "patient"
    shutil.copytree(written_case, folder)
    return folder, folder / "RS.dcm"


def _edit_rois(rs: Path, edit) -> None:
    ds = pydicom.dcmread(rs)
    edit(ds)
    ds.save_as(rs)


def _roi(ds: pydicom.Dataset, name: str):
    roi = next(r for r in ds.StructureSetROISequence if r.ROIName == name)
    rc = next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == roi.ROINumber)
    return roi, rc


# ------------------------------------------------------------------------------ data loss
@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_plan_into_the_output_folder_that_holds_its_inputs_is_refused(demo_out, tmp_path, capsys):
    """``plan --ct P/CT --rtstruct P/RTSTRUCT.dcm --out P`` once deleted P/CT."""
    p = tmp_path / "P"
    shutil.copytree(demo_out, p)
    before = _digest(p)
    args = ["plan", "--ct", str(p / "CT"), "--rtstruct", str(p / "RTSTRUCT.dcm"), "--gtv", "GTV"]
    assert main([*args, "--arm", "crt", "--out", str(p)]) == 2
    _one_error_line(capsys, "inside the output folder", "another folder")
    assert _digest(p) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["P"]  # no staging left beside it


def test_output_folder_holding_an_input_is_refused_before_anything_is_written(case, tmp_path):
    from lattice_plan.files import atomic_output_dir

    folder, rs = case
    before = _digest(folder)
    cases = ((folder, [rs], "RS.dcm' is inside"), (tmp_path, [folder], "patient' is inside"))
    for out, inputs, words in (*cases, (folder, [folder], "patient' is the output folder")):
        with pytest.raises(InputFileError, match=words):
            with atomic_output_dir(out, ".marker", inputs):
                pytest.fail("the block must not run")
    assert _digest(folder) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["patient"]


# ------------------------------------------------------------------------------ plan specs
@pytest.mark.parametrize(
    ("arm", "specs", "words"),
    [
        ("crt", ["sfrt_15gy_1fx.toml"], ("is for arm SFRT, which is not planned",)),
        (
            "crt",
            ["crt_30gy_10fx.toml", "crt_8gy_1fx_ap_pa.toml"],
            ("two plan specs for arm CRT", "one spec per arm"),
        ),
    ],
    ids=["spec-of-another-arm", "two-specs-one-arm"],
)
def test_a_spec_that_would_be_ignored_is_refused(case, tmp_path, capsys, arm, specs, words):
    folder, rs = case
    before = _digest(folder, SPECS)
    out = tmp_path / "out"
    args = ["plan", "--ct", str(folder), "--rtstruct", str(rs), "--gtv", "GTV", "--arm", arm]
    for s in specs:
        args += ["--spec", str(SPECS / s)]
    assert main([*args, "--out", str(out)]) == 2
    _one_error_line(capsys, *words)
    assert not out.exists()
    assert _digest(folder, SPECS) == before


# ------------------------------------------------------------------------------ ROI names
def test_gtv_name_exact_match_first_case_only_match_when_unique(case, caplog):
    folder, rs = case
    # A second ROI called "gtv" (the CaudaEquina's contours) beside "GTV".
    _edit_rois(rs, lambda ds: setattr(_roi(ds, "CaudaEquina")[0], "ROIName", "gtv"))
    exact_gtv = load_dicom_case(folder, rs, gtv="GTV", oars=["SpinalCanal"]).patient
    lower = load_dicom_case(folder, rs, gtv="gtv", oars=["SpinalCanal"]).patient
    gtv_lower = lower.structures.get("gtv")
    assert gtv_lower.name == "gtv"  # the exact one, under its own name
    assert "GTV" not in [s.name for s in lower.structures]  # the other is not read (nor renamed)
    assert gtv_lower.volume_cc != pytest.approx(exact_gtv.structures.get("GTV").volume_cc, rel=0.01)
    with pytest.raises(StructureNotFoundError, match="2 that differ only in case"):
        load_dicom_case(folder, rs, gtv="Gtv", oars=["SpinalCanal"])
    # With one case variant only, it is used, and the log says so.
    _edit_rois(rs, lambda ds: setattr(_roi(ds, "gtv")[0], "ROIName", "CaudaEquina"))
    with caplog.at_level(logging.WARNING):
        patient = load_dicom_case(folder, rs, gtv="gtv", oars=["SpinalCanal"]).patient
    assert patient.structures.get("GTV").name == "GTV"
    assert "using ROI 'GTV' (differs in case)" in caplog.text


def test_organ_without_contours_is_said_on_the_command_line_log(case, caplog):
    folder, rs = case
    _edit_rois(rs, lambda ds: setattr(_roi(ds, "Kidney_R")[1], "ContourSequence", DicomSequence()))
    with caplog.at_level(logging.WARNING):
        patient = load_dicom_case(folder, rs, gtv="GTV").patient
    assert "Kidney_R" not in [s.name for s in patient.structures]
    assert "organ ROI 'Kidney_R' is not planned: no contours" in caplog.text


def test_roi_in_another_frame_of_reference_is_refused(case, tmp_path, capsys):
    folder, rs = case
    _edit_rois(
        rs,
        lambda ds: setattr(
            _roi(ds, "Kidney_L")[0], "ReferencedFrameOfReferenceUID", pydicom.uid.generate_uid()
        ),
    )
    before = _digest(folder)
    out = tmp_path / "out"
    args = ["plan", "--ct", str(folder), "--rtstruct", str(rs), "--gtv", "GTV", "--arm", "crt"]
    assert main([*args, "--out", str(out)]) == 2
    _one_error_line(capsys, "ROI 'Kidney_L' is in frame of reference", "another scan")
    assert not out.exists()
    assert _digest(folder) == before


def test_vertices_name_over_the_dicom_limit_is_refused(case, tmp_path, capsys):
    folder, rs = case
    before = _digest(folder)
    out, csv = tmp_path / "vertices.dcm", tmp_path / "vertices.csv"
    name = "V" * 63  # 63 characters fit; the per-sphere ROIs ("_01") would not
    args = ["vertices", "--ct", str(folder), "--rtstruct", str(rs), "--gtv", "GTV"]
    assert main([*args, "--name", name, "--out", str(out), "--csv", str(csv)]) == 2
    _one_error_line(capsys, "has 66 characters", "DICOM allows 64", "shorter name")
    assert not out.exists() and not csv.exists()
    assert _digest(folder) == before
