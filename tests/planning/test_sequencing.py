"""Leaf sequencing: sliding window and step-and-shoot integrated back exactly from control points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from lattice_plan.dose.beam import Beam, FluenceMap, Jaws
from lattice_plan.dose.delivery import pair_open_mu
from lattice_plan.dose.machine import default_machine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.sequencing import leaf_rows, sliding_window
from lattice_plan.planning.step_and_shoot import step_and_shoot

MACHINE = default_machine("varian-120")
V_MM_PER_MU = MACHINE.max_leaf_speed_mm_s / MACHINE.max_mu_per_s  # 2.5 mm/MU
GAP_MM = MACHINE.min_leaf_gap_mm + MACHINE.dosimetric_leaf_gap_mm  # effective min gap


def _beam(values, mu=200.0, beamlet=5.0):
    ny, nx = values.shape
    jaws = Jaws.symmetric(nx * beamlet, ny * beamlet)
    return Beam(
        "b", 30.0, (0.0, 0.0, 0.0), jaws, mu=mu, fluence=FluenceMap.covering(jaws, beamlet, values)
    )


def _smooth_map():
    rng = np.random.default_rng(1)
    v = gaussian_filter(rng.uniform(0, 1, (12, 16)), 1.5)
    return v / v.max()


def _sfrt_map():
    """Peaks (4 x 1-beamlet vertices at full weight) on a zero background: the hardest case."""
    v = np.zeros((14, 14))
    for j, i in ((3, 3), (3, 9), (9, 5), (10, 11)):
        v[j, i] = 1.0
        v[j - 1 : j + 2, i - 1 : i + 2] += 0.05
    return v / v.max()


def _compare(beam, cp_beam):
    """Max |delivered - target| open MU at points along every active pair's centre line."""
    rows = leaf_rows(beam, MACHINE)
    e = rows.col_edges_mm
    xs = np.linspace(e[0], e[-1], 2003)[1:-1] + 1e-3  # not on a column edge
    got = pair_open_mu(cp_beam, MACHINE, xs)
    col = np.clip(np.searchsorted(e, xs, side="right") - 1, 0, len(e) - 2)
    want = rows.intensity_mu[:, col]
    return np.abs(got - want)[rows.active].max(), want.max()


@pytest.mark.parametrize("values", [_smooth_map(), _sfrt_map()], ids=["smooth", "sfrt"])
def test_sliding_window_reproduces_the_map_and_respects_the_machine(values):
    beam = _beam(values)
    cp, rep = sliding_window(beam, MACHINE)
    err, top = _compare(beam, cp)
    # exact except where I < G / v (0.84 MU here): the minimum gap delivers that floor
    assert err <= 0.01 * top
    assert err <= GAP_MM / V_MM_PER_MU + 1e-9
    x1, x2 = cp.banks()
    dt = np.diff(cp.weights) * cp.mu / MACHINE.max_mu_per_s
    moving = dt > 0
    speed = np.abs(np.diff(np.concatenate([x1, x2], axis=1), axis=0))[moving] / dt[moving, None]
    assert speed.max() <= MACHINE.max_leaf_speed_mm_s * (1 + 1e-9)
    assert rep.max_leaf_speed_mm_s <= MACHINE.max_leaf_speed_mm_s * (1 + 1e-9)
    active = leaf_rows(beam, MACHINE).active
    assert np.min((x2 - x1)[:, active]) >= MACHINE.min_leaf_gap_mm - 1e-9
    assert rep.delivery_time_s == pytest.approx(cp.mu / MACHINE.max_mu_per_s)
    assert cp.technique == "sliding_window" and cp.gantry_path_deg()[0] == 30.0


def test_sliding_window_keeps_the_minimum_gap_where_the_gap_sets_the_fluence():
    # Low intensities (a few MU, below G / v) make the minimum gap bind; its staircase jumps at
    # column edges - G must line up exactly (an early version evaluated them at (e - G) + G,
    # which rounds below e, and the leaves crossed by 0.1 mm).
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, (4, 8)) * (rng.uniform(0, 1, (4, 8)) < 0.5)
    values[0, 0] = 1.0
    beam = _beam(values, mu=5.0)
    cp, _ = sliding_window(beam, MACHINE)
    x1, x2 = cp.banks()
    active = leaf_rows(beam, MACHINE).active
    assert np.min((x2 - x1)[:, active]) >= MACHINE.min_leaf_gap_mm - 1e-9
    err, _ = _compare(beam, cp)
    assert err <= GAP_MM / V_MM_PER_MU + 1e-9


