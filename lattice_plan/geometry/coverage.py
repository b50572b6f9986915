"""The part of a structure that dose grids cover."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import Structure


def part_within(structure: Structure, grids: Sequence[Grid]) -> Structure:
    """The part of ``structure`` whose voxel centres every grid in ``grids`` covers.

    The engine's dose grid ends at the body's outer voxel centres on its own
    pitch, so organs running the length of the scan lose a thin slab at the
    ends; DVHs are taken over the covered part. Returns ``structure`` itself
    when every voxel centre is covered.
    """
    k, j, i = np.nonzero(structure.mask)
    pts = structure.grid.points_lps_mm(np.stack([i, j, k], axis=1).astype(float))
    inside = np.ones(len(pts), dtype=bool)
    for grid in grids:
        inside &= grid.contains_lps(pts, margin_voxels=0.0)
    if inside.all():
        return structure
    mask = np.zeros(structure.grid.shape, dtype=bool)
    mask[k[inside], j[inside], i[inside]] = True
    return structure.with_mask(mask, keep_slice_span=True)
