"""The beamlet layout of fluence-map beams: one (ny, nx) map per beam, concatenated row-major.

Shared by the beams that carry the maps (:mod:`lattice_plan.planning.beams`) and
the optimiser that works on the concatenated vector, so neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from lattice_plan.errors import PlanningError

__all__ = ["FluenceLayout"]


@dataclass(frozen=True)
class FluenceLayout:
    """How the beamlet vector splits into per-beam maps: one (ny, nx) shape per beam."""

    map_shapes: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        shapes = tuple((int(s[0]), int(s[1])) for s in self.map_shapes)
        if not shapes:
            raise PlanningError("the fluence layout needs at least one beam (zero beams given)")
        if any(ny < 1 or nx < 1 for ny, nx in shapes):
            raise PlanningError(f"every fluence map needs at least one beamlet, got {shapes}")
        object.__setattr__(self, "map_shapes", shapes)

    @property
    def n_beamlets(self) -> int:
        return sum(ny * nx for ny, nx in self.map_shapes)

    @property
    def offsets(self) -> NDArray[np.int64]:
        """Start of each beam's weights in the concatenated vector (n_beams + 1,)."""
        return np.concatenate([[0], np.cumsum([ny * nx for ny, nx in self.map_shapes])])

    def split(self, x: ArrayLike) -> list[NDArray[np.float64]]:
        """The per-beam maps [ny, nx] of a concatenated weight vector."""
        x = np.asarray(x, dtype=float)
        off = self.offsets
        return [x[off[b] : off[b + 1]].reshape(shape) for b, shape in enumerate(self.map_shapes)]

    def difference_matrix(self) -> sparse.csr_array:
        """Sparse D with one row per pair of neighbouring beamlets: (Dx)_r = x_a - x_b."""
        rows = []
        off = self.offsets
        for b, (ny, nx) in enumerate(self.map_shapes):
            idx = off[b] + np.arange(ny * nx).reshape(ny, nx)
            rows.append(np.stack([idx[:, 1:].ravel(), idx[:, :-1].ravel()], axis=1))
            rows.append(np.stack([idx[1:, :].ravel(), idx[:-1, :].ravel()], axis=1))
        pairs = np.concatenate(rows) if rows else np.zeros((0, 2), dtype=int)
        n = len(pairs)
        data = np.tile([1.0, -1.0], n)
        r = np.repeat(np.arange(n), 2)
        return sparse.csr_array((data, (r, pairs.ravel())), shape=(n, self.n_beamlets))
