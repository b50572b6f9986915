"""Atomic output and portable file names (lattice_plan.io.atomic)."""

import pytest

from lattice_plan.errors import InputFileError
from lattice_plan.io.atomic import atomic_output_path, prepare_output_dir, safe_file_part


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
