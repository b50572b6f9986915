"""The `lattice-plan qa` command on the breast-boost export."""

import json

import pytest

from lattice_plan.cli import main
from lattice_plan.io.dicom_common import DicomWarning
from tests.conftest import reference_path

PROTOCOL = """\
[protocol]
name = "CLI test"
version = "1"

[arms.Boost]
fractions = 7
prescriptions = [{ target = "Tumor Bed", dose = "14 Gy" }]

[[arms.Boost.constraints]]
structure = "Heart"
metric = "Dmean"
comparison = "<"
limit = "1 Gy"
"""


def test_qa_command_writes_json_csv_and_sets_exit_code(tmp_path, capsys):
    folder = reference_path("dicom", "breast-boost-plan")
    protocol = tmp_path / "p.toml"
    protocol.write_text(PROTOCOL)
    args = [
        "qa",
        "--rtdose",
        str(folder / "rtdose.dcm"),
        "--rtstruct",
        str(folder / "rtss.dcm"),
        "--rtplan",
        str(folder / "rtplan.dcm"),
        "--protocol",
        str(protocol),
        "--arm",
        "Boost",
        "--json",
        str(tmp_path / "qa.json"),
        "--csv",
        str(tmp_path / "qa.csv"),
    ]
    with pytest.warns(DicomWarning, match="Areola"):
        code = main(args)
    # The TPS's own DVH gives the heart a mean dose of 0.64 Gy (< 1 Gy): per protocol, exit 0.
    assert code == 0
    data = json.loads((tmp_path / "qa.json").read_text())
    assert data["verdict"] == "per protocol" and data["fractions"] == 7
    assert (tmp_path / "qa.csv").read_text().splitlines()[1].startswith("Heart,Heart,Dmean,<,1 Gy")
    assert capsys.readouterr().out.strip().endswith("verdict: per protocol")


def test_qa_command_unknown_arm_is_one_clear_line(tmp_path, capsys):
    folder = reference_path("dicom", "breast-boost-plan")
    code = main(
        [
            "-q",
            "qa",
            "--rtdose",
            str(folder / "rtdose.dcm"),
            "--rtstruct",
            str(folder / "rtss.dcm"),
            "--arm",
            "LATTICE",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert (
        "no arm 'LATTICE'" in err[0]
        and "SFRT, SCART, CRT_30Gy_10fx, CRT_20Gy_5fx, CRT_8Gy_1fx" in err[0]
    )
