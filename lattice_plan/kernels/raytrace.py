"""Radiological depth along divergent rays, in O(voxels) per beam.

Frame used by these kernels: the beam-limiting-device frame (``bld``) of a
beam, mm, origin at the isocentre, source at (0, 0, sad). A point is described
by its fan-beam coordinates (u, v, s): s is its distance from the source along
the central axis (s = sad - z), and (u, v) = (x, y) * sad / s is where the ray
through it crosses the isocentre plane. Rays of constant (u, v) are the
divergent rays from the source.

1. :func:`radiological_depth_grid` samples density (trilinear, zero outside the
   volume) on a regular (v, u, s) grid and sums it along s: the radiological
   depth of each grid sample, water-equivalent mm from the source side.
2. :func:`fan_geometry` takes arbitrary points, gives their (u, v), interpolates
   their radiological depth in that grid (trilinear) and evaluates the beam
   model's depth functions there, times the inverse square, in one pass.
"""

from __future__ import annotations

import math

from lattice_plan.kernels._jit import jit, jit_parallel, prange
from lattice_plan.kernels.interpolation import trilinear_kji


@jit
def _trilinear_kji(vol, ci, cj, ck):
    """Trilinear sample of vol[k, j, i] at continuous (i, j, k); 0 outside the voxel centres' hull."""
    nk, nj, ni = vol.shape
    if ci < 0.0 or cj < 0.0 or ck < 0.0 or ci > ni - 1 or cj > nj - 1 or ck > nk - 1:
        return 0.0
    return trilinear_kji(vol, ck, cj, ci)


@jit
def _inside_range(a, b, top, lo, hi):
    """Narrow [lo, hi] to the s where 0 <= a + b s <= top."""
    if b > 0.0:
        return max(lo, -a / b), min(hi, (top - a) / b)
    if b < 0.0:
        return max(lo, (top - a) / b), min(hi, -a / b)
    if a < 0.0 or a > top:
        return 1.0, 0.0
    return lo, hi


@jit_parallel
def radiological_depth_grid(
    density, ijk_from_bld, u0, du, nu, v0, dv, nv, s0, ds, ns, sad, out
):  # pragma: no cover - compiled
    """Radiological depth (mm water) on the fan grid; ``out`` has shape (nv, nu, ns).

    density: [k, j, i] relative electron density (float32/64).
    ijk_from_bld: 3x4 affine from bld mm to continuous (i, j, k) of ``density``.
    Sample n of a ray sits at s = s0 + n * ds; its depth is the density summed
    over the samples before it plus half its own, times the ray's path length
    per unit s (sqrt(1 + (u^2 + v^2) / sad^2) * ds). Along a ray the sample's
    (i, j, k) is linear in s; only the samples where the ray crosses the
    density's box (one sample of margin each side) are interpolated: the others
    lie outside it and add nothing.
    """
    nk, nj, ni = density.shape
    M = ijk_from_bld
    for r in prange(nv * nu):
        iv = r // nu
        iu = r - iv * nu
        u = u0 + iu * du
        v = v0 + iv * dv
        step = ds * math.sqrt(1.0 + (u * u + v * v) / (sad * sad))
        # (i, j, k) = c + g s along the ray (x = u s / sad, y = v s / sad, z = sad - s)
        ci0 = M[0, 2] * sad + M[0, 3]
        cj0 = M[1, 2] * sad + M[1, 3]
        ck0 = M[2, 2] * sad + M[2, 3]
        gi = (M[0, 0] * u + M[0, 1] * v) / sad - M[0, 2]
        gj = (M[1, 0] * u + M[1, 1] * v) / sad - M[1, 2]
        gk = (M[2, 0] * u + M[2, 1] * v) / sad - M[2, 2]
        s_lo, s_hi = _inside_range(ci0, gi, ni - 1.0, s0 - ds, s0 + ns * ds)
        s_lo, s_hi = _inside_range(cj0, gj, nj - 1.0, s_lo, s_hi)
        s_lo, s_hi = _inside_range(ck0, gk, nk - 1.0, s_lo, s_hi)
        n_lo = ns
        n_hi = ns
        if s_lo <= s_hi:
            n_lo = min(max(math.floor((s_lo - s0) / ds) - 1, 0), ns)
            n_hi = min(max(math.ceil((s_hi - s0) / ds) + 2, 0), ns)
        for n in range(n_lo):
            out[iv, iu, n] = 0.0
        acc = 0.0
        for n in range(n_lo, n_hi):
            s = s0 + n * ds
            rho = _trilinear_kji(density, ci0 + gi * s, cj0 + gj * s, ck0 + gk * s) * step
            out[iv, iu, n] = acc + 0.5 * rho
            acc += rho
        for n in range(n_hi, ns):
            out[iv, iu, n] = acc


@jit
def source_distance_range(points_lps, bld_from_lps, sad):  # pragma: no cover - compiled
    """(smallest, largest) distance s = sad - z (mm) from the source along the axis over the
    points in front of it (s > 1e-6); (inf, -inf) when there is none."""
    lo = math.inf
    hi = -math.inf
    for p in range(points_lps.shape[0]):
        z = (
            bld_from_lps[2, 0] * points_lps[p, 0]
            + bld_from_lps[2, 1] * points_lps[p, 1]
            + bld_from_lps[2, 2] * points_lps[p, 2]
        )
        z += bld_from_lps[2, 3]
        s = sad - z
        if s > 1e-6:
            lo = min(lo, s)
            hi = max(hi, s)
    return lo, hi


