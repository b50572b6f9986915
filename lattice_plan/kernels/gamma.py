"""Gamma-index search kernel (Low et al., Med Phys 25 (1998) 656).

For each reference point the kernel searches a lattice of offsets,
interpolates the evaluated dose trilinearly at each, and keeps the smallest

    gamma^2 = (D_eval - D_ref)^2 / dD^2 + r^2 / DTA^2 .

Branch and bound keeps it fast and exact: offsets are visited by distance and
the walk stops when the distance term alone reaches the best gamma^2; further
out, offsets are grouped in boxes, and a box is skipped when the range of the
evaluated dose over the voxel cells it overlaps cannot beat the best. Offsets that
fall outside the evaluated grid are skipped.
"""

from __future__ import annotations

import numpy as np

from lattice_plan.kernels._jit import jit, jit_parallel, prange
from lattice_plan.kernels.interpolation import trilinear_kji


@jit
def corner_range_kji(volume, out_min, out_max):
    """Min and max of the 8 corners of every voxel cell of ``volume`` (shape n - 1 per axis, >= 1).

    A trilinear interpolant inside a cell lies between its corners' min and max.
    An axis with a single voxel keeps it (the interpolant is constant along it).
    """
    nk, nj, ni = volume.shape
    ck, cj, ci = out_min.shape
    for a in range(ck):
        a1 = min(a + 1, nk - 1)
        for b in range(cj):
            b1 = min(b + 1, nj - 1)
            for c in range(ci):
                c1 = min(c + 1, ni - 1)
                lo = volume[a, b, c]
                hi = lo
                for v in (
                    volume[a, b, c1],
                    volume[a, b1, c],
                    volume[a, b1, c1],
                    volume[a1, b, c],
                    volume[a1, b, c1],
                    volume[a1, b1, c],
                    volume[a1, b1, c1],
                ):
                    lo = min(lo, v)
                    hi = max(hi, v)
                out_min[a, b, c] = lo
                out_max[a, b, c] = hi


@jit
def _gamma2_at(eval_dose, k, j, i, hk, hj, hi, dref, w, r2, best):
    """min(best, gamma^2 at the evaluated point (k, j, i)); best where it is off the grid."""
    if k < 0.0 or k > hk or j < 0.0 or j > hj or i < 0.0 or i > hi:
        return best
    diff = trilinear_kji(eval_dose, k, j, i) - dref
    return min(best, diff * diff * w + r2)


