"""Arc specification, arc sequencing pieces and the machine-limit check of VMAT arcs (no dose)."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.dose.beam import Beam, FluenceMap, Jaws
from lattice_plan.dose.delivery import pair_open_mu
from lattice_plan.dose.machine import default_machine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.arc_sequencing import (
    ArcApertures,
    check_arc_limits,
    interval_mu_lower_bounds,
    sector_cuts,
    sequence_arc,
)
from lattice_plan.planning.arcs import Arc, check_arc_fits, check_arcs, default_arcs

MACHINE = default_machine("varian-120")


def test_default_arcs_are_two_full_coplanar_arcs_with_crossed_collimators():
    a, b = default_arcs()
    assert (a.direction, b.direction) == ("CW", "CC")
    assert (a.collimator_deg, b.collimator_deg) == (30.0, 330.0)
    assert a.couch_deg == b.couch_deg == 0.0
    # 181 -> 179 CW is 358 deg; 3 deg spacing: ceil(358 / 3) = 120 intervals
    assert a.length_deg == pytest.approx(358.0) and b.length_deg == pytest.approx(358.0)
    assert a.n_control_points == 121
    path = a.path_deg()
    assert path[0] == 181.0 and path[-1] == pytest.approx(181.0 + 358.0)
    assert np.diff(path).max() <= 3.0 + 1e-9
    assert np.all(np.diff(b.path_deg()) < 0)  # CC: the gantry angle decreases
    assert b.gantry_deg()[-1] == pytest.approx(181.0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"start_deg": 90.0, "stop_deg": 90.0}, ["'A'", "zero-length", "90"]),
        ({"start_deg": 0.0, "stop_deg": 360.0}, ["'A'", "overlap"]),
        ({"cp_spacing_deg": 0.2}, ["'A'", "0.2", "0.5-10"]),
        ({"cp_spacing_deg": 12.0}, ["'A'", "12", "0.5-10"]),
        ({"direction": "UP"}, ["'A'", "CW"]),
        ({"start_deg": 10.0, "stop_deg": 11.0, "cp_spacing_deg": 3.0}, ["'A'", "shorter"]),
    ],
)
def test_bad_arcs_are_refused_naming_the_arc_and_the_limit(kwargs, words):
    base = {"name": "A", "start_deg": 181.0, "stop_deg": 179.0}
    with pytest.raises(PlanningError) as err:
        Arc(**{**base, **kwargs})
    for w in words:
        assert w in str(err.value)


def test_repeated_arc_names_and_no_arcs_are_refused():
    with pytest.raises(PlanningError, match="unique"):
        check_arcs([Arc("A", 0, 90), Arc("A", 90, 180)])
    with pytest.raises(PlanningError, match="at least one arc"):
        check_arcs([])


def test_a_field_the_machine_cannot_shape_is_refused():
    arc = Arc("Big", 181, 179)
    check_arc_fits(arc, MACHINE, [(-50, 50, -60, 60)])
    with pytest.raises(PlanningError, match=r"'Big'.*jaw limit \+/-200"):
        check_arc_fits(arc, MACHINE, [(-250, 50, -60, 60)])
    mlc80 = default_machine("mlc-80")  # 80 x 5 mm leaves: the bank spans +/-200 mm too
    edges = mlc80.mlc.leaf_edges_mm
    short = mlc80.with_leaf_edges(edges[(edges >= -100) & (edges <= 100)])
    with pytest.raises(PlanningError, match=r"'Big'.*MLC covers only -100..100"):
        check_arc_fits(arc, short, [(-50, 50, -120, 60)])


def test_sector_cuts_cover_every_control_point_once_and_interleave():
    for phase in (0.0, 0.5):
        s = sector_cuts(121, 8, phase)
        idx = np.concatenate([np.arange(a, b + 1) for a, b in s])
        assert np.array_equal(idx, np.arange(121))
        assert all(b - a >= 1 for a, b in s)
    assert len(sector_cuts(121, 8, 0.0)) == 8
    # half a sector later: 8 - 1 full sectors and two half sectors at the ends
    assert sector_cuts(121, 8, 0.5)[0] == (0, 7)
    # a short arc: as many sectors of at least two control points as fit
    assert sector_cuts(5, 8) == [(0, 1), (2, 4)]


def _peaked_beam(collimator_deg: float) -> Beam:
    """A 40 x 40 mm map with two 10 mm peaks per row (a lattice-like profile), 200 MU."""
    v = np.full((8, 8), 0.2)
    v[:, 1:3] = 1.0
    v[:, 5:7] = 1.0
    jaws = Jaws(-20, 20, -20, 20)
    return Beam(
        "S",
        0.0,
        (0.0, 0.0, 0.0),
        jaws,
        mu=200.0,
        collimator_deg=collimator_deg,
        fluence=FluenceMap.covering(jaws, 5.0, v),
    )


def test_sequenced_arc_respects_every_limit_and_delivers_each_sector_map():
    arc = Arc("A", 0.0, 60.0, "CW", 30.0, 0.0, 2.0)
    sectors = sector_cuts(arc.n_control_points, 2)
    ap = sequence_arc(arc, sectors, [_peaked_beam(30.0), _peaked_beam(30.0)], MACHINE)
    cp = ap.control_point_beam(MACHINE, (0.0, 0.0, 0.0))
    assert cp.beam_type == "DYNAMIC" and cp.technique == "arc"
    assert cp.control_points[0].collimator_deg == 30.0
    report = check_arc_limits(cp, MACHINE)
    assert report.max_leaf_speed_mm_s <= MACHINE.max_leaf_speed_mm_s * (1 + 1e-6)
    assert report.max_dose_rate_mu_min <= MACHINE.max_dose_rate_mu_min * (1 + 1e-6)
    assert report.max_gantry_speed_deg_s <= MACHINE.max_gantry_speed_deg_s * (1 + 1e-6)
    # Each sector's open meterset along a central leaf pair: the two peaks stand out of the
    # 0.2 background (sampling the sweep at 16 control points smooths the staircase but keeps
    # the peaks above three times the background; exact sliding window: 5 times).
    x1, x2 = cp.banks()
    assert np.all(x2 - x1 >= -1e-9)
    xs = np.array([-10.0, 0.0, 10.0])  # peak, background, peak
    open_mu = pair_open_mu(cp, MACHINE, xs)[MACHINE.mlc.n_pairs // 2]
    assert open_mu[0] > 3 * open_mu[1] and open_mu[2] > 3 * open_mu[1]


def test_leaf_travel_bounds_and_a_violation_is_named():
    arc = Arc("A", 0.0, 10.0, "CW", 0.0, 0.0, 5.0)  # three control points, 5 deg apart
    n = MACHINE.mlc.n_pairs
    x1 = np.zeros((3, n))
    x2 = np.zeros((3, n))
    x2[1] = 50.0  # the leaves open 50 mm in one 5 deg interval
    jaws = np.tile([-60.0, 60.0, -20.0, 20.0], (3, 1))
    ap = ArcApertures(arc, x1, x2, jaws, np.array([1.0, 1.0]), np.zeros(2, dtype=np.int64))
    # 5 deg at 6 deg/s = 0.833 s; 50 mm at 25 mm/s = 2 s: 2 s x 10 MU/s x 1.25 = 25 MU
    lb = interval_mu_lower_bounds(ap, MACHINE)
    assert lb == pytest.approx([25.0, 25.0])
    with pytest.raises(PlanningError, match=r"'A', control points 0->1: leaf/jaw speed 60 mm/s"):
        check_arc_limits(ap.control_point_beam(MACHINE, (0, 0, 0)), MACHINE)
    ok = ap.with_interval_mu(lb)
    report = check_arc_limits(ok.control_point_beam(MACHINE, (0, 0, 0)), MACHINE)
    # 25 MU at 10 MU/s = 2.5 s per interval: 20 mm/s
    assert report.max_leaf_speed_mm_s == pytest.approx(20.0)
    assert report.delivery_time_s == pytest.approx(5.0)
    assert report.max_mu_per_deg == pytest.approx(5.0)
