"""Exact meterset fractions of an MLC/jaw trajectory at points of the isocentre plane.

Between consecutive control points k and k + 1 every leaf tip and jaw moves
linearly in the interval parameter s in [0, 1] while the meterset grows
linearly by ``w[k + 1] - w[k]``. A point (x, y) is open while it lies between
the bank-X1 and bank-X2 tips of its leaf pair(s) and inside the four jaws:
each condition is one linear inequality in s, so the open part of the
interval is the intersection of half-lines, found exactly (no time sampling).
"""

from __future__ import annotations

from lattice_plan.kernels._jit import jit, jit_parallel, prange


@jit
def _clip(lo, hi, c0, c1):
    """Intersect [lo, hi] with {s : c0 + c1 s > 0}."""
    if c1 == 0.0:
        if c0 <= 0.0:
            return 1.0, 0.0
        return lo, hi
    r = -c0 / c1
    if c1 > 0.0:
        return max(lo, r), hi
    return lo, min(hi, r)


@jit
def _inside(lo, hi, p0, p1, q0, q1, v):
    """Intersect [lo, hi] with {s : p(s) < v < q(s)}, p and q linear from p0->p1, q0->q1."""
    lo, hi = _clip(lo, hi, v - p0, -(p1 - p0))
    return _clip(lo, hi, q0 - v, q1 - q0)


@jit_parallel
def trajectory_fractions(weights, x1, x2, jaws, xs, ys, pair_a, pair_b, open_out, jaw_out):
    """Meterset fraction during which each point is open, and inside the jaws.

    weights: (n_cp,) cumulative meterset weights (non-decreasing).
    x1, x2: (n_cp, n_pairs) effective leaf-tip positions of banks X1 and X2 (mm).
    jaws: (n_cp, 4) X1, X2, Y1, Y2 jaw positions (mm).
    xs: (nx,) point positions along the leaves (mm); ys: (ny,) across them (mm).
    pair_a, pair_b: (ny,) leaf pair(s) shading row y; the point is open only
    when it lies between the tips of both pairs (equal for a row inside one
    pair; neighbours in a tongue-and-groove strip; -1: no leaf, jaws only).
    open_out, jaw_out: (ny, nx) outputs, overwritten.
    """
    n_cp = weights.shape[0]
    ny = ys.shape[0]
    nx = xs.shape[0]
    for j in prange(ny):
        y = ys[j]
        a = pair_a[j]
        b = pair_b[j]
        for i in range(nx):
            open_out[j, i] = 0.0
            jaw_out[j, i] = 0.0
        for k in range(n_cp - 1):
            dw = weights[k + 1] - weights[k]
            if dw <= 0.0:
                continue
            lo, hi = _inside(0.0, 1.0, jaws[k, 2], jaws[k + 1, 2], jaws[k, 3], jaws[k + 1, 3], y)
            if hi <= lo:
                continue
            for i in range(nx):
                x = xs[i]
                l1, h1 = _inside(lo, hi, jaws[k, 0], jaws[k + 1, 0], jaws[k, 1], jaws[k + 1, 1], x)
                if h1 <= l1:
                    continue
                jaw_out[j, i] += dw * (h1 - l1)
                if a >= 0:
                    l1, h1 = _inside(l1, h1, x1[k, a], x1[k + 1, a], x2[k, a], x2[k + 1, a], x)
                if b >= 0 and b != a:
                    l1, h1 = _inside(l1, h1, x1[k, b], x1[k + 1, b], x2[k, b], x2[k + 1, b], x)
                if h1 > l1:
                    open_out[j, i] += dw * (h1 - l1)
