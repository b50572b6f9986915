"""Trilinear interpolation inside Numba kernels (shared by ray tracing and the gamma search)."""

from __future__ import annotations

import numpy as np

from lattice_plan.kernels._jit import jit


@jit
def trilinear_kji(volume, k, j, i):
    """Trilinear interpolation of ``volume[k, j, i]`` at continuous indices inside the grid.

    The caller guarantees 0 <= k <= nk - 1 (and likewise j, i).
    """
    nk, nj, ni = volume.shape
    k0 = min(int(np.floor(k)), nk - 2) if nk > 1 else 0
    j0 = min(int(np.floor(j)), nj - 2) if nj > 1 else 0
    i0 = min(int(np.floor(i)), ni - 2) if ni > 1 else 0
    fk = k - k0
    fj = j - j0
    fi = i - i0
    k1 = k0 + 1 if nk > 1 else 0
    j1 = j0 + 1 if nj > 1 else 0
    i1 = i0 + 1 if ni > 1 else 0
    c00 = volume[k0, j0, i0] * (1.0 - fi) + volume[k0, j0, i1] * fi
    c01 = volume[k0, j1, i0] * (1.0 - fi) + volume[k0, j1, i1] * fi
    c10 = volume[k1, j0, i0] * (1.0 - fi) + volume[k1, j0, i1] * fi
    c11 = volume[k1, j1, i0] * (1.0 - fi) + volume[k1, j1, i1] * fi
    c0 = c00 * (1.0 - fj) + c01 * fj
    c1 = c10 * (1.0 - fj) + c11 * fj
    return c0 * (1.0 - fk) + c1 * fk
