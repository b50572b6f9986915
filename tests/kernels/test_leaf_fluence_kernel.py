"""The exact trajectory kernel against a NumPy reference that samples the meterset finely."""

from __future__ import annotations

import numpy as np

from lattice_plan.kernels.leaf_fluence import trajectory_fractions


def _reference(weights, x1, x2, jaws, xs, ys, pa, pb, n_t=4000):
    """Midpoint rule in time: every interval split into n_t steps, positions interpolated linearly."""
    op = np.zeros((len(ys), len(xs)))
    jw = np.zeros_like(op)
    s = (np.arange(n_t) + 0.5) / n_t
    for k in range(len(weights) - 1):
        dw = weights[k + 1] - weights[k]
        if dw <= 0:
            continue

        def lin(a, b):
            return a + (b - a) * s

        jx1, jx2 = lin(jaws[k, 0], jaws[k + 1, 0]), lin(jaws[k, 1], jaws[k + 1, 1])
        jy1, jy2 = lin(jaws[k, 2], jaws[k + 1, 2]), lin(jaws[k, 3], jaws[k + 1, 3])
        for r, y in enumerate(ys):
            inj = (jx1[:, None] < xs[None, :]) & (xs[None, :] < jx2[:, None])
            inj &= ((jy1 < y) & (y < jy2))[:, None]
            ok = inj.copy()
            for p in {pa[r], pb[r]}:
                if p >= 0:
                    a = lin(x1[k, p], x1[k + 1, p])[:, None]
                    b = lin(x2[k, p], x2[k + 1, p])[:, None]
                    ok &= (a < xs[None, :]) & (xs[None, :] < b)
            jw[r] += dw * inj.mean(axis=0)
            op[r] += dw * ok.mean(axis=0)
    return op, jw


def test_kernel_matches_fine_time_sampling_for_random_trajectories():
    rng = np.random.default_rng(7)
    n_cp, n_pairs = 6, 3
    w = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, n_cp - 2)), [1.0]])
    w[3] = w[2]  # a beam-off move, as between step-and-shoot segments
    centre = rng.uniform(-20, 20, (n_cp, n_pairs))
    half = rng.uniform(0, 15, (n_cp, n_pairs))
    x1, x2 = centre - half, centre + half
    jaws = np.column_stack(
        [
            rng.uniform(-40, -10, n_cp),
            rng.uniform(10, 40, n_cp),
            rng.uniform(-12, -3, n_cp),
            rng.uniform(3, 12, n_cp),
        ]
    )
    xs = np.linspace(-45, 45, 61)
    ys = np.array([-9.0, -4.0, 0.0, 5.0, 8.0])
    pa = np.array([0, 0, 1, 2, -1], dtype=np.int64)
    pb = np.array([0, 1, 1, 2, -1], dtype=np.int64)
    op = np.zeros((len(ys), len(xs)))
    jw = np.zeros_like(op)
    trajectory_fractions(w, x1, x2, jaws, xs, ys, pa, pb, op, jw)
    ref_op, ref_jw = _reference(w, x1, x2, jaws, xs, ys, pa, pb)
    # midpoint rule error: at most dw / n_t per crossing, about 1e-3 here
    np.testing.assert_allclose(op, ref_op, atol=1e-3)
    np.testing.assert_allclose(jw, ref_jw, atol=1e-3)
    assert op.max() > 0.1 and np.all(op <= jw + 1e-12)


def test_uniform_sweep_gives_the_analytic_flat_fluence():
    # Both leaves sweep from -50 to +50 at one speed with gap g: every point between is open
    # for g / D of the meterset, D = 100 + g the distance each leaf travels (Spirou and Chui 1994).
    g = 8.0
    x1 = np.array([[-50.0 - g], [50.0]])
    x2 = np.array([[-50.0], [50.0 + g]])
    jaws = np.array([[-100.0, 100.0, -5.0, 5.0]] * 2)
    xs = np.linspace(-49.5, 49.5, 100)
    op = np.zeros((1, len(xs)))
    jw = np.zeros_like(op)
    trajectory_fractions(
        np.array([0.0, 1.0]),
        x1,
        x2,
        jaws,
        xs,
        np.array([0.0]),
        np.array([0], np.int64),
        np.array([0], np.int64),
        op,
        jw,
    )
    np.testing.assert_allclose(op, g / (100.0 + g), rtol=1e-12)
    np.testing.assert_allclose(jw, 1.0, rtol=1e-12)
