"""Cohort files: validation with file/key messages, task expansion, content hashes."""

import textwrap

import pytest

from lattice_plan.cohort import load_cohort
from lattice_plan.errors import InputFileError, SpecError

GOOD = """
name = "pilot"
arms = ["SFRT", "SCART", "CRT"]

[settings]
"dose.spacing_mm" = 3.0

[sweep]
"lattice.spacing_mm" = [25.0, 30.0]
"lattice.diameter_mm" = [10.0, 15.0]
"scart.method" = ["contract", "dose_ratio"]

[[cases]]
id = "phantom-a"
phantom = { seed = 1 }

[[cases]]
id = "patient-7"
ct = "p7/CT"
rtstruct = "p7/RS.dcm"
gtv = "GTV_mass"
oars = ["SpinalCord"]
"""


def _write(tmp_path, text, name="cohort.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_expansion_applies_sweeps_per_arm(tmp_path):
    cohort = load_cohort(_write(tmp_path, GOOD))
    tasks = cohort.tasks()
    # per case: SFRT 2x2 spacing/diameter, SCART 2 methods, CRT 1 -> 7; two cases -> 14
    assert len(tasks) == 14
    sfrt = [t for t in tasks if t.arm == "SFRT" and t.case.case_id == "phantom-a"]
    assert {t.params_label for t in sfrt} == {
        "spacing_mm-25_diameter_mm-10",
        "spacing_mm-25_diameter_mm-15",
        "spacing_mm-30_diameter_mm-10",
        "spacing_mm-30_diameter_mm-15",
    }
    crt = [t for t in tasks if t.arm == "CRT"]
    assert all(t.params == () and t.params_label == "default" for t in crt)
    p7 = tasks[-1].case
    assert p7.ct_dir == (tmp_path / "p7" / "CT").resolve()
    assert p7.gtv == "GTV_mass" and p7.oars == ("SpinalCord",)
    assert str(tasks[0].relative_dir) == "phantom-a/sfrt/spacing_mm-25_diameter_mm-10"


def test_content_hash_changes_with_inputs_and_parameters(tmp_path):
    cohort = load_cohort(_write(tmp_path, GOOD))
    t0, t1 = cohort.tasks()[:2]
    fp = t0.case.fingerprint()
    assert fp == t0.case.fingerprint()  # deterministic
    assert t0.content_hash(fp, {}) != t1.content_hash(fp, {})
    assert t0.content_hash(fp, {}) != t0.content_hash(fp, {"dose.spacing_mm": 2.5})
    other = load_cohort(_write(tmp_path, GOOD.replace("seed = 1", "seed = 2"), "b.toml")).tasks()[0]
    assert other.case.fingerprint() != fp


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('arms = ["IMRT"]\n[[cases]]\nid = "a"\nphantom = {}', "key 'arms': expected arm names"),
        ('[[cases]]\nid = "a b"\nphantom = {}', r"key 'cases\[0\].id'"),
        ('[[cases]]\nid = "a"\nct = "x"', "phantom = {...}, or both ct and rtstruct"),
        ('[[cases]]\nid = "a"\nphantom = {}\n[[cases]]\nid = "a"\nphantom = {}', "unique case id"),
        ('[[cases]]\nid = "a"\nphantom = {}\n[sweep]\n"lattice.spacing_mm" = 25', "non-empty list"),
        ('colour = "red"\n[[cases]]\nid = "a"\nphantom = {}', "key 'colour'"),
        ("arms = [", "not valid TOML"),
    ],
)
def test_bad_cohort_files_name_file_and_key(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(SpecError, match=match) as err:
        load_cohort(path)
    assert str(path) in str(err.value)


def test_missing_cohort_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_cohort(tmp_path / "nope.toml")


def test_the_example_cohort_loads_and_expands():
    """examples/cohort_phantom_sweep.toml: 3 cases x (4 SFRT + 1 SCART + 1 CRT) tasks."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "cohort_phantom_sweep.toml"
    cohort = load_cohort(path)
    assert len(cohort.tasks()) == 18
    assert all(c.is_phantom for c in cohort.cases)
