"""VMAT in the plan spec: [delivery] method = "vmat" with [[arcs]], validated, and dispatched."""

from __future__ import annotations

import pytest

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.errors import SpecError
from lattice_plan.planning import spec as spec_module
from lattice_plan.planning.arcs import Arc
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription
from lattice_plan.planning.spec import parse_spec, plan_patient

ARC = {"name": "A1", "start_deg": 181.0, "stop_deg": 179.0, "direction": "CW"}


def _spec(**tables):
    return {"plan": {"arm": "SFRT", "name": "S"}, "delivery": {"method": "vmat"}, **tables}


def test_vmat_spec_reads_arcs_and_builds_the_reference_without_sequencing():
    s = parse_spec(_spec(arcs=[{**ARC, "collimator_deg": 30.0, "cp_spacing_deg": 2.0}]))
    assert s.arcs == (Arc("A1", 181.0, 179.0, "CW", 30.0, 0.0, 2.0),)
    # the arm's builder optimises the ideal fluence plan that VMAT re-plans on the arcs
    assert s.builder_kwargs()["delivery"].method == "ideal"
    assert parse_spec(_spec()).arcs is None  # default arcs


@pytest.mark.parametrize(
    ("tables", "match"),
    [
        ({"arcs": [{**ARC, "stop_deg": 181.0}]}, r"\[arcs #1\].*'A1'.*zero-length"),
        ({"arcs": [{**ARC, "cp_spacing_deg": 20.0}]}, r"\[arcs #1\].*'A1'.*outside 0.5-10 deg"),
        ({"arcs": [{**ARC, "tilt": 3}]}, r"arcs #1.*tilt"),
        ({"arcs": [ARC, ARC]}, r"\[\[arcs\]\].*unique"),
        ({"arcs": []}, r"one or more \[\[arcs\]\]"),
    ],
)
def test_bad_arcs_in_a_spec_are_refused(tables, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(_spec(**tables))


def test_arcs_without_vmat_delivery_or_in_a_crt_spec_are_refused():
    with pytest.raises(SpecError, match=r'method = "vmat"'):
        parse_spec({"plan": {"arm": "SFRT"}, "arcs": [ARC]})
    with pytest.raises(SpecError, match=r"\[arcs\] applies to SFRT and SCART"):
        parse_spec({"plan": {"arm": "CRT"}, "arcs": [ARC]})


def test_vmat_spec_dispatch_replans_the_arm_plan_on_its_arcs(monkeypatch, phantom):
    calls = {}

    def fake_arm(patient, gtv, **kwargs):
        calls["arm"] = kwargs
        beam = Beam("B", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(50, 50))
        return Plan("ref", Arm.SFRT, Prescription(1.0, 1, "GTV"), (beam,), patient.structures)

    def fake_vmat(patient, reference, **kwargs):
        calls["vmat"] = (reference.name, kwargs)
        return reference

    monkeypatch.setattr(spec_module, "build_sfrt_plan", fake_arm)
    monkeypatch.setattr(spec_module, "build_vmat_plan", fake_vmat)
    plan_patient(phantom, _spec(arcs=[ARC]))
    assert calls["arm"]["delivery"].method == "ideal"
    name, kwargs = calls["vmat"]
    assert name == "ref" and kwargs["arcs"] == (Arc(**ARC),) and kwargs["name"] == "S"
    assert kwargs["machine"].name == "varian-120"


def test_vmat_is_a_plan_override_and_a_cohort_sweep_key():
    from lattice_plan.cohort import CaseSource, Cohort
    from lattice_plan.workflow import apply_overrides

    # lattice-plan plan --set delivery.method=vmat
    s = parse_spec(apply_overrides({"plan": {"arm": "SCART"}}, {"delivery.method": "vmat"}))
    assert s.delivery.method == "vmat" and s.arcs is None
    # [sweep] "delivery.method" = ["sliding_window", "vmat"]: both for SFRT, none for CRT
    sweep = {"delivery.method": ("sliding_window", "vmat")}
    case = CaseSource("p1", phantom={})
    tasks = Cohort("c", (case,), ("SFRT", "CRT"), sweep).tasks()
    labels = sorted((t.arm, t.params_label) for t in tasks)
    assert labels == [
        ("CRT", "default"),
        ("SFRT", "method-slidingwindow"),
        ("SFRT", "method-vmat"),
    ]
