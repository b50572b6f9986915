"""Atomic output and portable file names (lattice_plan.io.atomic)."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lattice_plan.errors import InputFileError
from lattice_plan.io.atomic import (
    atomic_output_dir,
    atomic_output_path,
    prepare_output_dir,
    remove_stale_staging,
    safe_file_part,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SFRT plan (v2)", "SFRT_plan_v2"),
        ("G270/C0", "G270_C0"),
        (".hidden", "hidden"),
        ("été", "t"),
        ("///", "fallback"),
    ],
)
def test_safe_file_part(name, expected):
    assert safe_file_part(name, "fallback") == expected


def test_atomic_output_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_output_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind
    with atomic_output_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_output_dir_must_not_be_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(InputFileError):
        prepare_output_dir(f)


# ------------------------------------------------------------------------------ killed writers
_WRITER = """
import sys, time
from pathlib import Path
from lattice_plan.files import atomic_output_dir, atomic_output_path
out = Path(sys.argv[1])
with atomic_output_dir(out, ".marker") as tmp, atomic_output_path(out.parent / "t.json") as part:
    (tmp / "half.txt").write_text("half")
    part.write_text("half")
    print("writing", flush=True)
    time.sleep(60)
"""


def _killed_writer(out: Path) -> int:
    """Start a process writing ``out`` and ``t.json`` beside it, SIGKILL it mid-write; its pid."""
    root = Path(__file__).resolve().parents[2]  # the package imports from here
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(out)], stdout=subprocess.PIPE, text=True, cwd=root
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    return proc.pid


def test_staging_left_by_a_killed_run_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    pid = _killed_writer(out)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert [n.split("-")[0] for n in left] == [".out.partial", f".t.json.{pid}"]
    assert left[0].startswith(f".out.partial-{pid}-") and left[1].endswith(".part")
    # A concurrent run (a live process) has its own staging beside it: it must stay.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        concurrent = tmp_path / f".out.partial-{live.pid}-abcd1234"
        concurrent.mkdir()
        with atomic_output_dir(out, ".marker") as tmp:
            (tmp / ".marker").write_text("{}")
        with atomic_output_path(tmp_path / "t.json") as tmp:
            tmp.write_text("{}")
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted([concurrent.name, "out", "t.json"])
    finally:
        live.kill()
        live.wait(timeout=30)
    # The batch's sweep of a whole output tree removes it once its process has ended.
    remove_stale_staging(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.json"]
    assert (out / ".marker").is_file() and not (out / "half.txt").exists()
