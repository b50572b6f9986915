"""Direct aperture optimisation of VMAT leaf positions (planning/leaf_opt.py, issue 17): the
open-fluence model against the exact interval fluence, its tip gradient against finite
differences, the projection onto the machine's limits, and an optimisation that lowers the
objective while every interval stays deliverable."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lattice_plan.dose.beam import Beam, FluenceMap, Jaws
from lattice_plan.dose.machine import default_machine
from lattice_plan.planning.aperture_opt import interval_fluence_matrix
from lattice_plan.planning.arc_sequencing import (
    check_arc_limits,
    interval_mu_lower_bounds,
    sector_cuts,
    sequence_arc,
)
from lattice_plan.planning.arcs import Arc
from lattice_plan.planning.layout import FluenceLayout
from lattice_plan.planning.leaf_opt import (
    _LeafModel,
    optimise_leaves,
    project_tips,
    travel_limits_mm,
)
from lattice_plan.planning.objectives import MaxDose, MinDose
from lattice_plan.planning.optimizer import MatrixOperator, ObjectiveTerm

MACHINE = default_machine("varian-120")
# no transmission, no tongue-and-groove: the exact interval fluence is then the open fluence alone
BARE = dataclasses.replace(
    MACHINE, leaf_transmission=0.0, jaw_transmission=0.0, tongue_groove_mm=0.0
)


def _peaked_beam(name: str) -> Beam:
    """A 40 x 40 mm map, collimator 30 deg, two 10 mm peaks per row on a 0.2 background, 200 MU."""
    v = np.full((8, 8), 0.2)
    v[:, 1:3] = 1.0
    v[:, 5:7] = 1.0
    jaws = Jaws(-20, 20, -20, 20)
    return Beam(
        name,
        0.0,
        (0.0, 0.0, 0.0),
        jaws,
        mu=200.0,
        collimator_deg=30.0,
        fluence=FluenceMap.covering(jaws, 5.0, v),
    )


@pytest.fixture(scope="module")
def arc_case():
    arc = Arc("A", 0.0, 60.0, "CW", 30.0, 0.0, 2.0)
    beams = [_peaked_beam("S0"), _peaked_beam("S1")]
    ap = sequence_arc(arc, sector_cuts(arc.n_control_points, 2), beams, MACHINE)
    ap = ap.with_interval_mu(np.maximum(ap.interval_mu, interval_mu_lower_bounds(ap, MACHINE)))
    return ap, [beams], [[0, 64]]


def test_model_reproduces_the_exact_open_fluence_and_its_tip_gradient(arc_case):
    ap, beams, offs = arc_case
    F = interval_fluence_matrix([ap], beams, BARE, offs, 128)
    exact = F @ ap.interval_mu
    model = _LeafModel([ap], beams, offs, BARE, exact, [ap.interval_mu])
    tips = [(ap.x1, ap.x2)]
    # midpoint rule (6 samples per interval) against the exact meterset integral: within 2 % of
    # the largest beamlet weight (the sweep's peaks)
    open_w = model.open_weights(tips)
    assert np.abs(open_w - exact).max() < 0.02 * exact.max()
    assert np.allclose(model.weights(tips), exact)  # the model starts at the exact weights
    # d(g . w)/d tip against central differences, on tips that move inside the jaws; the sweep
    # rests its tips on beamlet edges, where the open fluence has a kink: shift them off first
    rng = np.random.default_rng(3)
    shift = rng.uniform(0.1, 0.4, ap.x1.shape)
    tips = [(ap.x1 + shift, ap.x2 + shift)]
    g = rng.normal(size=128)
    ((g1, g2),) = model.tip_gradient(tips, g)
    moving = np.flatnonzero(np.abs(g2).sum(axis=0) > 0)
    assert len(moving) >= 6
    eps = 1e-3
    for cp, p in [(5, moving[0]), (12, moving[len(moving) // 2]), (20, moving[-1])]:
        for which, grad in ((0, g1), (1, g2)):
            up = [a.copy() for a in tips[0]]
            dn = [a.copy() for a in tips[0]]
            up[which][cp, p] += eps
            dn[which][cp, p] -= eps
            fd = (g @ model.weights([tuple(up)]) - g @ model.weights([tuple(dn)])) / (2 * eps)
            assert grad[cp, p] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_projection_keeps_leaf_speed_minimum_gap_and_jaw_limit():
    rng = np.random.default_rng(0)
    n_cp, n_pairs = 30, 5
    x1 = rng.uniform(-250, 50, (n_cp, n_pairs))
    x2 = x1 + rng.uniform(-20, 40, (n_cp, n_pairs))  # some crossed pairs
    limit = rng.uniform(1.0, 12.0, n_cp - 1)
    p1, p2 = project_tips(x1, x2, limit, MACHINE)
    assert np.all(p2 - p1 >= MACHINE.min_leaf_gap_mm - 1e-9)
    assert np.all(np.abs(np.concatenate([p1, p2])) <= MACHINE.jaw_limit_mm + 1e-9)
    travel = np.maximum(np.abs(np.diff(p1, axis=0)), np.abs(np.diff(p2, axis=0)))
    assert np.all(travel <= limit[:, None] + 1e-9)
    # feasible tips are kept as they are
    q1, q2 = project_tips(p1, p2, limit, MACHINE)
    np.testing.assert_allclose(q1, p1, atol=1e-9)
    np.testing.assert_allclose(q2, p2, atol=1e-9)


def test_leaf_optimisation_lowers_the_objective_and_stays_deliverable(arc_case):
    ap, beams, offs = arc_case
    F = interval_fluence_matrix([ap], beams, MACHINE, offs, 128)
    w0 = F @ ap.interval_mu
    # "dose" = beamlet weights; the objective asks the first peak column of each map to be
    # raised by 10 % and the background columns to fall to half: the tips must move
    op = MatrixOperator(np.eye(128))
    cols = np.tile(np.arange(8), 16)
    peak = np.flatnonzero(np.isin(cols, (1, 2)))
    low = np.flatnonzero(np.isin(cols, (0, 3, 4)))
    terms = [
        ObjectiveTerm(MinDose("peak", 1.1 * float(w0[peak].mean()), weight=5.0), peak),
        ObjectiveTerm(MaxDose("low", 0.5 * float(w0[low].mean())), low),
    ]
    layout = FluenceLayout(((8, 8), (8, 8)))
    res = optimise_leaves(
        [ap],
        beams,
        offs,
        MACHINE,
        op,
        terms,
        layout,
        dose_scale_gy=1.0,
        base_weights=w0,
        n_fractions=1,
        max_iterations=20,
    )
    assert res.accepted > 0
    assert res.final_objective < 0.9 * res.initial_objective
    out = res.apertures[0]
    np.testing.assert_array_equal(out.interval_mu, ap.interval_mu)
    np.testing.assert_array_equal(out.jaws, ap.jaws)
    # the optimised tips keep the machine at the held MU (check_arc_limits raises otherwise)
    report = check_arc_limits(out.control_point_beam(MACHINE, (0.0, 0.0, 0.0)), MACHINE)
    assert report.max_leaf_speed_mm_s <= MACHINE.max_leaf_speed_mm_s / 1.0 + 1e-6
    assert np.all(out.x2 - out.x1 >= MACHINE.min_leaf_gap_mm - 1e-9)
    assert np.all(out.travel_mm() <= travel_limits_mm(ap, MACHINE, ap.interval_mu) + 1e-9)
    # the model objective it reports is the exact one of the new tips within 5 %
    F_new = interval_fluence_matrix([out], beams, MACHINE, offs, 128)
    w_new = F_new @ out.interval_mu
    exact = sum(t.objective.weight * t.objective.evaluate(w_new[t.voxels])[0] for t in terms)
    assert exact == pytest.approx(res.final_objective, rel=0.05)
