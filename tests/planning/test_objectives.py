"""Objectives: analytic values, gradients by finite differences, validation, conflicts."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.errors import PlanningError
from lattice_plan.geometry.grid import Grid
from lattice_plan.planning.objectives import (
    GEUD,
    DVHPoint,
    EdgeDose,
    MaxDose,
    MeanDose,
    MinDose,
    PeakDose,
    RingFallOff,
    UniformDose,
    ValleyDose,
    VoxelContext,
    check_objectives,
)

ALL = [
    MinDose("A", 10.0),
    MaxDose("A", 12.0, weight=2.0),
    UniformDose("A", 5.0),
    PeakDose("A", 15.0),
    ValleyDose("A", 4.0),
    EdgeDose("A", 3.0),
    MeanDose("A", 8.0),
    MeanDose("A", 12.0, "min"),
    MeanDose("A", 8.0, "target"),
    DVHPoint("A", 10.0, 20.0),
    DVHPoint("A", 10.0, 80.0, "min"),
    GEUD("A", 12.0, 8.0),
    GEUD("A", 12.0, -10.0, "min"),
]


@pytest.mark.parametrize("obj", ALL, ids=lambda o: o.describe())
def test_gradient_matches_central_differences(obj):
    rng = np.random.default_rng(1)
    d = rng.uniform(0.5, 20.0, 40)
    value, grad = obj.evaluate(d)
    assert value > 0  # every objective above is violated by doses spread over 0.5-20 Gy
    h = 1e-6
    numeric = np.array(
        [
            (obj.evaluate(d + h * e)[0] - obj.evaluate(d - h * e)[0]) / (2 * h)
            for e in np.eye(d.size)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8 * np.abs(grad).max())


def test_voxel_quadratics_analytic_values():
    d = np.array([8.0, 10.0, 14.0, 16.0])
    # Hand-computed: shortfalls below 10 Gy are (2, 0, 0, 0) -> 4/4; excess over 14 Gy (0, 0, 0, 2) -> 4/4.
    assert MinDose("T", 10.0).evaluate(d)[0] == pytest.approx(1.0)
    assert MaxDose("T", 14.0).evaluate(d)[0] == pytest.approx(1.0)
    # Uniform at 12 Gy: (16 + 4 + 4 + 16) / 4 = 10.
    assert UniformDose("T", 12.0).evaluate(d)[0] == pytest.approx(10.0)
    # Met objectives cost nothing and push nowhere.
    v, g = MaxDose("T", 20.0).evaluate(d)
    assert v == 0.0 and not g.any()


def test_mean_dose_and_geud_analytic():
    d = np.array([2.0, 4.0, 6.0])
    # Mean 4 Gy against a 3 Gy maximum: (4 - 3)^2 = 1.
    assert MeanDose("O", 3.0).evaluate(d)[0] == pytest.approx(1.0)
    assert MeanDose("O", 5.0).evaluate(d)[0] == 0.0
    # gEUD with a = 1 is the mean; with a = 2 it is the RMS sqrt((4+16+36)/3).
    assert GEUD("O", 0.0, 1.0).geud_gy(d) == pytest.approx(4.0)
    assert GEUD("O", 0.0, 2.0).geud_gy(d) == pytest.approx(np.sqrt(56.0 / 3.0))


def test_dvh_point_approaches_the_step_function():
    # 30 of 100 voxels at 25 Gy, the rest at 5 Gy: V20Gy = 30 %. With a 0.2 Gy wide logistic the
    # smooth fraction is 0.30 to 1e-6, so "V20Gy <= 10 %" costs 20^2 * (0.30 - 0.10)^2 = 16.
    d = np.r_[np.full(30, 25.0), np.full(70, 5.0)]
    obj = DVHPoint("O", 20.0, 10.0, smoothing_gy=0.2)
    assert obj.evaluate(d)[0] == pytest.approx(16.0, rel=1e-4)
    assert DVHPoint("O", 20.0, 35.0, smoothing_gy=0.2).evaluate(d)[0] == pytest.approx(
        0.0, abs=1e-9
    )


def test_ring_falloff_levels_follow_distance():
    grid = Grid((1, 1, 12), (2.0, 2.0, 2.0))
    target = np.zeros(grid.shape, dtype=bool)
    target[0, 0, :2] = True
    ring = np.zeros(grid.shape, dtype=bool)
    ring[0, 0, 2:] = True
    ctx = VoxelContext(
        grid,
        {"GTV": target, "Ring": ring},
        {"GTV": np.flatnonzero(target), "Ring": np.flatnonzero(ring)},
    )
    obj = RingFallOff("Ring", "GTV", high_gy=10.0, low_gy=2.0, distance_mm=8.0)
    prepared = obj.prepare(ctx)
    # Ring voxels sit 2, 4, ..., 20 mm from the last target voxel: 10 - 8 * min(1, r / 8).
    r = 2.0 * np.arange(1, 11)
    expected = 10.0 - 8.0 * np.minimum(1.0, r / 8.0)
    np.testing.assert_allclose(obj.levels_gy(r), expected)
    v, g = prepared.evaluate(expected)
    assert v == 0.0 and not g.any()
    v, _ = prepared.evaluate(expected + 1.0)
    assert v == pytest.approx(1.0)
    with pytest.raises(PlanningError, match="prepare"):
        obj.evaluate(expected)


def test_conflicting_objectives_are_refused():
    with pytest.raises(
        PlanningError, match=r"conflicting objectives on 'GTV'.*at least 20.*at most 15"
    ):
        check_objectives([MinDose("GTV", 20.0), MaxDose("gtv", 15.0)])
    with pytest.raises(PlanningError, match="conflicting"):
        check_objectives([PeakDose("V", 15.0), MeanDose("V", 10.0)])
    # Different structures, or min below max, are fine.
    check_objectives([MinDose("GTV", 20.0), MaxDose("Cord", 10.0), MaxDose("GTV", 25.0)])
    with pytest.raises(PlanningError, match="at least one"):
        check_objectives([])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MinDose("A", -1.0), "non-negative"),
        (lambda: MaxDose("A", 5.0, weight=0.0), "weight"),
        (lambda: MaxDose("", 5.0), "structure"),
        (lambda: MeanDose("A", 5.0, "above"), "sense"),
        (lambda: DVHPoint("A", 20.0, 150.0), "volume_pct"),
        (lambda: GEUD("A", 5.0, 0.0), "volume parameter"),
        (lambda: RingFallOff("R", "GTV", 2.0, 5.0, 10.0), "low_gy"),
    ],
)
def test_invalid_objectives(make, match):
    with pytest.raises(PlanningError, match=match):
        make()


def test_empty_structure_is_a_clear_error():
    with pytest.raises(PlanningError, match="empty on the dose grid"):
        MaxDose("Cord", 10.0).evaluate(np.array([]))