@jit
def _fan_point(points_lps, p, T, sad, rot):
    """(u0, v0, s, u, v) of point p: fan coordinates (mm) in the frame of ``T`` (3x4 affine from
    LPS), its distance s from the source along the axis, and (u, v) = rot @ (u0, v0). With s
    <= 1e-6 (at or behind the source) all are 0 but s."""
    px = points_lps[p, 0]
    py = points_lps[p, 1]
    pz = points_lps[p, 2]
    x = T[0, 0] * px + T[0, 1] * py + T[0, 2] * pz
    x += T[0, 3]
    y = T[1, 0] * px + T[1, 1] * py + T[1, 2] * pz
    y += T[1, 3]
    z = T[2, 0] * px + T[2, 1] * py + T[2, 2] * pz
    z += T[2, 3]
    s = sad - z
    if s <= 1e-6:
        return 0.0, 0.0, s, 0.0, 0.0
    u0 = x * sad / s
    v0 = y * sad / s
    return u0, v0, s, rot[0, 0] * u0 + rot[0, 1] * v0, rot[1, 0] * u0 + rot[1, 1] * v0


@jit_parallel
def fan_uv(points_lps, gantry_from_lps, sad, rot, u_out, v_out):  # pragma: no cover - compiled
    """Only the (u, v) of :func:`fan_geometry` (for another collimator angle of the same beam)."""
    for p in prange(points_lps.shape[0]):
        _, _, _, u, v = _fan_point(points_lps, p, gantry_from_lps, sad, rot)
        u_out[p] = u
        v_out[p] = v


@jit
def _table_cell(depth, step, n_tab):
    """(index, fraction) of a depth in a table sampled every ``step`` from 0, clamped to it."""
    x = depth / step
    if x <= 0.0:
        return 0, 0.0
    if x >= n_tab - 1:
        return n_tab - 2, 1.0
    i = int(x)
    return i, x - i


@jit_parallel
def fan_geometry(
    points_lps,
    gantry_from_lps,
    sad,
    rot,
    depth_grid,
    u0,
    du,
    v0,
    dv,
    s0,
    ds,
    table,
    step,
    scale_lo,
    scale_span,
    u_out,
    v_out,
    d_out,
    isq_out,
    blend_out,
    w_out,
):  # pragma: no cover - compiled
    """Everything the superposition needs of each point, in one pass.

    points_lps: (n, 3) LPS mm; gantry_from_lps: 3x4 affine to the beam's frame
    without collimator rotation, the frame of ``depth_grid`` (nv, nu, ns) from
    :func:`radiological_depth_grid`; rot: 2x2 rotation from that frame's (x, y)
    to the beam-limiting device's. Per point: fan coordinates (u, v) mm in the
    beam-limiting-device frame, radiological depth d (trilinear in the grid at
    the unrotated fan coordinates; points outside it take the nearest sample's
    depth), inverse square (sad / s)^2, the blend clip((s / sad - scale_lo) /
    scale_span, 0, 1) between two scatter-kernel distances (0 when scale_span
    <= 0), and w[r] = table[r] (depth functions sampled every ``step`` mm from
    0, linear in between, clamped at the ends) at d times the inverse square.
    Points at or behind the source (s <= 1e-6) get zeros. Computed in float64,
    stored in the outputs' dtype.
    """
    nv, nu, ns = depth_grid.shape
    n_rows, n_tab = table.shape
    for p in prange(points_lps.shape[0]):
        ug, vg, s, u, v = _fan_point(points_lps, p, gantry_from_lps, sad, rot)
        if s <= 1e-6:
            u_out[p] = 0.0
            v_out[p] = 0.0
            d_out[p] = 0.0
            isq_out[p] = 0.0
            blend_out[p] = 0.0
            for r in range(n_rows):
                w_out[r, p] = 0.0
            continue
        cu = min(max((ug - u0) / du, 0.0), nu - 1.0)
        cv = min(max((vg - v0) / dv, 0.0), nv - 1.0)
        cs = min(max((s - s0) / ds, 0.0), ns - 1.0)
        d = trilinear_kji(depth_grid, cv, cu, cs)  # grid axes (v, u, s)
        isq = (sad * sad) / (s * s)
        t = 0.0
        if scale_span > 0.0:
            t = min(max((s / sad - scale_lo) / scale_span, 0.0), 1.0)
        u_out[p] = u
        v_out[p] = v
        d_out[p] = d
        isq_out[p] = isq
        blend_out[p] = t
        i, f = _table_cell(d, step, n_tab)
        for r in range(n_rows):
            w_out[r, p] = (table[r, i] * (1.0 - f) + table[r, i + 1] * f) * isq


@jit_parallel
def depth_weights(table, step, depth, inverse_square, out):  # pragma: no cover - compiled
    """out[r, p] = linear interpolation of table[r] (sampled every ``step`` mm from 0) at depth[p],
    times inverse_square[p]; depths beyond the table take its last value, negative ones its first.
    """
    n_rows, n_tab = table.shape
    for p in prange(depth.shape[0]):
        i, f = _table_cell(depth[p], step, n_tab)
        for r in range(n_rows):
            out[r, p] = (table[r, i] * (1.0 - f) + table[r, i + 1] * f) * inverse_square[p]
