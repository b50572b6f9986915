"""Pencil-beam superposition for one beam: gather convolved fluence maps at points, and its adjoint.

Two map grids on the isocentre plane (pixel [iy, ix] centred at
(x0 + ix*h, y0 + iy*h) mm): fine maps holding the fluence convolved with the
narrow kernels (the primary and any short-range scatter), and coarse maps
holding the broad components. For point p with isocentre-plane projection
(u[p], v[p]) (mm) the dose is

    scale * ( sum_f  f_f(p) * w[fine_rows[f], p] * bilinear(fine[f], u, v)     if (u, v) is on the fine maps
              + sum_{m >= n_far}  f_m(p) * w[rows[m], p] * bilinear(coarse[m], u, v)
              + sum_{m < n_far}   f_m(p) * w[rows[m], p] * bilinear(coarse[m], u, v)  if it is not )

The first ``n_far`` coarse maps stand in for the fine maps far from the field.
``w`` holds each depth row's depth function at the point's radiological depth
times the inverse-square factor. Maps built for two distances from the source
are blended: f_m(p) = 1 when planes[m] < 0, 1 - t[p] when planes[m] == 0 and
t[p] when planes[m] == 1 (likewise fine_planes for the fine maps). Points off a
map get nothing from it. ``sel`` lists the points to evaluate; output q belongs
to point sel[q].
"""

from __future__ import annotations

from lattice_plan.kernels._jit import jit_inline, jit_parallel, prange


@jit_inline
def _cell(x, y, x0, y0, h, nx, ny):
    """Bilinear cell of (x, y): corner indices (ix, iy, ix1, iy1) and corner weights
    (a00, a01, a10, a11) of [iy, ix], [iy, ix1], [iy1, ix], [iy1, ix1]; ix < 0 when outside."""
    cx = (x - x0) / h
    cy = (y - y0) / h
    if cx < 0.0 or cy < 0.0 or cx > nx - 1 or cy > ny - 1:
        return -1, -1, -1, -1, 0.0, 0.0, 0.0, 0.0
    ix = min(int(cx), max(nx - 2, 0))
    iy = min(int(cy), max(ny - 2, 0))
    fx = cx - ix
    fy = cy - iy
    return (
        ix,
        iy,
        min(ix + 1, nx - 1),
        min(iy + 1, ny - 1),
        (1.0 - fx) * (1.0 - fy),
        fx * (1.0 - fy),
        (1.0 - fx) * fy,
        fx * fy,
    )


@jit_inline
def _plane_factor(plane, t):
    """Blend weight of a coarse map: 1 (any distance), 1 - t (near plane) or t (far plane)."""
    if plane < 0:
        return 1.0
    return 1.0 - t if plane == 0 else t


@jit_inline
def _maps_at(maps, rows, planes, start, cell, tp, w, p):
    """Sum over maps m >= start of blend * depth weight * bilinear value at the cell."""
    ix, iy, ix1, iy1, a00, a01, a10, a11 = cell
    acc = 0.0
    for m in range(start, maps.shape[0]):
        val = (
            maps[m, iy, ix] * a00
            + maps[m, iy, ix1] * a01
            + maps[m, iy1, ix] * a10
            + maps[m, iy1, ix1] * a11
        )
        acc += _plane_factor(planes[m], tp) * w[rows[m], p] * val
    return acc


@jit_inline
def _spread_to_maps(buf, rows, planes, start, cell, tp, w, p, a):
    """Transpose of :func:`_maps_at`: add a times each map's weight to the cell's corners."""
    ix, iy, ix1, iy1, a00, a01, a10, a11 = cell
    for m in range(start, buf.shape[0]):
        b = a * _plane_factor(planes[m], tp) * w[rows[m], p]
        buf[m, iy, ix] += b * a00
        buf[m, iy, ix1] += b * a01
        buf[m, iy1, ix] += b * a10
        buf[m, iy1, ix1] += b * a11


@jit_parallel
def gather_beam(
    fine,
    fx0,
    fy0,
    fh,
    fine_rows,
    fine_planes,
    coarse,
    cx0,
    cy0,
    ch,
    rows,
    planes,
    n_far,
    u,
    v,
    t,
    w,
    sel,
    scale,
    out,
):  # pragma: no cover - compiled
    """out[q] += the beam's dose at point sel[q] (see the module docstring)."""
    nyf, nxf = fine.shape[1], fine.shape[2]
    nyc, nxc = coarse.shape[1], coarse.shape[2]
    for q in prange(sel.shape[0]):
        p = sel[q]
        acc = 0.0
        cell = _cell(u[p], v[p], fx0, fy0, fh, nxf, nyf)
        on_fine = cell[0] >= 0
        if on_fine:
            acc += _maps_at(fine, fine_rows, fine_planes, 0, cell, t[p], w, p)
        cell = _cell(u[p], v[p], cx0, cy0, ch, nxc, nyc)
        if cell[0] >= 0:
            start = n_far if on_fine else 0
            acc += _maps_at(coarse, rows, planes, start, cell, t[p], w, p)
        out[q] += scale * acc


@jit_parallel
def scatter_beam(
    g,
    fx0,
    fy0,
    fh,
    fine_rows,
    fine_planes,
    cx0,
    cy0,
    ch,
    rows,
    planes,
    n_far,
    u,
    v,
    t,
    w,
    sel,
    scale,
    fine_buf,
    coarse_buf,
):  # pragma: no cover - compiled
    """Adjoint of :func:`gather_beam`: accumulate the transposed gather of g into the buffers.

    fine_buf: (n_chunks, n_fine, nyf, nxf); coarse_buf: (n_chunks, n_coarse, nyc, nxc);
    both zeroed by the caller, which sums them over axis 0. Chunk t handles a
    contiguous slice of ``sel`` so threads never write the same buffer.
    """
    n_chunks = fine_buf.shape[0]
    nyf, nxf = fine_buf.shape[2], fine_buf.shape[3]
    nyc, nxc = coarse_buf.shape[2], coarse_buf.shape[3]
    m_total = sel.shape[0]
    per = (m_total + n_chunks - 1) // n_chunks
    for chunk in prange(n_chunks):
        start_q = chunk * per
        stop_q = min(m_total, start_q + per)
        for q in range(start_q, stop_q):
            p = sel[q]
            a = scale * g[q]
            if a == 0.0:
                continue
            cell = _cell(u[p], v[p], fx0, fy0, fh, nxf, nyf)
            on_fine = cell[0] >= 0
            if on_fine:
                _spread_to_maps(fine_buf[chunk], fine_rows, fine_planes, 0, cell, t[p], w, p, a)
            cell = _cell(u[p], v[p], cx0, cy0, ch, nxc, nyc)
            if cell[0] >= 0:
                start = n_far if on_fine else 0
                _spread_to_maps(coarse_buf[chunk], rows, planes, start, cell, t[p], w, p, a)