def test_sliding_window_mu_is_the_analytic_unidirectional_sweep_value():
    # One row on one 5 mm leaf pair: MU = travel / v + sum of rises of I from 0 (Spirou and Chui
    # 1994; Stein et al. 1994), + max(0, G/v - I_last) for the minimum gap at the last column.
    profile = np.array([0.2, 0.6, 0.4, 1.0, 0.3, 0.8, 0.1]) * 100.0
    beam = _beam(profile[None, :] / 100.0, mu=100.0)
    cp, _ = sliding_window(beam, MACHINE)
    rises = np.sum(np.maximum(np.diff(np.concatenate([[0.0], profile])), 0.0))  # 20+40+60+50 = 170
    assert rises == pytest.approx(170.0)
    expected = 35.0 / V_MM_PER_MU + rises + max(0.0, GAP_MM / V_MM_PER_MU - profile[-1])
    assert cp.mu == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("levels", [5, 10, 20])
def test_step_and_shoot_matches_the_quantised_map(levels):
    beam = _beam(_smooth_map())
    cp, rep = step_and_shoot(beam, MACHINE, levels=levels)
    err, top = _compare(beam, cp)
    assert err <= top / levels / 2 + 1e-9  # rounding to the nearest level
    rows = leaf_rows(beam, MACHINE)
    q = np.rint(rows.intensity_mu / (top / levels))
    rises = np.maximum(np.diff(np.concatenate([np.zeros((len(q), 1)), q], axis=1), axis=1), 0)
    # the sweep uses the fewest MU of any decomposition (Bortfeld et al. 1994): max row rises
    assert rep.mu == pytest.approx(rises.sum(axis=1).max() * top / levels)
    assert rep.n_control_points == 2 * rep.n_segments and cp.technique == "step_and_shoot"
    assert rep.delivery_time_s > rep.mu / MACHINE.max_mu_per_s


def test_step_and_shoot_merges_identical_segments_and_refuses_bad_levels():
    _cp, rep = step_and_shoot(_beam(np.ones((4, 4))), MACHINE, levels=10)
    assert rep.n_segments == 1 and rep.mu == pytest.approx(200.0)
    with pytest.raises(PlanningError, match="levels must be an integer"):
        step_and_shoot(_beam(np.ones((4, 4))), MACHINE, levels=0)
    with pytest.raises(
        PlanningError, match=r"below the minimum segment 1\.0 MU; use at most 2 levels"
    ):
        step_and_shoot(_beam(np.ones((4, 4)), mu=2.0), MACHINE, levels=5)


def test_sfrt_step_and_shoot_keeps_the_peaks():
    beam = _beam(_sfrt_map())
    cp, _rep = step_and_shoot(beam, MACHINE, levels=10)
    err, top = _compare(beam, cp)
    assert err <= top / 20 + 1e-9


def test_step_and_shoot_drops_segments_below_the_minimum_area_and_reports_their_mu():
    # Two 5 mm leaf pairs (y -5..5 mm, x -5..5 mm, 2 columns of 5 mm), each with profile [1, 2] x
    # 50 MU at 2 levels of 50 MU. The sweep pairs the k-th rise with the k-th fall: unit 1 opens
    # -5..5 mm (10 x 10 mm = 100 mm2), unit 2 opens 0..5 mm (50 mm2). A minimum area of 75 mm2
    # drops unit 2: its 50 MU are reported, and unit 1 alone is delivered, 50 MU everywhere.
    beam = _beam(np.array([[0.5, 1.0], [0.5, 1.0]]), mu=100.0)
    _, rep = step_and_shoot(beam, MACHINE, levels=2)
    assert rep.n_segments == 2 and rep.dropped_mu == 0.0 and rep.mu == pytest.approx(100.0)
    cp, rep = step_and_shoot(beam, MACHINE, levels=2, min_area_mm2=75.0)
    assert rep.n_segments == 1 and rep.dropped_mu == pytest.approx(50.0)
    assert rep.mu == pytest.approx(50.0)
    err, _ = _compare(_beam(np.full((2, 2), 0.5), mu=100.0), cp)
    assert err == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(PlanningError, match="every segment is below the minimum area 150"):
        step_and_shoot(beam, MACHINE, levels=2, min_area_mm2=150.0)


def test_step_and_shoot_merges_consecutive_identical_segments_only():
    # Two rows: row 0 = [2, 2] levels (two units over the same columns), row 1 = [1, 0]. Unit 1
    # opens row 0 over both columns and row 1 over column 0; unit 2 opens row 0 only: different
    # apertures, kept apart. With row 1 = [2, 2] too, units 1 and 2 are the same aperture and
    # merge into one segment of twice the MU (the fluence is unchanged).
    unequal = _beam(np.array([[1.0, 1.0], [0.5, 0.0]]), mu=100.0)
    _, rep = step_and_shoot(unequal, MACHINE, levels=2)
    assert rep.n_segments == 2 and rep.mu == pytest.approx(100.0)
    equal = _beam(np.array([[1.0, 1.0], [1.0, 1.0]]), mu=100.0)
    cp, rep = step_and_shoot(equal, MACHINE, levels=2)
    assert rep.n_segments == 1 and rep.n_control_points == 2 and rep.mu == pytest.approx(100.0)
    err, _ = _compare(equal, cp)
    assert err == pytest.approx(0.0, abs=1e-9)
