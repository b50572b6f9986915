"""Dose-check summary (gamma global/local, differences, high-dose median ratio) on constructed doses."""

import numpy as np
import pytest

from lattice_plan.analysis.dose_agreement import dose_agreement, parse_gamma_criterion
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry import Grid, Volume

GRID = Grid.from_extent((-30, -30, -30), (30, 30, 30), 2.0)


def _dose(scale=1.0, grid=GRID, edge_mm=3.0):
    """A 10 Gy cube of side 30 mm with sigmoid edges of ``edge_mm``, times ``scale``."""
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    prof = 1.0
    for c in (x, y, z):
        prof = prof / (1 + np.exp((np.abs(c) - 15.0) / edge_mm))
    return Volume(10.0 * scale * prof, grid, "Gy")


def test_parse_gamma_criterion():
    assert parse_gamma_criterion("3%/2mm") == (3.0, 2.0)
    assert parse_gamma_criterion(" 2.5 % / 1 mm") == (2.5, 1.0)
    for bad in ("3/2", "3%/2", "0%/2mm", "3mm/2%"):
        with pytest.raises(AnalysisError, match=r"write it as e\.g\. 3%/2mm"):
            parse_gamma_criterion(bad)


def test_uniform_scale_shows_in_ratio_and_differences():
    ref = _dose()
    a = dose_agreement(ref, _dose(1.02), dose_percent=3.0, dta_mm=2.0)
    # every point differs by 2 % of its own dose: the median ratio is 1.02 exactly, the mean
    # difference in % of the maximum lies between 0.2 (10 % points) and 2 (the plateau)
    assert a.median_ratio_high_dose == pytest.approx(1.02, rel=1e-9)
    assert 0.2 < a.mean_difference_percent < 2.0
    assert 1.8 < a.difference_p98_percent <= 2.0 + 1e-9
    assert a.gamma_global_pass_percent == 100.0  # 2 % of the local dose <= 3 % of the max
    assert a.gamma_local_pass_percent == 100.0
    assert a.evaluated_max_gy == pytest.approx(1.02 * a.reference_max_gy)
    # 4 %: globally only the points above 75 % of the maximum differ by more than 3 % (some are
    # rescued by the gradient within 2 mm); locally every point differs by 4 % > 3 % of its dose
    b = dose_agreement(ref, _dose(1.04), dose_percent=3.0, dta_mm=2.0)
    high = np.count_nonzero(ref.array >= 0.75 * ref.array.max())
    assert 100.0 - b.gamma_global_pass_percent <= 100.0 * high / b.n_evaluated
    assert b.gamma_global_pass_percent < 100.0
    assert (
        b.gamma_local_pass_percent <= b.gamma_global_pass_percent
    )  # 3 % of the local dose is stricter
    assert "median ratio" in b.summary() and "global" in b.summary()


def test_grids_may_differ():
    # the same smooth dose sampled on a 3 mm grid: trilinear interpolation at the 2 mm reference
    # points errs by at most h^2/8 |f''| (under 1 % of the dose for 6 mm edges)
    fine = _dose(edge_mm=6.0)
    coarse_grid = Grid.from_extent((-30, -30, -30), (30, 30, 30), 3.0)
    coarse = _dose(grid=coarse_grid, edge_mm=6.0)
    a = dose_agreement(fine, coarse, dose_percent=2.0, dta_mm=2.0)
    assert a.gamma_global_pass_percent > 99.0
    assert a.median_ratio_high_dose == pytest.approx(1.0, abs=0.01)
