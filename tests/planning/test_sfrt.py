"""The SFRT (lattice) builder on the built-in phantom.

Metrics are computed here with plain NumPy: the plan's dose is interpolated
(trilinear) at the CT voxel centres of each structure, independently of the
dose-grid rasterisation the builder normalised on. D0.03cc is the dose of the
hottest 0.03 cc (two 2.5 mm CT voxels of 0.0156 cc each).

OAR limits: AAPM TG-101 (Benedict et al., Med Phys 37 (2010) 4078, Table III),
one fraction: spinal cord Dmax 14 Gy, cauda equina Dmax 16 Gy, skin Dmax 26 Gy,
jejunum/ileum Dmax 15.4 Gy, liver 700 cc < 9.1 Gy, renal cortex 200 cc < 8.4 Gy
(critical volumes: at least that volume stays below the threshold). The issue
asks cauda/cord D0.03cc < 10 Gy on top.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.beams import coplanar_arrangement, fluence_beams
from lattice_plan.planning.objectives import MaxDose, MinDose
from lattice_plan.planning.sfrt import build_sfrt_plan
from tests.planning.conftest import check_tg101, ct_voxel_doses

RX_GY = 15.0
# Tests stop at 40 iterations (the default is 200 with a stall rule); the metrics hold there.
ITERATIONS = 40


@pytest.fixture(scope="module")
def engine(phantom):
    return DoseEngine(phantom.ct, phantom.structures.external(), dose_spacing_mm=2.5)


@pytest.fixture(scope="module")
def sfrt(phantom, engine):
    calls = []
    plan = build_sfrt_plan(
        phantom,
        engine=engine,
        max_iterations=ITERATIONS,
        progress=lambda it, f: calls.append((it, f)),
    )
    return plan, calls


@pytest.mark.slow
def test_sfrt_plan_meets_the_lattice_goals(sfrt, phantom):
    plan, _ = sfrt
    voxel_cc = phantom.grid.voxel_volume_cc
    assert plan.arm.value == "SFRT"
    assert plan.prescription.target == "Vertices" and plan.prescription.method == "Dmean"
    assert plan.info["n_vertices"] >= 1
    vertex = ct_voxel_doses(plan, "Vertices").mean()
    valley = ct_voxel_doses(plan, "Valley").mean()
    gtv = ct_voxel_doses(plan, "GTV")
    assert vertex == pytest.approx(RX_GY, rel=0.05)
    # Peak-to-valley (mean vertex / mean valley) at least 3: the built-in protocol's SFRT arm
    # (PVDR[mean] >= 3, a template choice; PVDR reported as the RSS GRID/LATTICE white paper
    # recommends, Zhang et al., Radiat Res 194 (2020) 665).
    assert vertex / valley >= 3.0
    # D10/D90 over the GTV at least 2: a floor, not a published value (regression: the fast
    # demo's lattice plan gives 3.7, its homogeneous CRT plan 1.02); a lattice that lost its
    # peaks and valleys falls to near 1.
    d10, d90 = np.percentile(gtv, 90.0), np.percentile(gtv, 10.0)
    assert d10 / d90 >= 2.0
    check_tg101(plan, voxel_cc)
    assert {"Vertices", "Valley", "GTV_Edge", "Ring", "NormalTissue"} <= set(plan.structures.names)


@pytest.mark.slow
def test_sfrt_optimiser_report_and_monotone_progress(sfrt):
    plan, calls = sfrt
    rep = plan.info["optimizer"]
    assert rep["iterations"] == len(calls) <= ITERATIONS
    history = [f for _, f in calls]
    assert all(b <= a for a, b in itertools.pairwise(history))
    assert (
        rep["final_objective"] <= history[-1] and rep["final_objective"] < rep["initial_objective"]
    )
    # The default stop rule is in dose terms (OptimizerOptions: no objective voxel's dose moves
    # by more than 1 % of Rx over 5 iterations); this plan needs about 45 iterations to settle
    # (regression value of the optimiser benchmark, benchmarks/bench_optimizer.py), so the
    # 40-iteration cap stops it, although the objective itself fell by less than 0.2 % per
    # iteration well before: the old stall rule would have stopped early.
    assert rep["stop_reason"] == "iteration limit" and rep["iterations"] == ITERATIONS
    full = [rep["initial_objective"], *history]
    assert any(full[n - 5] - full[n] <= 2e-3 * 5 * abs(full[n]) for n in range(5, len(full)))
    assert rep["time_per_iteration_s"] > 0
    assert len(plan.beams) == 9
    assert plan.info["gantry_deg"] == [40.0 * n for n in range(9)]


@pytest.mark.slow
def test_sfrt_mu_and_modulation(sfrt, engine):
    plan, _ = sfrt
    info = plan.info
    assert info["total_mu"] == pytest.approx(plan.total_mu)
    assert info["modulation"] == pytest.approx(plan.total_mu / info["open_field_total_mu"])
    assert info["modulation"] > 1.0  # a modulated plan needs more MU than open fields
    # Delivering the maps by sliding window takes at least the fluence MU of each beam; the
    # plan's MU are those of its sequenced control-point beams (sliding window by default).
    assert info["sliding_window_mu"] >= info["ideal_total_mu"]
    assert plan.total_mu == pytest.approx(sum(b.mu for b in plan.delivery_beams))
    assert info["delivery"]["method"] == "sliding_window" and len(plan.delivery_beams) == 9
    # The open-field reference: the same beams open over their active beamlets (the target's
    # projection plus 5 mm), equal MU, deliver the prescription with open_field_total_mu.
    arrangement = coplanar_arrangement(9)
    fb = fluence_beams(plan.structures["GTV"], tuple(info["isocenter_lps_mm"]), arrangement)
    open_beams = [b.with_mu(info["open_field_total_mu"] / 9) for b in fb.beams]
    open_plan = plan.with_dose(engine.compute(open_beams))
    assert open_plan.achieved_prescription_gy() == pytest.approx(RX_GY, rel=0.01)


@pytest.mark.slow
def test_same_inputs_give_the_same_plan_bit_for_bit(phantom):
    # A coarse dose grid and few iterations keep this cheap; the determinism is the same.
    kw = {"dose_spacing_mm": 5.0, "max_iterations": 4, "n_beams": 5}
    a = build_sfrt_plan(phantom, **kw)
    b = build_sfrt_plan(phantom, **kw)
    assert a.dose.array.tobytes() == b.dose.array.tobytes()
    for ba, bb in zip(a.beams, b.beams, strict=True):
        assert ba.mu == bb.mu
        assert ba.fluence.values.tobytes() == bb.fluence.values.tobytes()


def test_conflicting_objectives_and_zero_beams_are_refused(phantom, engine):
    with pytest.raises(PlanningError, match="conflicting objectives on 'Vertices'"):
        build_sfrt_plan(
            phantom,
            engine=engine,
            objectives=[MinDose("Vertices", 15.0), MaxDose("Vertices", 10.0)],
        )
    with pytest.raises(PlanningError, match="n_beams"):
        build_sfrt_plan(phantom, engine=engine, n_beams=0)
    with pytest.raises(PlanningError, match="beamlet_mm"):
        build_sfrt_plan(phantom, engine=engine, beamlet_mm=4.0)


@pytest.mark.slow
def test_arc_and_fine_beamlets(phantom):
    # Seven beams over a 180 deg arc on the target's side, 2.5 mm beamlets (coarse dose grid,
    # few iterations: this checks the options reach the plan, not its quality).
    plan = build_sfrt_plan(
        phantom, n_beams=7, arc_deg=180.0, beamlet_mm=2.5, dose_spacing_mm=5.0, max_iterations=3
    )
    assert "180 deg arc" in plan.info["arrangement"]
    gantry = plan.info["gantry_deg"]
    assert len(gantry) == 7 and np.allclose(
        np.diff(np.unwrap(np.radians(gantry))), np.radians(30.0)
    )
    # The arc is centred on the side of the body nearest the (left posterior) mass.
    assert 90.0 < gantry[3] < 180.0
    assert all(b.fluence.beamlet_mm == 2.5 for b in plan.beams)
    assert plan.info["optimizer"]["stop_reason"] == "iteration limit"
