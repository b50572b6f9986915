"""Convolution of the fluence maps at the isocentre plane with the beam model's lateral kernels.

The dose engine (:mod:`lattice_plan.dose.engine`) paints each beam's fluence
on a fine and a coarse map grid and convolves them with the model's kernels
(:class:`MapConvolver`); the fluence operator uses the exact transpose for its
adjoint. Only the nonzero part of a map (its :func:`support_of`) is
transformed, padded by the kernel, so a small field on a map sized for the
broad kernels' reach costs small FFTs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import fft as sfft

from lattice_plan.cache import BoundedCache
from lattice_plan.dose.fluence import MapGrid
from lattice_plan.dose.model import MapKernels


# Kernel spectra by (kernel, FFT size, dtype): beams of one plan share kernels and mostly sizes.
def _spectra_nbytes(hit: tuple) -> int:
    return hit[1].nbytes + hit[2].nbytes


_SPECTRUM_CACHE: BoundedCache[tuple] = BoundedCache(max_bytes=256 * 1024**2, nbytes=_spectra_nbytes)


def support_of(image: NDArray) -> tuple[int, int, int, int]:
    """(row start, row stop, column start, column stop) of the nonzero part of a 2D map."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    if len(rows) == 0:
        return 0, 1, 0, 1
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _axis_plan(lo: int, hi: int, n: int, k: int) -> tuple:
    """Index ranges along one axis for a map of ``n`` pixels nonzero on [lo, hi), kernel ``k`` wide.

    The linear convolution of the nonzero part has ``hi - lo + k - 1`` samples,
    the first at map index ``lo - k // 2`` ('same' alignment); one FFT of that
    size holds it without wrap-around, forward and in the adjoint. Returns
    (FFT size, forward: (out start, out stop, first sample), adjoint: (window
    start, window stop, first useful sample)).
    """
    length = hi - lo + k - 1
    size = sfft.next_fast_len(length, True)
    first = lo - k // 2
    start, stop = max(first, 0), min(first + length, n)
    return size, (start, stop, start - first), (start, stop, k - 1 - (start - first))


