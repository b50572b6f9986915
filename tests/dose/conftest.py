"""Shared helpers of the dose tests."""

from __future__ import annotations

import numpy as np

from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import Structure
from lattice_plan.geometry.volume import Volume


def water_cube(half_mm: float, spacing_mm: float) -> tuple[Volume, Structure]:
    """CT of a water cube (0 HU) spanning +/- half_mm on an isotropic grid, and a Body covering it."""
    n = round(2 * half_mm / spacing_mm) + 1
    grid = Grid((n, n, n), (spacing_mm,) * 3, (-half_mm,) * 3)
    body = Structure("Body", np.ones(grid.shape, dtype=bool), grid, "EXTERNAL")
    return Volume(np.zeros(grid.shape, dtype=np.int16), grid, "HU"), body
