"""Bad output paths and interrupts: exit 2 (130 for Ctrl-C), one line, nothing written.

Each case asserts the exit code, the key words of the one error line, that no
output is left and that the inputs are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lattice_plan.cli import main
from tests.conftest import one_error_line as _one_error_line
from tests.conftest import reference_path

BREAST = ("dicom", "breast-boost-plan")


def _digest(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


# ------------------------------------------------------------------------------ output paths
def _bad_output(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """An output path that cannot be written, and the key words of its message."""
    if kind == "folder":
        (tmp_path / "taken").mkdir()
        return tmp_path / "taken", "is a folder"
    if kind == "missing-parent":
        return tmp_path / "nowhere" / "out.x", "does not exist"
    if kind == "under-a-file":
        (tmp_path / "plain").write_text("x")
        return tmp_path / "plain" / "out.x", "is a file, not a folder"
    (tmp_path / "locked").mkdir(mode=0o555)
    return tmp_path / "locked" / "out.x", "no write permission"


def _command(name: str, bad: Path, good: Path) -> tuple[list[str], str, list[Path]]:
    """(arguments with ``bad`` as one output and ``good`` as the other, option, inputs)."""
    d = reference_path(*BREAST)
    dose, rtss, plan = d / "rtdose.dcm", d / "rtss.dcm", d / "rtplan.dcm"
    scan = reference_path("beam-data", "varian-unique-6x-10x10PDD.mcc")
    exported = ["--rtdose", str(dose), "--rtstruct", str(rtss)]
    vertices = ["vertices", "--ct", str(d / "CT"), "--rtstruct", str(rtss), "--gtv", "Tumor Bed"]
    recalc = ["recalc", "--rtplan", str(plan), "--ct", str(d / "CT")]
    table = {
        "evaluate": (["evaluate", *exported, "--json", str(bad)], "--json", [dose, rtss]),
        "qa-csv": (
            [
                "qa",
                *exported,
                "--rtplan",
                str(plan),
                "--arm",
                "SFRT",
                "--json",
                str(good),
                "--csv",
                str(bad),
            ],
            "--csv",
            [dose, rtss, plan],
        ),
        "qa-json": (["qa", *exported, "--arm", "SFRT", "--json", str(bad)], "--json", [dose]),
        "commission": (["commission", str(scan), "--out", str(bad)], "--out", [scan]),
        "vertices-out": ([*vertices, "--out", str(bad)], "--out", [rtss]),
        "vertices-csv": ([*vertices, "--out", str(good), "--csv", str(bad)], "--csv", [rtss]),
        "view": (["view", str(d), "--screenshot", str(bad)], "--screenshot", []),
        "compare": (["compare", str(d), "--json", str(bad)], "--json", []),
        "view-html": (["view", str(d), "--html", str(bad)], "--html", []),
        "recalc-out": ([*recalc, "--out", str(bad)], "--out", [plan]),
        "recalc-json": ([*recalc, "--out", str(good), "--json", str(bad)], "--json", [plan]),
    }
    return table[name]


COMMANDS = [
    "evaluate",
    "qa-csv",
    "qa-json",
    "commission",
    "vertices-out",
    "vertices-csv",
    "view",
    "compare",
    "view-html",
    "recalc-out",
    "recalc-json",
]


@pytest.mark.parametrize("kind", ["folder", "missing-parent", "under-a-file"])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_that_cannot_be_written_is_one_line_before_anything_is_written(
    command, kind, tmp_path, capsys
):
    bad, words = _bad_output(kind, tmp_path)
    args, option, inputs = _command(command, bad, tmp_path / "good.out")
    before, digest = _tree(tmp_path), _digest(inputs)
    assert main(args) == 2
    _one_error_line(capsys, option, str(bad), words)
    assert _tree(tmp_path) == before  # not even the other output
    assert _digest(inputs) == digest


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root may write into a read-only folder, so the permission check cannot fail",
)
@pytest.mark.parametrize("command", ["evaluate", "vertices-csv"])
def test_an_output_in_a_read_only_folder_is_one_line(command, tmp_path, capsys):
    test_an_output_that_cannot_be_written_is_one_line_before_anything_is_written(
        command, "read-only", tmp_path, capsys
    )


def test_an_output_that_is_an_input_or_named_twice_is_refused(tmp_path, capsys):
    d = reference_path(*BREAST)
    rtss = d / "rtss.dcm"
    digest = _digest([rtss])
    vertices = ["vertices", "--ct", str(d / "CT"), "--rtstruct", str(rtss), "--gtv", "Tumor Bed"]
    assert main([*vertices, "--out", str(tmp_path / "v.dcm"), "--csv", str(rtss)]) == 2
    _one_error_line(capsys, "--csv", "is also the input")
    same = str(tmp_path / "same.out")
    assert (
        main(
            [
                "qa",
                "--rtdose",
                "x",
                "--rtstruct",
                "y",
                "--arm",
                "SFRT",
                "--json",
                same,
                "--csv",
                same,
            ]
        )
        == 2
    )
    _one_error_line(capsys, "--csv", "is also the file of --json")
    assert list(tmp_path.iterdir()) == []
    assert _digest([rtss]) == digest


# ------------------------------------------------------------------------------ interrupts
def _default_sigint() -> None:
    """In the child: SIGINT as a terminal would deliver it (a parent may have ignored it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("delay_s", [0.4, 1.5, 4.0])
def test_ctrl_c_at_any_moment_ends_with_130_and_one_line(delay_s, tmp_path):
    """Ctrl-C to the process group of a run (as job control sends it), while it imports,
    plans or writes: exit 130, "interrupted", no traceback and no output left."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lattice_plan.cli", "demo", "--fast", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    time.sleep(delay_s)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # while the command line loads it does not yet know the command's name
    assert err.strip().splitlines()[-1] in (
        "lattice-plan demo: interrupted",
        "lattice-plan: interrupted",
    )
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ compare
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"plans": ["SFRT"], "comparison": ', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b'["SFRT", "CRT"]', "not a metrics file"),
        (b'{"plans": ["SFRT"]}', "not a metrics file"),
        (b'{"plans": "SFRT", "comparison": {"plan": {}, "physical": {}, "eqd2": {}}}', "not a"),
        (
            b'{"plans": ["SFRT"], "comparison": {"plan": {"MU": 3}, "physical": {}, "eqd2": {}}}',
            "not a",
        ),
    ],
)
def test_compare_on_a_broken_metrics_json_is_one_line(content, words, tmp_path, capsys):
    folder = tmp_path / "plan"
    folder.mkdir()
    (folder / "metrics.json").write_bytes(content)
    assert main(["compare", str(folder), "--json", str(tmp_path / "table.json")]) == 2
    _one_error_line(capsys, "metrics.json", words)
    assert (folder / "metrics.json").read_bytes() == content
    assert _tree(tmp_path) == {folder, folder / "metrics.json"}


# ------------------------------------------------------------------------------ batch
PHANTOM_CASE = """
[[cases]]
id = "a"
phantom = { spacing_mm = [5.0, 5.0, 5.0], length_mm = 140.0 }
"""


def test_batch_to_a_scheduler_that_does_not_answer_is_one_line_and_quick(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a loopback port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cohort = tmp_path / "cohort.toml"
    cohort.write_text('name = "t"\narms = ["CRT"]\n' + PHANTOM_CASE)
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.monotonic()
    code = main(["batch", str(cohort), "--out", str(tmp_path / "out"), "--scheduler", address])
    assert code == 2
    assert time.monotonic() - t0 < 20  # batch.SCHEDULER_TIMEOUT_S is 3 s; Dask's default 30 s
    _one_error_line(capsys, address, "dask scheduler")
    assert _tree(tmp_path) == {cohort}


@pytest.mark.parametrize(
    ("head", "case", "words"),
    [
        ('arms = ["SFRT"]\n[settings]\n"dose.spacingmm" = 3.0\n', PHANTOM_CASE, "spacingmm"),
        ('arms = ["CRT"]\n[sweep]\n"lattice.spaceing_mm" = [20.0]\n', PHANTOM_CASE, "none of"),
        ('arms = ["CRT"]\n[sweep]\n"lattice.spacing_mm" = [20.0, 30.0]\n', PHANTOM_CASE, "none of"),
        (
            'arms = ["SFRT", "CRT"]\n[sweep]\n"dose.spacing_mm" = [3.0, 0.01]\n',
            PHANTOM_CASE,
            "0.01",
        ),
        ('arms = ["SFRT"]\n[settings]\n"beams.count" = 100000\n', PHANTOM_CASE, "1 to 360"),
        (
            'arms = ["CRT"]\n',
            '[[cases]]\nid = "p"\nct = "no/CT"\nrtstruct = "no/RS.dcm"\n',
            "CT folder",
        ),
        ('arms = ["CRT"]\n', '[[cases]]\nid = "p"\nphantom = { colour = 1 }\n', "colour"),
        ('arms = ["CRT"]\n', '[[cases]]\nid = "p"\nphantom = { length_mm = 5.0 }\n', "length_mm"),
        ('arms = ["CRT"]\n', '[[cases]]\nid = "p"\nphantom = { lobulation = "x" }\n', "phantom"),
    ],
)
def test_a_bad_cohort_is_refused_before_any_task_starts(head, case, words, tmp_path, capsys):
    """Every case, key and value is checked first: exit 2, one line, no output folder."""
    cohort = tmp_path / "cohort.toml"
    # the good phantom case first: its tasks would run if the check came per task
    cohort.write_text('name = "t"\n' + head + PHANTOM_CASE.replace('"a"', '"good"') + case)
    text = cohort.read_bytes()
    assert main(["batch", str(cohort), "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys, str(cohort), words)
    assert _tree(tmp_path) == {cohort}
    assert cohort.read_bytes() == text


# ------------------------------------------------------------------------------ spec ranges
def _range_cases() -> list[tuple[str, str, float]]:
    from lattice_plan.planning.spec_parse import NUMERIC_RANGES

    return [
        (table, key, value)
        for table, keys in NUMERIC_RANGES.items()
        for key, (low, high) in keys.items()
        for value in (high * 10 + 1, low - 1)
    ]


_TABLE_ARM = {"lattice": "SFRT", "scart": "SCART", "crt": "CRT", "optimiser": "SFRT"}


@pytest.mark.parametrize(("table", "key", "value"), _range_cases())
def test_every_numeric_spec_key_has_a_range(table, key, value):
    """--set TABLE.KEY=VALUE out of range is refused when the spec is parsed, naming all three."""
    from lattice_plan.errors import SpecError
    from lattice_plan.workflow.overrides import resolve_spec

    arm = _TABLE_ARM.get(table, "SFRT")
    with pytest.raises(SpecError) as err:
        resolve_spec(arm, None, {f"{table}.{key}": value})
    message = str(err.value)
    assert f"[{table}] {key}" in message and f"got {value!r}" in message and " to " in message


# ------------------------------------------------------------------------------ CLI wording
@pytest.mark.parametrize(
    "library_message",
    [
        "no CT image in 'x' (it holds: no files); give the folder of the CT series or pass "
        "recursive=True",
        "2 CT series in 'x'; pass series_uid= to choose one",
        "RTSTRUCT 'x' references 9 CT slices but 2 of them are not in the CT series read: the CT "
        "export is incomplete. Export the whole CT series, or rasterise the structures on "
        "another grid that covers them, e.g. read_rtstruct(path, read_rtdose(dose_path).grid)",
        "metric 'D95%[%]' is relative to the prescription; pass prescription_gy > 0 (got None)",
        "fractions=5 contradicts the 7 fractions planned in RTPLAN 'x'; leave fractions out or "
        "correct it",
        "RTDOSE 'x' is the dose of one fraction; give the RTPLAN or the number of fractions to "
        "get the dose of the course",
    ],
)
def test_library_advice_is_said_in_command_line_options(library_message):
    from lattice_plan.cli.main import cli_wording

    said = cli_wording(library_message)
    assert "--" in said
    for python in ("pass ", "recursive=", "series_uid=", "read_rtstruct(", "fractions=", "_gy"):
        assert python not in said, said


def _evaluate_breast(*options: str) -> list[str]:
    d = reference_path(*BREAST)
    files = ["--rtdose", str(d / "rtdose.dcm"), "--rtstruct", str(d / "rtss.dcm")]
    return ["evaluate", *files, *options]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--metrics", "V95%"], ("--rtplan", "--prescription-gy")),
        (["--prescription-gy", "0"], ("--prescription-gy must be positive", "got 0")),
        (["--fractions", "0"], ("--fractions must be at least 1", "got 0")),
        (["--ct", "EMPTY"], ("no CT image", "give --ct the folder that holds the CT slices")),
    ],
)
def test_evaluate_messages_name_the_options(options, words, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    options = [str(tmp_path / "empty") if o == "EMPTY" else o for o in options]
    assert main(_evaluate_breast(*options)) == 2
    line = _one_error_line(capsys, *words)
    assert "=" not in line.split("error:", 1)[1]


@pytest.mark.parametrize("option", ["--spacing", "--diameter", "--gtv-margin"])
def test_a_nan_number_is_said_to_be_no_number(option, tmp_path, capsys):
    d = reference_path(*BREAST)
    args = ["vertices", "--ct", str(d / "CT"), "--rtstruct", str(d / "rtss.dcm")]
    args += ["--gtv", "Tumor Bed", "--out", str(tmp_path / "v.dcm"), option, "nan"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert option in err[-1] and "'nan' is not a number" in err[-1]
    assert list(tmp_path.iterdir()) == []


def test_a_nan_output_factor_is_named_without_python_repr(tmp_path, capsys):
    scans = [reference_path("beam-data", f"varian-unique-6x-10x10{k}.mcc") for k in ("PDD", "xy")]
    factors = tmp_path / "of.csv"
    factors.write_text("side_mm,output_factor\n50,0.9\n100,1.0\n200,nan\n")
    out = tmp_path / "model.json"
    args = ["commission", *map(str, scans), "--output-factors", str(factors), "--out", str(out)]
    assert main(args) == 2
    line = _one_error_line(capsys, "200 x 200 mm", "value nan", "finite number")
    assert "np." not in line and "OutputFactor(" not in line
    assert not out.exists()
