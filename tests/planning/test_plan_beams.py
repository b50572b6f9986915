"""Beam arrangements and fluence maps of the optimised plans, on the built-in phantom."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.errors import PlanningError
from lattice_plan.planning.beams import (
    arrangement_for,
    coplanar_arrangement,
    fluence_beams,
    isocentre_of,
    nearest_side_gantry_deg,
    sliding_window_mu,
)


def test_equally_spaced_and_arc_arrangements():
    assert coplanar_arrangement(9).gantry_deg == tuple(40.0 * n for n in range(9))
    arc = coplanar_arrangement(5, arc_deg=120.0, centre_deg=180.0)
    assert arc.gantry_deg == (120.0, 150.0, 180.0, 210.0, 240.0)
    wrap = coplanar_arrangement(3, arc_deg=60.0, centre_deg=0.0)
    assert wrap.gantry_deg == (330.0, 0.0, 30.0)
    with pytest.raises(PlanningError, match="positive integer"):
        coplanar_arrangement(0)
    with pytest.raises(PlanningError, match="two beams"):
        coplanar_arrangement(1, arc_deg=90.0)
    with pytest.raises(PlanningError, match="arc_deg"):
        coplanar_arrangement(5, arc_deg=-10.0)


def test_arc_centres_on_the_targets_side(phantom):
    gtv = phantom.structures["GTV"]
    body = phantom.structures.external()
    # The phantom's mass lies left (+x) and posterior (+y) of the body centre: for head-first
    # supine the source is at (sin g, -cos g) in (x, y), so the nearest side is gantry 90-180.
    centre = nearest_side_gantry_deg(gtv, body)
    c = gtv.centroid_lps_mm() - body.centroid_lps_mm()
    assert centre == pytest.approx(np.degrees(np.arctan2(c[0], -c[1])) % 360, abs=1.0)
    assert 90.0 < centre < 180.0
    arr = arrangement_for(gtv, body, 7, arc_deg=180.0)
    assert arr.gantry_deg[3] == centre and "arc" in arr.description


def test_fluence_maps_cover_the_target_projection(phantom):
    gtv = phantom.structures["GTV"]
    iso = isocentre_of(gtv)
    arr = coplanar_arrangement(4)
    fb = fluence_beams(gtv, iso, arr, beamlet_mm=5.0, margin_mm=5.0)
    assert [b.name for b in fb.beams] == ["B1", "B2", "B3", "B4"]
    for beam, act in zip(fb.beams, fb.active, strict=True):
        f = beam.fluence
        # Beamlet edges on multiples of 5 mm from the axis, and the jaws match the map.
        assert (f.x_centers_mm()[0] - 2.5) % 5.0 == pytest.approx(0.0, abs=1e-9)
        assert beam.jaws.size_mm == (5.0 * f.shape[1], 5.0 * f.shape[0])
        # The target (about 60-70 mm across) plus 5 mm each side: 70-110 mm of open beamlets.
        widths = act.any(axis=0).sum() * 5.0, act.any(axis=1).sum() * 5.0
        assert all(65.0 <= w <= 115.0 for w in widths), widths
        np.testing.assert_array_equal(f.values > 0, act)
        assert act.sum() < act.size  # the corners of the box are outside the projection
    assert fb.layout.n_beamlets == sum(a.size for a in fb.active)
    fine = fluence_beams(gtv, iso, arr, beamlet_mm=2.5)
    assert fine.active_vector.sum() == pytest.approx(4 * fb.active_vector.sum(), rel=0.15)
    with pytest.raises(PlanningError, match="beamlet_mm"):
        fluence_beams(gtv, iso, arr, beamlet_mm=3.0)


def test_weights_become_mu_and_fluence(phantom):
    gtv = phantom.structures["GTV"]
    fb = fluence_beams(gtv, isocentre_of(gtv), coplanar_arrangement(2))
    n0 = fb.active[0].size
    x = np.zeros(fb.layout.n_beamlets)
    x[:n0] = np.linspace(0.0, 40.0, n0)
    beams = fb.with_weights(x)
    assert len(beams) == 1  # the second beam got no weight and is dropped
    assert beams[0].mu == pytest.approx(40.0)
    np.testing.assert_allclose(beams[0].fluence.values.ravel() * beams[0].mu, x[:n0])
    with pytest.raises(PlanningError, match="no dose"):
        fb.with_weights(np.zeros(fb.layout.n_beamlets))


def test_sliding_window_mu_sums_the_rising_steps(phantom):
    gtv = phantom.structures["GTV"]
    fb = fluence_beams(gtv, isocentre_of(gtv), coplanar_arrangement(1))
    beam = fb.beams[0]
    ny, nx = beam.fluence.shape
    v = np.zeros((ny, nx))
    # Row 0: 0.5, 1, 0.2, 0.8 -> rises 0.5 + 0.5 + 0.6 = 1.6; row 1: 1 -> 1. Hand-computed.
    v[0, :4] = [0.5, 1.0, 0.2, 0.8]
    v[1, 2] = 1.0
    b = beam.with_fluence(beam.fluence.with_values(v)).with_mu(200.0)
    assert sliding_window_mu(b) == pytest.approx(1.6 * 200.0)
    # An open map needs just its MU: one rise from 0 to 1 per row.
    assert sliding_window_mu(beam.with_mu(150.0)) == pytest.approx(150.0)