@jit_parallel
def gamma_search(
    eval_dose,
    cell_min,
    cell_max,
    points_kji,
    ref_dose,
    inv_dd2,
    near_kji,
    near_dist2,
    box_kji,
    box_mm,
    box_dist_mm,
    box_radius_mm,
    box_half_kji,
    fine_kji,
    fine_mm,
    inv_dta2,
    max_gamma2,
    out_gamma2,
):
    """Smallest gamma^2 per reference point over a fine offset lattice, capped at ``max_gamma2``.

    Phase 1 visits the nearest fine offsets one by one in order of distance.
    Phase 2 visits the remaining fine offsets in cubic boxes (centres ``box_*``,
    offsets ``fine_*`` relative to a centre) in order of distance; a box is
    skipped when a lower bound on gamma^2 in it, from the range of the
    evaluated dose over the voxel cells it overlaps, cannot beat the best
    value so far. The result equals the minimum over every fine offset with
    r^2 / DTA^2 < ``max_gamma2``.

    Args:
        eval_dose: (nk, nj, ni) float64, evaluated dose; cell_min, cell_max: its
            :func:`corner_range_kji`.
        points_kji: (n, 3) float64, reference points in continuous evaluated-grid indices.
        ref_dose: (n,) reference dose; inv_dd2: (n,) 1 / dose criterion^2 per point.
        near_kji: (mn, 3) fine offsets searched one by one (index units), sorted by distance;
            near_dist2: (mn,) their r^2 / DTA^2, ascending. Box offsets with r^2 / DTA^2 at
            or below near_dist2[-1] are not searched again.
        box_kji: (mb, 3) box centres (index units); box_mm: (mb, 3) in mm; box_dist_mm: (mb,)
            their distances, ascending; box_radius_mm: centre to farthest fine offset;
            box_half_kji: (3,) half extent of a box along k, j, i (index units).
        fine_kji: (mf, 3) fine offsets relative to a box centre (index units); fine_mm: in mm.
        inv_dta2: 1 / DTA^2 (1/mm^2); max_gamma2: the cap on gamma^2.
        out_gamma2: (n,) float64 output.
    """
    nk, nj, ni = eval_dose.shape
    hk = nk - 1.0
    hj = nj - 1.0
    hi = ni - 1.0
    ck_n, cj_n, ci_n = cell_min.shape
    n = points_kji.shape[0]
    mb = box_kji.shape[0]
    mf = fine_kji.shape[0]
    mn = near_kji.shape[0]
    split2 = near_dist2[mn - 1] if mn > 0 else -1.0
    for p in prange(n):
        best = max_gamma2
        pk = points_kji[p, 0]
        pj = points_kji[p, 1]
        pi = points_kji[p, 2]
        dref = ref_dose[p]
        w = inv_dd2[p]
        # Phase 1: the nearest offsets one by one (most points stop here).
        for q in range(mn):
            r2 = near_dist2[q]
            if r2 >= best:
                break
            k = pk + near_kji[q, 0]
            j = pj + near_kji[q, 1]
            i = pi + near_kji[q, 2]
            best = _gamma2_at(eval_dose, k, j, i, hk, hj, hi, dref, w, r2, best)
        if split2 >= best:
            out_gamma2[p] = best
            continue
        # Phase 2: boxes further out, skipped when their dose range cannot beat the best.
        for b in range(mb):
            rmax = box_dist_mm[b] + box_radius_mm
            if rmax * rmax * inv_dta2 <= split2:
                continue
            rmin = box_dist_mm[b] - box_radius_mm
            if rmin < 0.0:
                rmin = 0.0
            rmin2 = rmin * rmin * inv_dta2
            if rmin2 >= best:
                break
            bk = pk + box_kji[b, 0]
            bj = pj + box_kji[b, 1]
            bi = pi + box_kji[b, 2]
            k_lo = max(bk - box_half_kji[0], 0.0)
            k_hi = min(bk + box_half_kji[0], hk)
            j_lo = max(bj - box_half_kji[1], 0.0)
            j_hi = min(bj + box_half_kji[1], hj)
            i_lo = max(bi - box_half_kji[2], 0.0)
            i_hi = min(bi + box_half_kji[2], hi)
            if k_lo > k_hi or j_lo > j_hi or i_lo > i_hi:
                continue  # the box lies outside the evaluated grid
            lo = np.inf
            hi_d = -np.inf
            for a in range(min(int(k_lo), ck_n - 1), min(int(k_hi), ck_n - 1) + 1):
                for bb in range(min(int(j_lo), cj_n - 1), min(int(j_hi), cj_n - 1) + 1):
                    for c in range(min(int(i_lo), ci_n - 1), min(int(i_hi), ci_n - 1) + 1):
                        lo = min(lo, cell_min[a, bb, c])
                        hi_d = max(hi_d, cell_max[a, bb, c])
            dd = 0.0
            if dref < lo:
                dd = lo - dref
            elif dref > hi_d:
                dd = dref - hi_d
            if dd * dd * w + rmin2 >= best:
                continue
            for f in range(mf):
                dx = box_mm[b, 0] + fine_mm[f, 0]
                dy = box_mm[b, 1] + fine_mm[f, 1]
                dz = box_mm[b, 2] + fine_mm[f, 2]
                r2 = (dx * dx + dy * dy + dz * dz) * inv_dta2
                if r2 >= best or r2 <= split2:
                    continue
                k = bk + fine_kji[f, 0]
                j = bj + fine_kji[f, 1]
                i = bi + fine_kji[f, 2]
                best = _gamma2_at(eval_dose, k, j, i, hk, hj, hi, dref, w, r2, best)
        out_gamma2[p] = best