class MapConvolver:
    """'Same'-size linear convolution of the fine and coarse fluence maps with the model kernels.

    FFT based and exact (no wrap-around); the adjoint correlates with the same
    kernels, its exact transpose. Only the part of each fluence map that can be
    nonzero (``supports``: rows and columns, default the whole map) is
    transformed, padded by the kernel, so a small field on a map sized for the
    broad kernels' reach takes small FFTs. Kernels of one size are transformed
    together (a batched inverse FFT forward; the adjoint sums their products
    in frequency space, one inverse FFT per size). ``dtype``: float64, or
    float32 for the optimiser's single-precision operator.
    """

    def __init__(
        self,
        kernels: MapKernels,
        fine_grid: MapGrid,
        coarse_grid: MapGrid,
        dtype: type = np.float64,
        supports: tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None = None,
    ) -> None:
        self.fine_rows = kernels.fine_rows
        self.fine_planes = kernels.fine_planes
        self.rows = kernels.coarse_rows
        self.planes = kernels.coarse_planes
        self.n_far = kernels.n_far
        self.dtype = dtype
        fs, cs = supports or (
            (0, fine_grid.ny, 0, fine_grid.nx),
            (0, coarse_grid.ny, 0, coarse_grid.nx),
        )
        self._fine = self._plan(kernels.fine, fine_grid.shape, fs, dtype)
        self._coarse = self._plan(kernels.coarse, coarse_grid.shape, cs, dtype)

    def layouts(self, fine_grid: MapGrid, coarse_grid: MapGrid) -> tuple[tuple, tuple]:
        """The superposition kernels' map arguments after each map stack: (origin, pitch, rows,
        planes) of the fine maps, and the same plus ``n_far`` for the coarse ones."""
        return (
            (fine_grid.x0_mm, fine_grid.y0_mm, fine_grid.h_mm, self.fine_rows, self.fine_planes),
            (
                coarse_grid.x0_mm,
                coarse_grid.y0_mm,
                coarse_grid.h_mm,
                self.rows,
                self.planes,
                self.n_far,
            ),
        )

    @staticmethod
    def _spectra(kernel: NDArray, size: tuple[int, int], dtype: type) -> tuple:
        """(spectrum, spectrum of the flipped kernel) at an FFT size, cached."""
        key = (id(kernel), size, np.dtype(dtype).str)
        hit = _SPECTRUM_CACHE.get(key)
        if hit is None or hit[0] is not kernel:  # the kernel is kept, so its id is not reused
            k = kernel.astype(dtype)
            hit = (kernel, sfft.rfft2(k, size), sfft.rfft2(k[::-1, ::-1], size))
            _SPECTRUM_CACHE.put(key, hit)
        return hit[1], hit[2]

    @classmethod
    def _plan(
        cls,
        kernels: Sequence[NDArray],
        shape: tuple[int, int],
        support: tuple[int, int, int, int],
        dtype: type,
    ) -> tuple:
        """(n, support, scalars [(index, value)], groups [(indices, size, spectra, flipped,
        y plan, x plan)]): kernels of one shape share a group."""
        scalars = []
        groups: dict[tuple[int, int], list[int]] = {}
        for i, kernel in enumerate(kernels):
            if kernel.shape == (1, 1):
                scalars.append((i, float(kernel[0, 0])))
            else:
                groups.setdefault(kernel.shape, []).append(i)
        r0, r1, c0, c1 = support
        planned = []
        for (ky, kx), idx in groups.items():
            ny_fft, y_fwd, y_adj = _axis_plan(r0, r1, shape[0], ky)
            nx_fft, x_fwd, x_adj = _axis_plan(c0, c1, shape[1], kx)
            size = (ny_fft, nx_fft)
            spectra = [cls._spectra(kernels[i], size, dtype) for i in idx]
            planned.append(
                (
                    np.array(idx),
                    size,
                    np.stack([s[0] for s in spectra]),
                    np.stack([s[1] for s in spectra]),
                    (y_fwd, y_adj),
                    (x_fwd, x_adj),
                )
            )
        return len(kernels), support, scalars, planned

    def _convolve(self, plan: tuple, image: NDArray) -> NDArray:
        n, (r0, r1, c0, c1), scalars, groups = plan
        out = np.zeros((n, *image.shape), dtype=image.dtype)
        for i, c in scalars:
            out[i] = c * image
        part = image[r0:r1, c0:c1]
        for idx, size, spec, _, (yf, _), (xf, _) in groups:
            full = sfft.irfft2(sfft.rfft2(part, size) * spec, size)
            (ya, yb, yo), (xa, xb, xo) = yf, xf
            out[idx, ya:yb, xa:xb] = full[:, yo : yo + yb - ya, xo : xo + xb - xa]
        return out

    def _correlate_sum(self, plan: tuple, maps: NDArray) -> NDArray:
        _, (r0, r1, c0, c1), scalars, groups = plan
        out = np.zeros(maps.shape[1:], dtype=maps.dtype)
        for i, c in scalars:
            out += c * maps[i]
        for idx, size, _, flipped, (_, ya), (_, xa) in groups:
            (y0, y1, yo), (x0, x1, xo) = ya, xa
            window = maps[idx, y0:y1, x0:x1]
            spectrum = (sfft.rfft2(window, size) * flipped).sum(axis=0)
            full = sfft.irfft2(spectrum, size)
            out[r0:r1, c0:c1] += full[yo : yo + r1 - r0, xo : xo + c1 - c0]
        return out

    def forward(self, fine_fluence: NDArray, coarse_fluence: NDArray) -> tuple[NDArray, NDArray]:
        """(fine maps, coarse maps), each (n, ny, nx): the fluences convolved with the kernels."""
        return self._convolve(self._fine, fine_fluence), self._convolve(
            self._coarse, coarse_fluence
        )

    def adjoint(self, fine_maps: NDArray, coarse_maps: NDArray) -> tuple[NDArray, NDArray]:
        """Transpose of :meth:`forward`: (fine fluence, coarse fluence) gradients."""
        return self._correlate_sum(self._fine, fine_maps), self._correlate_sum(
            self._coarse, coarse_maps
        )
