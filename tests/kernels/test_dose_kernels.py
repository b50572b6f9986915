"""The dose kernels against slow, obviously correct NumPy references on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.kernels.raytrace import (
    fan_geometry,
    fan_uv,
    radiological_depth_grid,
    source_distance_range,
)
from lattice_plan.kernels.superposition import gather_beam, scatter_beam


def _trilinear_reference(vol, ci, cj, ck):
    """Trilinear interpolation of vol[k, j, i]; zero outside the hull of voxel centres."""
    nk, nj, ni = vol.shape
    out = np.zeros(len(ci))
    for n, (x, y, z) in enumerate(zip(ci, cj, ck, strict=True)):
        if not (0 <= x <= ni - 1 and 0 <= y <= nj - 1 and 0 <= z <= nk - 1):
            continue
        i0, j0, k0 = min(int(x), ni - 2), min(int(y), nj - 2), min(int(z), nk - 2)
        fx, fy, fz = x - i0, y - j0, z - k0
        acc = 0.0
        for dk, wk in ((0, 1 - fz), (1, fz)):
            for dj, wj in ((0, 1 - fy), (1, fy)):
                for di, wi in ((0, 1 - fx), (1, fx)):
                    acc += wk * wj * wi * vol[k0 + dk, j0 + dj, i0 + di]
        out[n] = acc
    return out


def _random_affine(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    M = np.zeros((3, 4))
    M[:, :3] = q * rng.uniform(0.3, 0.6, size=3)[:, None]
    M[:, 3] = rng.uniform(2, 6, size=3)
    return M


def test_radiological_depth_grid_matches_numpy_cumulative_sum():
    rng = np.random.default_rng(1)
    density = rng.uniform(0, 2, size=(7, 8, 9)).astype(np.float32)
    M = _random_affine(rng)
    u0, du, nu, v0, dv, nv, s0, ds, ns, sad = -4.0, 1.5, 5, -3.0, 1.25, 4, 990.0, 0.7, 30, 1000.0
    out = np.empty((nv, nu, ns), dtype=np.float32)
    radiological_depth_grid(density, M, u0, du, nu, v0, dv, nv, s0, ds, ns, sad, out)
    ref = np.empty((nv, nu, ns))
    for iv in range(nv):
        for iu in range(nu):
            u, v = u0 + iu * du, v0 + iv * dv
            s = s0 + ds * np.arange(ns)
            pts = np.stack([u * s / sad, v * s / sad, sad - s, np.ones(ns)])
            ijk = M @ pts
            rho = _trilinear_reference(density, *ijk)
            step = ds * np.sqrt(1 + (u * u + v * v) / sad**2)
            # depth at a sample: everything before it plus half of its own interval
            ref[iv, iu] = (np.cumsum(rho) - 0.5 * rho) * step
    assert np.any(ref > 1.0)  # the rays do cross the density
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_fan_geometry_matches_numpy_projection_interpolation_and_depth_weights():
    from scipy.interpolate import RegularGridInterpolator

    rng = np.random.default_rng(2)
    nv, nu, ns = 5, 6, 7
    u0, du, v0, dv, s0, ds, sad = -10.0, 4.0, -8.0, 4.0, 950.0, 20.0, 1000.0
    grid = rng.uniform(0, 100, size=(nv, nu, ns)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    T = np.hstack([q, rng.normal(size=(3, 1))])
    pts = rng.uniform(-15, 15, size=(200, 3))
    pts[0] = np.linalg.solve(q, [3.0, 2.0, sad + 5.0] - T[:, 3])  # behind the source
    table = rng.uniform(size=(3, 1200))
    step, lo, span = 0.1, 0.98, 0.04
    u, v, d, isq, blend = (np.empty(200, dtype=np.float32) for _ in range(5))
    w = np.empty((3, 200), dtype=np.float32)
    c, sn = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, sn], [-sn, c]])
    fan_geometry(
        pts, T, sad, rot, grid, u0, du, v0, dv, s0, ds, table, step, lo, span,
        u, v, d, isq, blend, w,
    )  # fmt: skip
    u_only, v_only = np.empty(200, dtype=np.float32), np.empty(200, dtype=np.float32)
    fan_uv(pts, T, sad, rot, u_only, v_only)
    np.testing.assert_array_equal(u_only, u)  # the same computation, bit for bit
    np.testing.assert_array_equal(v_only, v)
    bld = pts @ T[:, :3].T + T[:, 3]
    s_ref = sad - bld[:, 2]
    assert s_ref[0] < 0 and np.all(s_ref[1:] > 0)
    assert source_distance_range(pts, T, sad) == pytest.approx((s_ref[1:].min(), s_ref.max()))
    assert u[0] == v[0] == d[0] == isq[0] == blend[0] == 0.0 and not np.any(w[:, 0])
    s_ref, bld = s_ref[1:], bld[1:]
    u_ref = bld[:, 0] * sad / s_ref
    v_ref = bld[:, 1] * sad / s_ref
    # (u, v) rotated into the collimator's frame; the depth is looked up unrotated
    np.testing.assert_allclose(u[1:], c * u_ref + sn * v_ref, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(v[1:], -sn * u_ref + c * v_ref, rtol=1e-6, atol=1e-5)
    axes = (v0 + dv * np.arange(nv), u0 + du * np.arange(nu), s0 + ds * np.arange(ns))
    interp = RegularGridInterpolator(axes, grid.astype(float))
    clipped = np.stack(
        [
            np.clip(v_ref, axes[0][0], axes[0][-1]),
            np.clip(u_ref, axes[1][0], axes[1][-1]),
            np.clip(s_ref, axes[2][0], axes[2][-1]),
        ],
        axis=1,
    )
    d_ref = interp(clipped)
    np.testing.assert_allclose(d[1:], d_ref, rtol=1e-5, atol=1e-4)
    isq_ref = (sad / s_ref) ** 2
    np.testing.assert_allclose(isq[1:], isq_ref, rtol=1e-6)
    blend_ref = np.clip((s_ref / sad - lo) / span, 0.0, 1.0)
    assert np.any((blend_ref > 0) & (blend_ref < 1))  # the points straddle both distances
    np.testing.assert_allclose(blend[1:], blend_ref, rtol=1e-6, atol=1e-6)
    depths = step * np.arange(table.shape[1])
    w_ref = np.stack([np.interp(d_ref, depths, row) * isq_ref for row in table])
    np.testing.assert_allclose(w[:, 1:], w_ref, rtol=1e-5, atol=1e-5)


def _bilinear_reference(fmap, x0, y0, h, u, v):
    ny, nx = fmap.shape
    cx, cy = (u - x0) / h, (v - y0) / h
    inside = (cx >= 0) & (cy >= 0) & (cx <= nx - 1) & (cy <= ny - 1)
    ix = np.clip(np.floor(cx).astype(int), 0, nx - 2)
    iy = np.clip(np.floor(cy).astype(int), 0, ny - 2)
    fx, fy = cx - ix, cy - iy
    val = (
        fmap[iy, ix] * (1 - fx) * (1 - fy)
        + fmap[iy, ix + 1] * fx * (1 - fy)
        + fmap[iy + 1, ix] * (1 - fx) * fy
        + fmap[iy + 1, ix + 1] * fx * fy
    )
    return np.where(inside, val, 0.0), inside, (ix, iy, fx, fy)


def _random_maps(rng):
    fine = rng.uniform(size=(2, 9, 11))  # the primary and a short-range kernel
    fine_geo = (-5.0, -4.0, 1.0)  # x0, y0, h: covers x -5..5, y -4..4
    fine_rows = np.array([0, 1], dtype=np.int64)
    fine_planes = np.array([-1, 0], dtype=np.int64)
    coarse_geo = (-12.0, -10.0, 4.0)  # covers x -12..12, y -10..10
    coarse = rng.uniform(size=(5, 6, 7))
    rows = np.array([0, 1, 0, 1, 1], dtype=np.int64)  # two far stand-ins, then broad maps
    planes = np.array([-1, 0, -1, 0, 1], dtype=np.int64)  # a scatter map at two distances
    n_far = 2
    n = 400
    u = rng.uniform(-14, 14, n).astype(np.float32)
    v = rng.uniform(-12, 12, n).astype(np.float32)
    t = rng.uniform(size=n).astype(np.float32)
    w = rng.uniform(size=(2, n)).astype(np.float32)
    sel = rng.choice(n, size=300, replace=False).astype(np.int64)
    fine_args = (fine, *fine_geo, fine_rows, fine_planes)
    coarse_args = (coarse, *coarse_geo, rows, planes, n_far)
    return fine_args, coarse_args, u, v, t, w, sel


def _blend(plane, t):
    return np.ones_like(t) if plane < 0 else (1.0 - t if plane == 0 else t)


_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _corner_weights(fx, fy):
    return ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)


def _gather_reference(fine_args, coarse_args, u, v, t, w, sel, scale):
    fine, fx0, fy0, fh, fine_rows, fine_planes = fine_args
    coarse, cx0, cy0, ch, rows, planes, n_far = coarse_args
    uu, vv = u[sel].astype(float), v[sel].astype(float)
    ww = w[:, sel].astype(float)
    tt = t[sel].astype(float)
    out = np.zeros(len(sel))
    for f in range(fine.shape[0]):
        fval, on_fine, _ = _bilinear_reference(fine[f], fx0, fy0, fh, uu, vv)
        out += _blend(fine_planes[f], tt) * ww[fine_rows[f]] * fval
    for m in range(coarse.shape[0]):
        cval, _, _ = _bilinear_reference(coarse[m], cx0, cy0, ch, uu, vv)
        use = ~on_fine if m < n_far else np.ones_like(on_fine)
        out = out + np.where(use, _blend(planes[m], tt) * ww[rows[m]] * cval, 0.0)
    return scale * out


def test_gather_beam_matches_numpy_bilinear_reference():
    rng = np.random.default_rng(3)
    fine_args, coarse_args, u, v, t, w, sel = _random_maps(rng)
    out = np.full(len(sel), 0.5)
    gather_beam(*fine_args, *coarse_args, u, v, t, w, sel, 2.0, out)
    ref = 0.5 + _gather_reference(fine_args, coarse_args, u, v, t, w, sel, 2.0)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    # some points fall off both maps, some only off the fine map: both branches are exercised
    assert np.any(out == 0.5) and np.any(out != 0.5)


@pytest.mark.parametrize("n_chunks", [1, 3])
def test_scatter_beam_matches_numpy_add_at_reference(n_chunks):
    rng = np.random.default_rng(4)
    fine_args, coarse_args, u, v, t, w, sel = _random_maps(rng)
    fine, fx0, fy0, fh, fine_rows, fine_planes = fine_args
    coarse, cx0, cy0, ch, rows, planes, n_far = coarse_args
    g = rng.normal(size=len(sel))
    fine_buf = np.zeros((n_chunks, *fine.shape))
    coarse_buf = np.zeros((n_chunks, *coarse.shape))
    scatter_beam(g, *fine_args[1:], *coarse_args[1:], u, v, t, w, sel, 1.5, fine_buf, coarse_buf)
    uu, vv = u[sel].astype(float), v[sel].astype(float)
    ww = w[:, sel].astype(float)
    tt = t[sel].astype(float)
    ref_f = np.zeros(fine.shape)
    for f in range(fine.shape[0]):
        _, on_fine, (ix, iy, fx, fy) = _bilinear_reference(fine[f], fx0, fy0, fh, uu, vv)
        a = np.where(on_fine, 1.5 * g * _blend(fine_planes[f], tt) * ww[fine_rows[f]], 0.0)
        for (dy, dx), wt in zip(_CORNERS, _corner_weights(fx, fy), strict=True):
            np.add.at(ref_f[f], (iy + dy, ix + dx), a * wt)
    ref_c = np.zeros(coarse.shape)
    for m in range(coarse.shape[0]):
        _, on_c, (ix, iy, fx, fy) = _bilinear_reference(coarse[m], cx0, cy0, ch, uu, vv)
        use = on_c & (~on_fine if m < n_far else True)
        a = np.where(use, 1.5 * g * _blend(planes[m], tt) * ww[rows[m]], 0.0)
        for (dy, dx), wt in zip(_CORNERS, _corner_weights(fx, fy), strict=True):
            np.add.at(ref_c[m], (iy + dy, ix + dx), a * wt)
    np.testing.assert_allclose(fine_buf.sum(axis=0), ref_f, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(coarse_buf.sum(axis=0), ref_c, rtol=1e-10, atol=1e-12)
    # and it is the transpose of the gather: <gather(maps), g> = <maps, scatter(g)>
    out = np.zeros(len(sel))
    gather_beam(*fine_args, *coarse_args, u, v, t, w, sel, 1.5, out)
    lhs = float(out @ g)
    rhs = float((fine * ref_f).sum() + (coarse * ref_c).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_depth_weights_match_numpy_interp():
    from lattice_plan.kernels.raytrace import depth_weights

    rng = np.random.default_rng(5)
    table = rng.uniform(size=(3, 50))
    step = 0.5
    depth = rng.uniform(-2.0, 30.0, 500)  # includes depths before and beyond the table
    isq = rng.uniform(0.5, 1.5, 500)
    out = np.empty((3, 500), dtype=np.float32)
    depth_weights(table, step, depth, isq, out)
    grid = step * np.arange(50)
    ref = np.stack([np.interp(depth, grid, row) * isq for row in table])
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
