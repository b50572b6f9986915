"""The gamma search kernel against a brute-force NumPy search over the same offset lattice.

The reference builds its own offsets from the definition (Low et al., Med Phys 25 (1998) 656:
gamma = min over evaluated points of sqrt(dose term^2 + r^2/DTA^2), searched here on a cubic
lattice of pitch DTA/resolution out to max_gamma * DTA), not with the module's helper.
"""

import numpy as np
import pytest
from scipy import ndimage

from lattice_plan.analysis.gamma import gamma_index
from lattice_plan.geometry import Grid, Volume
from lattice_plan.kernels.gamma import corner_range_kji, trilinear_kji


def lattice_offsets_mm(dta_mm, cap, res):
    """Every point of the cubic lattice of pitch dta/res with r < cap * dta, and its r^2/DTA^2."""
    pitch = dta_mm / res
    offsets = [
        (a * pitch, b * pitch, c * pitch)
        for a in range(-res * int(cap) - res, res * int(cap) + res + 1)
        for b in range(-res * int(cap) - res, res * int(cap) + res + 1)
        for c in range(-res * int(cap) - res, res * int(cap) + res + 1)
        if (a * a + b * b + c * c) * pitch * pitch < (cap * dta_mm) ** 2
    ]
    off = np.array(offsets)
    return off, (off**2).sum(axis=1) / dta_mm**2


def brute_force_gamma(reference, evaluated, dose_percent, dta_mm, local, threshold, cap, res):
    """Obvious O(points x offsets) search: every lattice offset, no pruning."""
    ref = reference.array.astype(float)
    norm = ref.max()
    select = ref >= threshold / 100 * norm
    if local:
        select &= ref > 0
    off_mm, d2 = lattice_offsets_mm(dta_mm, cap, res)
    k, j, i = np.nonzero(select)
    pts = reference.grid.points_lps_mm(np.stack([i, j, k], axis=1).astype(float))
    out = np.full(ref.shape, np.nan)
    shape = np.array(evaluated.grid.shape[::-1], dtype=float)  # (ni, nj, nk)
    for n, (p, dref) in enumerate(zip(pts, ref[select], strict=True)):
        ijk = evaluated.grid.continuous_ijk(p[None, :] + off_mm)
        inside = np.all((ijk >= 0) & (ijk <= shape - 1), axis=1)
        dev = ndimage.map_coordinates(
            evaluated.array.astype(float), ijk[inside][:, ::-1].T, order=1
        )
        dd = dose_percent / 100 * (dref if local else norm)
        g2 = ((dev - dref) / dd) ** 2 + d2[inside]
        out[k[n], j[n], i[n]] = np.sqrt(min(g2.min(initial=cap * cap), cap * cap))
    return out


def _smooth_random(grid, seed, scale=10.0):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.uniform(0, 1, grid.shape), 1.5)
    a = (a - a.min()) / (a.max() - a.min())
    return Volume(scale * a, grid, "Gy")


@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_equals_brute_force_on_random_grids(local, seed):
    """Random smooth doses on grids with different spacing, origin and size."""
    ref_grid = Grid((9, 10, 11), (2.5, 2.0, 2.0), (-10.0, -9.0, -11.0))
    ev_grid = Grid((12, 13, 12), (2.0, 1.5, 2.5), (-12.3, -10.1, -11.7))
    reference = _smooth_random(ref_grid, seed)
    evaluated = _smooth_random(ev_grid, seed + 10, 11.0)
    args = dict(dose_percent=3.0, dta_mm=2.0, local=local, threshold_percent=20.0)
    res = gamma_index(reference, evaluated, max_gamma=2.0, search_resolution=6, **args)
    ref = brute_force_gamma(reference, evaluated, 3.0, 2.0, local, threshold=20.0, cap=2.0, res=6)
    assert np.array_equal(np.isnan(res.gamma.array), np.isnan(ref))
    assert np.allclose(res.gamma.array, ref, equal_nan=True, atol=1e-9)
    assert np.isfinite(ref).sum() > 100  # the comparison covers many points
    assert (ref < 2.0).any() and (ref[np.isfinite(ref)] > 1.0).any()


def test_trilinear_and_corner_range_match_numpy():
    rng = np.random.default_rng(5)
    vol = rng.normal(size=(4, 5, 6))
    for _ in range(50):
        kji = rng.uniform(0, 1, 3) * (np.array(vol.shape) - 1)
        expected = ndimage.map_coordinates(vol, kji[:, None], order=1)[0]
        assert trilinear_kji(vol, *kji) == pytest.approx(expected, abs=1e-12)
    lo, hi = np.empty((3, 4, 5)), np.empty((3, 4, 5))
    corner_range_kji(vol, lo, hi)
    corners = np.stack(
        [vol[a : a + 3, b : b + 4, c : c + 5] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    )
    assert np.array_equal(lo, corners.min(axis=0))
    assert np.array_equal(hi, corners.max(axis=0))
