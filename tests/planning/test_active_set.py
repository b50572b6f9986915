"""The optimiser's active set and its dose rule on explicit dose-influence matrices.

References: the exact F and gradient on every voxel (FluenceObjective on the full
operator); the fully converged optimum of the same problem on every voxel
(L-BFGS-B's tight tests, no active set).
"""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.planning.active_set import ActiveProblem, select_active
from lattice_plan.planning.objectives import MaxDose, MeanDose, UniformDose
from lattice_plan.planning.optimizer import (
    FluenceLayout,
    FluenceObjective,
    MatrixOperator,
    ObjectiveTerm,
    optimize_fluence,
)
from lattice_plan.planning.stopping import DoseSettled

LAYOUT = FluenceLayout(((4, 5), (3, 4), (2, 6)))  # 44 beamlets


def _problem():
    """120 target voxels, 300 OAR voxels whose influence falls off with their index (far voxels
    get little dose), a normal-tissue ceiling on all of them and an OAR mean limit."""
    rng = np.random.default_rng(11)
    n = LAYOUT.n_beamlets
    near = rng.uniform(0.0, 1.0, (120, n)) * (rng.uniform(size=(120, n)) < 0.4)
    fall = np.exp(-np.arange(300) / 40.0)[:, None]
    oar = fall * rng.uniform(0.0, 1.0, (300, n)) * (rng.uniform(size=(300, n)) < 0.4)
    terms = [
        ObjectiveTerm(UniformDose("PTV", 10.0, weight=10.0), np.arange(120)),
        ObjectiveTerm(MaxDose("OAR", 4.0, weight=5.0), np.arange(120, 420)),
        ObjectiveTerm(MaxDose("Body", 9.0, weight=1.0), np.arange(420)),
        ObjectiveTerm(MeanDose("OAR", 3.0, weight=1.0), np.arange(120, 420)),
    ]
    return MatrixOperator(np.vstack([near, oar])), terms


def test_f_and_gradient_on_the_active_set_equal_the_exact_ones():
    op, terms = _problem()
    full = FluenceObjective(op, terms, LAYOUT, 10.0, 0.02, x_ref=1.0)
    x = np.full(LAYOUT.n_beamlets, 1.2)
    dose = op.forward(x)
    problem = ActiveProblem(full, op.rows, 1.0, dose)
    # The set is a real subset: far OAR voxels (and the body term's) are left out, and the
    # OAR mean term, far under its level, with them.
    assert 120 < problem.active.n_voxels < 300
    assert problem.active.keep[3].size == 0
    f_exact, g_exact = full(x)
    f_active, g_active = problem(x)
    assert (dose[120:] > 4.0).any()  # the OAR ceiling is violated: its term is not zero
    assert f_active == pytest.approx(f_exact, rel=1e-12)
    np.testing.assert_allclose(g_active, g_exact, rtol=1e-10, atol=1e-14 * np.abs(g_exact).max())


def test_the_set_is_renewed_when_a_left_out_voxel_nears_its_ceiling():
    op, terms = _problem()
    full = FluenceObjective(op, terms, LAYOUT, 10.0, 0.0, x_ref=1.0)
    x = np.full(LAYOUT.n_beamlets, 1.2)
    dose = op.forward(x)
    problem = ActiveProblem(full, op.rows, 1.0, dose)
    assert not problem.renew(dose)  # nothing moved
    left_out = np.setdiff1d(np.arange(120, 420), problem.active.rows)[0]
    raised = dose.copy()
    raised[left_out] = 3.6  # within half the 1 Gy margin of the 4 Gy ceiling
    assert problem.renew(raised)
    assert left_out in problem.active.rows
    raised[left_out] = 3.4  # inside the margin but not within half of it: kept, no renewal
    assert not problem.renew(raised)


def test_fast_path_reaches_the_exact_optimum():
    op, terms = _problem()
    kw = {"dose_scale_gy": 10.0, "max_iterations": 1000, "stall_tol": 0.0}
    exact = optimize_fluence(op, terms, LAYOUT, ftol=1e-15, gtol=1e-10, **kw)
    active = optimize_fluence(op, terms, LAYOUT, ftol=1e-15, gtol=1e-10, active_margin=0.1, **kw)
    assert exact.stop_reason in ("converged", "line search failed")
    assert active.final_objective == pytest.approx(exact.final_objective, rel=1e-6)
    np.testing.assert_allclose(op.forward(active.x), op.forward(exact.x), atol=0.01)
    # and the plan builders' settings (dose rule at 0.75 % of 10 Gy) stop close to it
    fast = optimize_fluence(op, terms, LAYOUT, dose_tol=0.0075, active_margin=0.1, **kw)
    assert fast.stop_reason == "settled"
    assert np.abs(op.forward(fast.x) - op.forward(exact.x)).max() < 0.1


def test_dose_rule_does_not_settle_while_a_voxel_still_moves():
    rule = DoseSettled(tol_gy=0.1, window=3)
    rule.reset(np.array([1.0, 2.0]))
    assert not rule.settled(np.array([1.0, 2.05]))
    assert not rule.settled(np.array([1.0, 2.1]))
    # three iterations in, voxel 1 moved 0.15 Gy over the window: not settled
    assert not rule.settled(np.array([1.0, 2.15]))
    # the next window (2.05 -> 2.16) moved 0.11 Gy: still not
    assert not rule.settled(np.array([1.0, 2.16]))
    assert rule.settled(np.array([1.0, 2.18]))  # 2.1 -> 2.18


def test_dose_rule_ignores_voxels_not_evaluated_but_not_the_others():
    rule = DoseSettled(tol_gy=0.1, window=1)
    rule.reset(np.array([1.0, np.nan, 3.0]))
    assert not rule.settled(np.array([1.0, 5.0, 3.5]))  # voxel 2 moved 0.5 Gy
    assert rule.settled(np.array([1.05, np.nan, 3.5]))
    rule.reset(np.array([np.nan, 1.0]))
    assert not rule.settled(np.array([1.0, np.nan]))  # nothing to compare: not settled


def test_select_active_keeps_every_voxel_of_targets_and_means_near_their_level():
    op, terms = _problem()
    dose = op.forward(np.full(LAYOUT.n_beamlets, 1.2))
    active = select_active(terms, dose, margin_gy=1.0)
    np.testing.assert_array_equal(active.keep[0], np.arange(120))
    oar = dose[120:420]
    np.testing.assert_array_equal(active.keep[1], np.flatnonzero(oar > 3.0))
    # with a margin above the OAR mean's distance to its level, the mean term keeps all
    wide = select_active(terms, dose, margin_gy=3.0 - oar.mean() + 0.01)
    assert wide.keep[3].size == 300
