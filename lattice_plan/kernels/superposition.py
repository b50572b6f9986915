"""Pencil-beam superposition for one beam: gather convolved fluence maps at points, and its adjoint.

Two map grids on the isocentre plane (pixel [iy, ix] centred at
(x0 + ix*h, y0 + iy*h) mm): a fine map holding the fluence convolved with the
narrow primary kernel, and coarse maps holding the broad components. For
point p with isocentre-plane projection (u[p], v[p]) (mm) the dose is

    scale * ( w[0, p] * bilinear(fine, u, v)                       if (u, v) lies on the fine map
              w[0, p] * bilinear(coarse[0], u, v)                  otherwise (primary far from the field)
              + sum_{m >= 1} f_m(p) * w[rows[m], p] * bilinear(coarse[m], u, v) )

``w`` holds each depth row's depth function at the point's radiological
depth times the inverse-square factor; ``rows`` maps coarse map m to its depth
row (rows[0] must be 0). Coarse maps built for two distances from the source
are blended: f_m(p) = 1 when planes[m] < 0, 1 - t[p] when planes[m] == 0 and
t[p] when planes[m] == 1. Points off a map get nothing from it. ``sel`` lists
the points to evaluate; output q belongs to point sel[q].
"""

from __future__ import annotations

from lattice_plan.kernels._jit import jit, jit_parallel, prange


@jit
def _cell(x, y, x0, y0, h, nx, ny):
    """Bilinear cell (ix, iy, ix1, iy1, fx, fy) of (x, y); ix < 0 when outside the map."""
    cx = (x - x0) / h
    cy = (y - y0) / h
    if cx < 0.0 or cy < 0.0 or cx > nx - 1 or cy > ny - 1:
        return -1, -1, -1, -1, 0.0, 0.0
    ix = min(int(cx), max(nx - 2, 0))
    iy = min(int(cy), max(ny - 2, 0))
    return ix, iy, min(ix + 1, nx - 1), min(iy + 1, ny - 1), cx - ix, cy - iy


@jit
def _plane_factor(plane, t):
    """Blend weight of a coarse map: 1 (any distance), 1 - t (near plane) or t (far plane)."""
    if plane < 0:
        return 1.0
    return 1.0 - t if plane == 0 else t


@jit_parallel
def gather_beam(
    fine, fx0, fy0, fh, coarse, cx0, cy0, ch, rows, planes, u, v, t, w, sel, scale, out
):  # pragma: no cover - compiled
    """out[q] += the beam's dose at point sel[q] (see the module docstring)."""
    nyf, nxf = fine.shape
    ncm, nyc, nxc = coarse.shape
    for q in prange(sel.shape[0]):
        p = sel[q]
        acc = 0.0
        ix, iy, ix1, iy1, fx, fy = _cell(u[p], v[p], fx0, fy0, fh, nxf, nyf)
        on_fine = ix >= 0
        if on_fine:
            val = (fine[iy, ix] * (1.0 - fx) + fine[iy, ix1] * fx) * (1.0 - fy) + (
                fine[iy1, ix] * (1.0 - fx) + fine[iy1, ix1] * fx
            ) * fy
            acc += w[0, p] * val
        ix, iy, ix1, iy1, fx, fy = _cell(u[p], v[p], cx0, cy0, ch, nxc, nyc)
        if ix >= 0:
            start = 1 if on_fine else 0
            for m in range(start, ncm):
                val = (coarse[m, iy, ix] * (1.0 - fx) + coarse[m, iy, ix1] * fx) * (1.0 - fy) + (
                    coarse[m, iy1, ix] * (1.0 - fx) + coarse[m, iy1, ix1] * fx
                ) * fy
                acc += _plane_factor(planes[m], t[p]) * w[rows[m], p] * val
        out[q] += scale * acc


@jit_parallel
def scatter_beam(
    g, fx0, fy0, fh, cx0, cy0, ch, rows, planes, u, v, t, w, sel, scale, fine_buf, coarse_buf
):  # pragma: no cover - compiled
    """Adjoint of :func:`gather_beam`: accumulate the transposed gather of g into the buffers.

    fine_buf: (n_chunks, nyf, nxf); coarse_buf: (n_chunks, ncm, nyc, nxc); both zeroed
    by the caller, which sums them over axis 0. Chunk t handles a contiguous
    slice of ``sel`` so threads never write the same buffer.
    """
    n_chunks, nyf, nxf = fine_buf.shape
    ncm = coarse_buf.shape[1]
    nyc = coarse_buf.shape[2]
    nxc = coarse_buf.shape[3]
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
            ix, iy, ix1, iy1, fx, fy = _cell(u[p], v[p], fx0, fy0, fh, nxf, nyf)
            on_fine = ix >= 0
            if on_fine:
                b = a * w[0, p]
                fine_buf[chunk, iy, ix] += b * (1.0 - fx) * (1.0 - fy)
                fine_buf[chunk, iy, ix1] += b * fx * (1.0 - fy)
                fine_buf[chunk, iy1, ix] += b * (1.0 - fx) * fy
                fine_buf[chunk, iy1, ix1] += b * fx * fy
            ix, iy, ix1, iy1, fx, fy = _cell(u[p], v[p], cx0, cy0, ch, nxc, nyc)
            if ix >= 0:
                start = 1 if on_fine else 0
                for m in range(start, ncm):
                    b = a * _plane_factor(planes[m], t[p]) * w[rows[m], p]
                    coarse_buf[chunk, m, iy, ix] += b * (1.0 - fx) * (1.0 - fy)
                    coarse_buf[chunk, m, iy, ix1] += b * fx * (1.0 - fy)
                    coarse_buf[chunk, m, iy1, ix] += b * (1.0 - fx) * fy
                    coarse_buf[chunk, m, iy1, ix1] += b * fx * fy
