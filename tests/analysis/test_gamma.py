"""Gamma index on constructed dose pairs with known answers."""

import numpy as np
import pytest

from lattice_plan.analysis.gamma import gamma_index
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry import Grid, Volume


def _field(grid, shift_x_mm=0.0, scale=1.0, width_mm=40.0, penumbra_mm=2.0):
    """A 10 Gy plateau (cube of side ``width_mm``) with sigmoid edges of ``penumbra_mm``."""
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    prof = 1.0
    for c in (x - shift_x_mm, y, z):
        prof = prof / (1 + np.exp((np.abs(c) - width_mm / 2) / penumbra_mm))
    return Volume(10.0 * scale * prof, grid, "Gy")


GRID = Grid.from_extent((-36, -36, -36), (36, 36, 36), 2.0)


def test_identical_doses_pass_everywhere():
    d = _field(GRID)
    res = gamma_index(d, d)
    assert res.pass_rate_percent == 100.0
    assert np.nanmax(res.gamma.array) == 0.0
    # Threshold 10 % of the maximum selects the points above 1 Gy (analytic field).
    assert res.n_evaluated == int(np.count_nonzero(d.array >= 1.0))


def test_uniform_three_percent_scale():
    """A uniform +3 % scale: every dose difference is <= 3 % of the maximum (global 3 %/3 mm
    passes); in the 10 Gy plateau the difference is 3 % > 2 %, and the plateau is flat far
    beyond 2 mm, so 2 %/2 mm fails there (gamma = 1.5 at the centre, analytic)."""
    ref = _field(GRID)
    ev = _field(GRID, scale=1.03)
    assert gamma_index(ref, ev, 3.0, 3.0).pass_rate_percent == 100.0
    res = gamma_index(ref, ev, 2.0, 2.0)
    high = ref.array >= 9.5
    assert np.all(res.gamma.array[high & (np.abs(ref.array - 10.0) < 1e-3)] > 1.0)
    centre = tuple(n // 2 for n in GRID.shape)
    assert res.gamma.array[centre] == pytest.approx(1.5, abs=0.01)
    assert res.pass_rate_percent < 100.0


def test_two_mm_shift_of_steep_gradient():
    """A 2 mm shift of a field with a steep (2 mm sigmoid, up to 1.25 Gy/mm) edge on a 1 mm grid.

    With a tight 0.5 % dose criterion the distance decides: every point finds its own dose
    2 mm away (gamma <= 1 at DTA 2 mm, up to lattice round-off), while at DTA 1 mm the edge
    points fail (gamma = 2 mm / 1 mm = 2 at the steepest point).
    """
    g = Grid.from_extent((-30, -16, -16), (30, 16, 16), 1.0)
    ref = _field(g, width_mm=30.0)
    ev = _field(g, shift_x_mm=2.0, width_mm=30.0)
    # search_resolution 5: pitches of 0.4 and 0.2 mm still hold the 2 mm offset exactly.
    at_2mm = gamma_index(ref, ev, 0.5, 2.0, search_resolution=5)
    assert np.nanmax(at_2mm.gamma.array) <= 1.0 + 1e-9
    assert at_2mm.pass_rate_percent == 100.0
    at_1mm = gamma_index(ref, ev, 0.5, 1.0, search_resolution=5)
    assert at_1mm.pass_rate_percent < 90.0
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    edge = (np.abs(np.abs(x) - 15) <= 1) & (np.abs(y) < 5) & (np.abs(z) < 5)
    assert np.all(at_1mm.gamma.array[edge] > 1.0)


def test_grids_with_different_spacing():
    """Reference on 2.5 mm, evaluated on an offset 1 mm grid, same analytic dose: passes 2 %/2 mm
    (only interpolation differs), and fails where a 5 % scale is applied."""
    ref_grid = Grid.from_extent((-35, -35, -35), (35, 35, 35), 2.5)
    ev_grid = Grid.from_extent((-40.3, -40.6, -40.2), (40, 40, 40), 1.0)
    ref = _field(ref_grid, penumbra_mm=4.0)
    res = gamma_index(ref, _field(ev_grid, penumbra_mm=4.0), 2.0, 2.0)
    assert res.pass_rate_percent == 100.0
    assert np.nanmax(res.gamma.array) < 0.3
    worse = gamma_index(ref, _field(ev_grid, penumbra_mm=4.0, scale=1.05), 2.0, 2.0)
    assert np.all(worse.gamma.array[ref.array >= 9.5] > 1.0)
    assert worse.pass_rate_percent < res.pass_rate_percent


def test_local_gamma_is_stricter_at_low_dose():
    """A flat 2 Gy bath around an 8 Gy boost, evaluated with a constant +0.2 Gy offset.

    Global 3 % of 10 Gy = 0.3 Gy: every point passes (gamma 0.67 in flat regions). Local
    3 % of 2 Gy = 0.06 Gy: in the flat bath, far from the boost, gamma = 0.2 / 0.06 > 2 (cap).
    """
    ref = Volume(2.0 + 0.8 * _field(GRID, width_mm=20.0).array, GRID, "Gy")
    ev = Volume(ref.array + 0.2, GRID, "Gy")
    assert gamma_index(ref, ev, 3.0, 3.0).pass_rate_percent == 100.0
    local = gamma_index(ref, ev, 3.0, 3.0, local=True, search_resolution=5)
    z, y, x = np.meshgrid(*GRID.axis_coords_lps_mm(), indexing="ij")
    bath = np.maximum(np.maximum(np.abs(x), np.abs(y)), np.abs(z)) > 25.0
    assert np.all(local.gamma.array[bath] == pytest.approx(2.0))
    assert local.pass_rate_percent < 50.0


def test_bad_inputs():
    d = _field(GRID)
    with pytest.raises(AnalysisError, match="Volume in Gy"):
        gamma_index(Volume(d.array, GRID, "HU"), d)
    with pytest.raises(AnalysisError, match="threshold_percent"):
        gamma_index(d, d, threshold_percent=100.0)
    with pytest.raises(AnalysisError, match="dta_mm"):
        gamma_index(d, d, dta_mm=0.0)
    zero = Volume(np.zeros(GRID.shape), GRID, "Gy")
    with pytest.raises(AnalysisError, match="all zero"):
        gamma_index(zero, d)
