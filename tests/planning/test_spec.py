"""Plan specs: TOML parsing, field-by-field validation with file/key/expected value, dispatch."""

import inspect
from pathlib import Path

import numpy as np
import pytest

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.errors import InputFileError, SpecError
from lattice_plan.geometry import Volume
from lattice_plan.geometry.lattice import LatticeParameters, LatticePattern
from lattice_plan.planning import objectives as O
from lattice_plan.planning import spec as spec_module
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription
from lattice_plan.planning.scart import ScartParameters
from lattice_plan.planning.spec import load_spec, parse_spec, plan_from_spec, plan_patient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "specs"


def _write(tmp_path, text, name="plan.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


CRT_MIN = """
[plan]
arm = "CRT"
"""

SFRT_BASE = """
[plan]
name = "lattice"
arm = "SFRT"

[prescription]
dose_gy = 15.0
fractions = 1

[beams]
count = 9
arc_deg = 360.0
beamlet_mm = 2.5

[optimiser]
max_iterations = 50
"""


def test_example_crt_spec():
    spec = load_spec(EXAMPLES / "crt_30gy_10fx.toml")
    assert spec.arm is Arm.CRT and spec.name == "CRT 30Gy/10"
    rx = spec.resolved_prescription()
    assert rx.dose_per_fraction_gy == pytest.approx(3.0)  # 30 Gy whole course / 10
    assert (rx.fractions, rx.target, rx.method) == (10, "PTV", "D95%")
    kw = spec.builder_kwargs()
    assert kw["ptv_margin_mm"] == 10.0 and kw["penumbra_margin_mm"] == 7.0
    assert kw["dose_spacing_mm"] == 2.5 and "gantry_deg" not in kw


def test_example_crt_spec_with_fields():
    spec = load_spec(EXAMPLES / "crt_8gy_1fx_ap_pa.toml")
    kw = spec.builder_kwargs()
    assert kw["gantry_deg"] == (0.0, 180.0) and kw["weights"] == (1.0, 2.0)
    assert kw["prescription"].total_dose_gy == pytest.approx(8.0)
    assert kw["prescription"].fractions == 1


def test_defaults_and_arm_specific_prescription_targets():
    spec = parse_spec({"plan": {"arm": "crt"}})
    assert spec.name == "CRT" and spec.gtv == "GTV" and spec.prescription is None
    assert parse_spec({"plan": {"arm": "CRT", "description": ""}}).description == ""
    assert spec.builder_kwargs() == {"name": "CRT"}
    sfrt = parse_spec(
        {"plan": {"arm": "SFRT"}, "prescription": {"dose_per_fraction_gy": 15.0, "fractions": 1}}
    )
    rx = sfrt.resolved_prescription()
    assert (rx.target, rx.method, rx.total_dose_gy) == ("Vertices", "Dmean", 15.0)


def test_optimised_arm_beams_and_objectives(tmp_path):
    text = (
        SFRT_BASE
        + """
[structures]
oars = ["CaudaEquina", "Kidney_L"]

[[objectives]]
type = "peak"
structure = "Vertices"
dose_gy = 15.0
weight = 10.0

[[objectives]]
type = "dvh"
structure = "Kidney_L"
dose_gy = 5.0
volume_pct = 10
sense = "max"

[[objectives]]
type = "falloff"
structure = "Ring"
target = "GTV"
high_gy = 6.0
low_gy = 1.0
distance_mm = 20
"""
    )
    spec = load_spec(_write(tmp_path, text))
    kw = spec.builder_kwargs()
    assert kw["n_beams"] == 9 and kw["arc_deg"] == 360.0 and kw["beamlet_mm"] == 2.5
    assert kw["max_iterations"] == 50 and kw["oars"] == ("CaudaEquina", "Kidney_L")
    peak, dvh, ring = kw["objectives"]
    assert isinstance(peak, O.PeakDose) and peak.dose_gy == 15.0 and peak.weight == 10.0
    assert isinstance(dvh, O.DVHPoint) and dvh.volume_pct == 10.0 and dvh.sense == "max"
    assert isinstance(ring, O.RingFallOff) and ring.target == "GTV" and ring.distance_mm == 20.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[plan]\nname = 'x'\n", r"\[plan\] is missing the key 'arm'"),
        ("[plan]\narm = 'IMRT'\n", r"\[plan\] arm: expected one of CRT, SFRT, SCART, got 'IMRT'"),
        (CRT_MIN + "[crt]\nptv_margin = 5\n", r"\[crt\] has unknown key\(s\) 'ptv_margin'"),
        (CRT_MIN + "[beem]\n", r"unknown table\(s\) 'beem'"),
        ("[plan]\narm = 'CRT'\ndescription = 3\n", r"\[plan\] description: expected a string"),
        ("[plan]\narm = 'CRT'\nname = ''\n", r"\[plan\] name: expected a non-empty string"),
        (
            CRT_MIN + "[crt]\nptv_margin_mm = -1\n",
            r"ptv_margin_mm: expected a number from 0 to 50, got -1",
        ),
        (CRT_MIN + "[dose]\nspacing_mm = 'fine'\n", r"\[dose\] spacing_mm: expected a number"),
        (CRT_MIN + "[beams]\ngantry_deg = []\n", r"gantry_deg: expected a non-empty list"),
        (
            CRT_MIN + "[beams]\ngantry_deg = [0, 180]\nweights = [1]\n",
            r"weights: expected 2 weights, one per gantry angle",
        ),
        (CRT_MIN + "[beams]\nweights = [1]\n", r"weights: expected gantry_deg as well"),
        (CRT_MIN + "[beams]\ncount = 3\n", r"count: expected no such key in a CRT spec"),
        (CRT_MIN + "[lattice]\npattern = 'hcp'\n", r"\[lattice\] applies to SFRT plans"),
        (
            CRT_MIN + "[[objectives]]\ntype='min_dose'\n",
            r"\[objectives\] applies to SFRT and SCART",
        ),
        (
            CRT_MIN + "[prescription]\ndose_gy = 30\n",
            r"\[prescription\] is missing the key 'fractions'",
        ),
        (
            CRT_MIN + "[prescription]\ndose_gy = 30\ndose_per_fraction_gy = 3\nfractions = 10\n",
            "exactly one of 'dose_gy'",
        ),
        (
            CRT_MIN + "[prescription]\ndose_gy = 30\nfractions = 0\n",
            r"fractions: expected a number from 1 to 60, got 0",
        ),
        (
            CRT_MIN + "[prescription]\ndose_gy = 30\nfractions = 10\nmethod = 'D105%'\n",
            r"\[prescription\]: .*not understood",
        ),
        (CRT_MIN + "[structures]\noars = 'Liver'\n", "oars: expected a list of structure names"),
        (
            SFRT_BASE.replace("count = 9", "count = 0"),
            r"\[beams\] count: expected a number from 1 to 360, got 0",
        ),
        (
            SFRT_BASE.replace("arc_deg = 360.0", "arc_deg = 400.0"),
            r"arc_deg: expected a number from 1 to 360, got 400.0",
        ),
        (
            SFRT_BASE.replace("beamlet_mm = 2.5", "beamlet_mm = 3.0"),
            r"\[beams\] beamlet_mm: expected 2.5 or 5 \(mm\), got 3.0",
        ),
        (
            SFRT_BASE.replace("count = 9", "count = 1").replace("360.0", "200.0"),
            r"\[beams\] count: expected at least 2 beams to approximate an arc",
        ),
        (SFRT_BASE + "[beams.extra]\n", "unknown key"),
    ],
)
def test_bad_specs_name_file_key_and_expectation(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(SpecError, match=match) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_zero_beams_in_a_crt_spec(tmp_path):
    """A CRT spec with no gantry angles is refused, not silently defaulted."""
    path = _write(tmp_path, CRT_MIN + "[beams]\ngantry_deg = []\nweights = []\n")
    with pytest.raises(SpecError, match="gantry_deg: expected a non-empty list of numbers, got"):
        load_spec(path)


@pytest.mark.parametrize(
    ("objectives", "match"),
    [
        (
            "[[objectives]]\ntype = 'min_dose'\nstructure = 'GTV'\ndose_gy = 20\n"
            "[[objectives]]\ntype = 'max_dose'\nstructure = 'GTV'\ndose_gy = 10\n",
            "conflicting objectives on 'GTV'",
        ),
        ("[[objectives]]\ntype = 'minimum'\n", r"\[objectives #1\] type: expected one of min_dose"),
        (
            "[[objectives]]\ntype = 'max_dose'\nstructure = 'Liver'\n",
            r"\[objectives #1\] is missing the key 'dose_gy'",
        ),
        (
            "[[objectives]]\ntype = 'max_dose'\nstructure = 'Liver'\ndose_gy = 5\nvolume = 3\n",
            r"\[objectives #1\] has unknown key\(s\) 'volume'",
        ),
        (
            "[[objectives]]\ntype = 'max_dose'\nstructure = 'Liver'\ndose_gy = 5\nweight = 0\n",
            r"\[objectives #1\]: .*weight must be a positive number",
        ),
        (
            "[[objectives]]\ntype = 'mean_dose'\nstructure = 'Liver'\ndose_gy = '5 Gy'\n",
            r"\[objectives #1\] dose_gy: expected a number, got '5 Gy'",
        ),
    ],
)
def test_bad_objectives(tmp_path, objectives, match):
    path = _write(tmp_path, SFRT_BASE + objectives)
    with pytest.raises(SpecError, match=match) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_missing_gtv_and_oars_against_the_patient(tmp_path, phantom):
    spec = load_spec(_write(tmp_path, CRT_MIN + "[structures]\ngtv = 'GTV_primary'\n"))
    with pytest.raises(SpecError, match=r"\[structures\] gtv = 'GTV_primary' is not among"):
        spec.check_structures(phantom.structures)
    spec = load_spec(_write(tmp_path, SFRT_BASE + "[structures]\noars = ['Kidney_L', 'Heart']\n"))
    with pytest.raises(SpecError, match=r"oars: 'Heart' is not among the structures"):
        spec.check_structures(phantom.structures)
    spec = parse_spec(
        {"plan": {"arm": "CRT"}, "prescription": {"dose_gy": 8, "fractions": 1, "target": "CTV"}},
        source="inline",
    )
    with pytest.raises(SpecError, match=r"inline: \[prescription\] target = 'CTV'"):
        spec.check_structures(phantom.structures)
    # The spec's own structure names that the patient has, or the builder creates, pass.
    parse_spec(
        {"plan": {"arm": "CRT"}, "prescription": {"dose_gy": 8, "fractions": 1, "target": "PTV"}}
    ).check_structures(phantom.structures)


def test_file_errors(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    path = _write(tmp_path, "[plan\narm = 'CRT'\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(path)


def test_example_sfrt_spec_builds_lattice_parameters_and_objectives():
    spec = load_spec(EXAMPLES / "sfrt_15gy_1fx.toml")
    assert spec.arm is Arm.SFRT
    lat = spec.lattice
    assert isinstance(lat, LatticeParameters)
    assert lat.pattern is LatticePattern.HCP
    assert (lat.diameter_mm, lat.spacing_mm, lat.gtv_margin_mm) == (15.0, 30.0, 5.0)
    kw = spec.builder_kwargs()
    assert kw["lattice"] is lat and kw["n_beams"] == 9 and kw["beamlet_mm"] == 5.0
    assert kw["prescription"].method == "Dmean" and kw["prescription"].target == "Vertices"
    kinds = [o.kind for o in kw["objectives"]]
    assert kinds == ["peak", "valley", "edge", "falloff"] + ["max_dose"] * 5 + ["mean_dose"] * 3


@pytest.mark.parametrize(
    ("lattice", "match"),
    [
        ("pattern = 'sc'\n", None),  # alias of simple_cubic, accepted by LatticePattern.parse
        ("pattern = 'hexagonal'\n", r"\[lattice\]: unknown lattice pattern 'hexagonal'"),
        ("diameter_mm = 40.0\n", r"\[lattice\]: vertex diameter_mm must be"),
        (
            "spacing = 30.0\n",
            r"\[lattice\] has unknown key\(s\) 'spacing'; valid keys: .*spacing_mm",
        ),
        ("whole_spheres_only = 1\n", r"\[lattice\] whole_spheres_only: expected true or false"),
        ("max_vertices = 2.5\n", r"\[lattice\] max_vertices: expected an integer"),
    ],
)
def test_lattice_table(tmp_path, lattice, match):
    path = _write(tmp_path, SFRT_BASE + "[lattice]\n" + lattice)
    if match is None:
        assert load_spec(path).lattice.pattern is LatticePattern.SIMPLE_CUBIC
        return
    with pytest.raises(SpecError, match=match) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_example_scart_spec():
    spec = load_spec(EXAMPLES / "scart_15gy_1fx.toml")
    assert spec.arm is Arm.SCART and spec.objectives is None
    assert isinstance(spec.core, ScartParameters)
    assert (spec.core.method, spec.core.periphery_dose_gy, spec.core.core_dose_gy) == (
        "dose_ratio",
        3.0,
        15.0,
    )
    kw = spec.builder_kwargs()
    assert kw["core"] is spec.core and kw["n_beams"] == 9 and "arc_deg" not in kw
    assert (kw["prescription"].target, kw["prescription"].method) == ("STV", "D95%")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_spec_fits_the_phantom(name, phantom):
    """Every shipped example names structures the phantom has or the builder creates."""
    load_spec(EXAMPLES / name).check_structures(phantom.structures)


def test_scart_table_errors(tmp_path):
    base = SFRT_BASE.replace("arm = 'SFRT'", "arm = 'SCART'").replace('"SFRT"', '"SCART"')
    path = _write(tmp_path, base + "[scart]\nmethod = 'shrink'\n")
    with pytest.raises(SpecError, match=r"\[scart\]: unknown SCART method 'shrink'"):
        load_spec(path)
    path = _write(tmp_path, base + "[scart]\nmargin = 5\n")
    with pytest.raises(SpecError, match=r"\[scart\] has unknown key\(s\) 'margin'"):
        load_spec(path)


def test_objectives_must_name_known_structures(tmp_path, phantom):
    ok = SFRT_BASE + (
        "[[objectives]]\ntype = 'valley'\nstructure = 'Valley'\ndose_gy = 3\n"
        "[[objectives]]\ntype = 'max_dose'\nstructure = 'kidney_l'\ndose_gy = 5\n"
    )
    load_spec(_write(tmp_path, ok)).check_structures(phantom.structures)
    bad = SFRT_BASE + "[[objectives]]\ntype = 'max_dose'\nstructure = 'Heart'\ndose_gy = 5\n"
    with pytest.raises(SpecError, match=r"\[objectives #1\] structure = 'Heart' is neither"):
        load_spec(_write(tmp_path, bad)).check_structures(phantom.structures)
    ring = SFRT_BASE + (
        "[[objectives]]\ntype = 'falloff'\nstructure = 'Ring'\ntarget = 'CTV'\n"
        "high_gy = 4\nlow_gy = 1\ndistance_mm = 10\n"
    )
    with pytest.raises(SpecError, match=r"\[objectives #1\] target = 'CTV' is neither"):
        load_spec(_write(tmp_path, ring)).check_structures(phantom.structures)


@pytest.mark.parametrize(
    ("name", "builder", "arm"),
    [
        ("crt_8gy_1fx_ap_pa.toml", "build_crt_plan", Arm.CRT),
        ("sfrt_15gy_1fx.toml", "build_sfrt_plan", Arm.SFRT),
        ("scart_15gy_1fx.toml", "build_scart_plan", Arm.SCART),
    ],
)
def test_dispatch_hands_the_spec_to_the_arm_builder(monkeypatch, phantom, name, builder, arm):
    """plan_patient calls the arm's builder with keywords its signature accepts (bound here
    against the real builder) and marks the plan with the spec's file."""
    real = getattr(spec_module, builder)
    calls = []

    def fake(patient, gtv, **kwargs):
        inspect.signature(real).bind(patient, gtv, **kwargs)  # TypeError on a wrong keyword
        calls.append((gtv, kwargs))
        beam = Beam("B", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(50, 50))
        return Plan(kwargs["name"], arm, Prescription(1.0, 1, "GTV"), (beam,), patient.structures)

    monkeypatch.setattr(spec_module, builder, fake)
    path = EXAMPLES / name
    plan = plan_patient(phantom, path, engine=None)
    spec = load_spec(path)
    ((gtv, kwargs),) = calls
    assert gtv == "GTV" and kwargs["name"] == spec.name
    assert kwargs["prescription"] == spec.resolved_prescription()
    assert plan.info["spec_source"] == str(path)
    if arm is not Arm.CRT:
        assert kwargs["progress"] is None and kwargs["n_beams"] == 9


def test_plan_from_spec_needs_a_ct_in_hu(phantom):
    dose = Volume(np.zeros(phantom.grid.shape), phantom.grid, "Gy")
    with pytest.raises(SpecError, match="CT in HU"):
        plan_from_spec({"plan": {"arm": "CRT"}}, dose, phantom.structures)


def test_dispatch_refuses_a_spec_that_does_not_fit_the_patient(phantom):
    with pytest.raises(SpecError, match="gtv = 'Tumour' is not among"):
        plan_from_spec(
            {"plan": {"arm": "CRT"}, "structures": {"gtv": "Tumour"}},
            phantom.ct,
            phantom.structures,
        )


def test_package_exposes_plan_from_spec():
    import lattice_plan.planning as planning

    assert planning.plan_from_spec is plan_from_spec
    with pytest.raises(AttributeError, match="no attribute 'plan_form_spec'"):
        planning.plan_form_spec  # noqa: B018


def test_crt_schedule_arrangements_and_segments():
    """Issue 19: the CRT schedule, candidate arrangements and segments are spec keys."""
    spec = parse_spec(
        {
            "plan": {"arm": "CRT"},
            "crt": {
                "schedule": "20Gy/5",
                "arrangements": ["box", "three-field"],
                "max_segments_per_beam": 0,
            },
        }
    )
    rx = spec.resolved_prescription()
    assert (rx.total_dose_gy, rx.fractions, rx.target, rx.method) == (20.0, 5, "PTV", "D95%")
    kw = spec.builder_kwargs()
    assert kw["arrangements"] == ("box", "three-field") and kw["max_segments_per_beam"] == 0
    assert kw["prescription"] == rx
    # A schedule beside an equal prescription is accepted.
    same = parse_spec(
        {
            "plan": {"arm": "CRT"},
            "prescription": {"dose_gy": 8.0, "fractions": 1},
            "crt": {"schedule": "8Gy/1"},
        }
    )
    assert same.resolved_prescription().total_dose_gy == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (CRT_MIN + "[crt]\nschedule = '25Gy/5'\n", r"\[crt\] schedule: unknown CRT schedule"),
        (CRT_MIN + "[crt]\narrangements = []\n", r"\[crt\] arrangements: .*list is empty"),
        (
            CRT_MIN + "[crt]\narrangements = ['box', 'arc']\n",
            r"\[crt\] arrangements: unknown CRT arrangement\(s\) 'arc'",
        ),
        (CRT_MIN + "[crt]\narrangements = 'box'\n", "arrangements: expected a list"),
        (
            CRT_MIN + "[beams]\ngantry_deg = [0, 180]\nweights = [1, -1]\n",
            "weights: expected a non-empty list of non-negative numbers",
        ),
        (
            CRT_MIN + "[prescription]\ndose_gy = 30\nfractions = 10\n[crt]\nschedule = '8Gy/1'\n",
            r"schedule '8Gy/1' disagrees with \[prescription\] \(30 Gy in 10\)",
        ),
        (
            CRT_MIN + "[crt]\nmax_segments_per_beam = -1\n",
            r"max_segments_per_beam: expected a number from 0 to 20, got -1",
        ),
    ],
)
def test_crt_spec_errors(tmp_path, text, match):
    with pytest.raises(SpecError, match=match):
        load_spec(_write(tmp_path, text))
