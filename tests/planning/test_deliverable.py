"""The deliverable plan: sequenced beams, dose from their control points, ideal dose kept."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lattice_plan.analysis.delivery import ideal_vs_deliverable
from lattice_plan.dose.beam import Beam, FluenceMap, Jaws
from lattice_plan.dose.delivery import control_point_dose
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.machine import default_machine
from lattice_plan.errors import PlanningError, SpecError
from lattice_plan.planning.deliverable import DeliverySpec, make_deliverable, sequence_beams
from lattice_plan.planning.sfrt import build_sfrt_plan
from lattice_plan.planning.spec import parse_spec

KW = {"dose_spacing_mm": 5.0, "max_iterations": 6, "n_beams": 5}


@pytest.fixture(scope="module")
def engine(phantom):
    return DoseEngine(phantom.ct, phantom.structures.external(), dose_spacing_mm=5.0)


@pytest.fixture(scope="module")
def ideal(phantom, engine):
    return build_sfrt_plan(phantom, engine=engine, delivery=DeliverySpec("ideal"), **KW)


@pytest.fixture(scope="module")
def sliding(ideal, engine):
    return make_deliverable(ideal, engine, DeliverySpec())


@pytest.mark.slow
def test_sliding_window_plan_dose_is_the_dose_of_its_control_points(ideal, sliding, engine):
    plan = sliding
    assert len(plan.delivery_beams) == 5
    assert all(b.technique == "sliding_window" for b in plan.delivery_beams)
    # the plan's dose is its control points' dose for its (renormalised) MU, for the course
    again = control_point_dose(engine, plan.delivery_beams, default_machine())
    np.testing.assert_allclose(plan.dose.array, again.array * plan.fractions, rtol=1e-9, atol=1e-12)
    assert plan.achieved_prescription_gy() == pytest.approx(plan.prescription.total_dose_gy)
    assert plan.ideal_dose is ideal.dose
    assert plan.total_mu == pytest.approx(sum(b.mu for b in plan.delivery_beams))
    assert plan.info["delivery"]["delivery_time_s"] >= plan.total_mu / 10.0  # 600 MU/min
    cmp = ideal_vs_deliverable(plan)
    assert cmp["ideal"]["vertex_dmean_gy"] == pytest.approx(15.0, rel=1e-6)  # both normalised
    assert cmp["deliverable"]["vertex_dmean_gy"] == pytest.approx(15.0, rel=1e-6)
    # Transmission through the leaves over the whole beam-on time raises the valley: the
    # demo phantom keeps 93 % of the ideal PVDR (2.5 mm, 100 iterations; 90 % at 5 mm, 12).
    assert 0.8 < cmp["kept"]["pvdr_mean"] < 1.0


@pytest.mark.slow
def test_metrics_and_report_rows_show_the_ideal_beside_the_deliverable(phantom, ideal, sliding):
    # Issue 16, item 4: PVDR, vertex Dmean, valley D50, GTV D98, OAR maxima and total MU, ideal
    # vs deliverable, in metrics.json and in the report's plan rows.
    from lattice_plan.workflow import evaluate_plans

    metrics = evaluate_plans(phantom, [sliding], protocol=None)
    s = metrics["plans"][sliding.name]
    assert s["total_mu_ideal"] == pytest.approx(ideal.total_mu)
    # sliding window: each beam needs at least its map's largest MU (sum of rises >= max)
    assert s["total_mu_per_fraction"] == pytest.approx(sliding.total_mu)
    assert sliding.total_mu > ideal.total_mu
    cmp = ideal_vs_deliverable(sliding)
    oars = [k for k in cmp["ideal"] if k.endswith("_dmax_gy")]
    assert "CaudaEquina_dmax_gy" in oars
    for k in oars:
        text = f"{k[: -len('_dmax_gy')]} {cmp['ideal'][k]:.2f} -> {cmp['deliverable'][k]:.2f}"
        assert text in s["oar_dmax_ideal_deliverable"]
    for key in ("pvdr_mean", "vertex_dmean_gy", "valley_d50_gy", "gtv_d98_gy"):
        assert s[f"{key}_ideal"] == pytest.approx(cmp["ideal"][key])
    rows = metrics["comparison"]["plan"]
    assert rows["total MU per fraction: ideal fluence maps"][sliding.name] == s["total_mu_ideal"]
    assert "OAR Dmax (Gy): ideal fluence -> deliverable" in rows


@pytest.mark.slow
def test_step_and_shoot_and_ideal_methods(ideal, engine):
    plan = make_deliverable(ideal, engine, DeliverySpec("step_and_shoot", levels=5))
    assert all(b.beam_type == "STATIC" for b in plan.delivery_beams)
    assert plan.info["delivery"]["levels"] == 5
    kept = make_deliverable(ideal, engine, DeliverySpec("ideal"))
    assert kept.dose is ideal.dose and kept.delivery_beams == ()


def test_delivery_spec_is_read_and_checked():
    base = {"plan": {"arm": "SFRT"}, "delivery": {"method": "step_and_shoot", "levels": 7}}
    spec = parse_spec(base)
    assert spec.delivery == DeliverySpec("step_and_shoot", levels=7)
    assert spec.builder_kwargs()["delivery"].levels == 7
    with pytest.raises(SpecError, match=r"\[delivery\].*method must be one of"):
        parse_spec({"plan": {"arm": "SFRT"}, "delivery": {"method": "imrt"}})
    with pytest.raises(SpecError, match=r"\[delivery\] applies to SFRT and SCART plans"):
        parse_spec({"plan": {"arm": "CRT"}, "delivery": {"method": "ideal"}})
    with pytest.raises(PlanningError, match="levels must be a positive integer"):
        DeliverySpec("step_and_shoot", levels=0)
    area = {"method": "step_and_shoot", "levels": 2, "min_segment_area_mm2": 75.0}
    assert (
        parse_spec({"plan": {"arm": "SFRT"}, "delivery": area}).delivery.min_segment_area_mm2 == 75
    )
    with pytest.raises(SpecError, match=r"min_segment_area_mm2"):
        parse_spec({"plan": {"arm": "SFRT"}, "delivery": {**area, "min_segment_area_mm2": -1.0}})


def test_sequence_beams_passes_the_minimum_segment_area_and_reports_dropped_mu():
    # The beam of tests/planning/test_sequencing.py's minimum-area case: 2 units of 50 MU, of
    # 100 and 50 mm2; a 75 mm2 minimum drops the second (50 MU reported), 0 keeps both.
    jaws = Jaws.symmetric(10.0, 10.0)
    fmap = FluenceMap.covering(jaws, 5.0, np.array([[0.5, 1.0], [0.5, 1.0]]))
    beam = Beam("b", 0.0, (0.0, 0.0, 0.0), jaws, mu=100.0, fluence=fmap)
    plan = SimpleNamespace(name="p", beams=(beam, beam.with_mu(0.0)))
    machine = default_machine()
    for area, n_segments, dropped in ((0.0, 2, 0.0), (75.0, 1, 50.0)):
        spec = DeliverySpec("step_and_shoot", levels=2, min_segment_area_mm2=area)
        cps, reports = sequence_beams(plan, machine, spec)
        assert len(cps) == len(reports) == 1  # the beam without MU is not sequenced
        assert reports[0].n_segments == n_segments
        assert reports[0].dropped_mu == pytest.approx(dropped)
        assert cps[0].mu == pytest.approx(100.0 - dropped)


@pytest.fixture(scope="module")
def demo_ideal(phantom):
    """The full demo's SFRT plan (2.5 mm phantom and dose grid, 100 iterations), not sequenced."""
    from lattice_plan.demo import DEMO_SETTINGS
    from lattice_plan.workflow import plan_case

    overrides = {**DEMO_SETTINGS.overrides, "delivery.method": "ideal"}
    return plan_case(phantom, "SFRT", overrides=overrides)


@pytest.mark.slow
def test_demo_sfrt_deliverable_keeps_90_percent_of_the_ideal_pvdr(phantom, demo_ideal):
    # Issue 16, item 4: on the demo phantom the sliding-window SFRT plan keeps at least 90 % of
    # the ideal PVDR (mean vertex / mean valley). Measured (README "Delivery"; ideal PVDR 4.10):
    # sliding window 95.6 %, step-and-shoot 10 / 5 levels 96.6 / 97.4 %; step-and-shoot is held
    # to the same floor. The loss is leaf transmission over the beam-on time: below 1.
    engine = DoseEngine(phantom.ct, phantom.structures.external(), dose_spacing_mm=2.5)
    for spec in (DeliverySpec("sliding_window"), DeliverySpec("step_and_shoot", levels=10)):
        plan = make_deliverable(demo_ideal, engine, spec)
        kept = ideal_vs_deliverable(plan)["kept"]["pvdr_mean"]
        assert 0.90 <= kept < 1.0, (spec.method, kept)
        assert plan.achieved_prescription_gy() == pytest.approx(plan.prescription.total_dose_gy)
