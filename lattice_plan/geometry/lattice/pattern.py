"""Lattice patterns (HCP, FCC, simple and alternating cubic) and their periodic cell.

A lattice is built from two in-plane generators and a layer distance along
patient z; odd layers are shifted in-plane (HCP, FCC, alternating cubic). The
cell also gives the fundamental domain of the translations, which the offset
search covers, and the rotation period about z.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import GeometryError

if TYPE_CHECKING:
    from lattice_plan.geometry.lattice.parameters import LatticeParameters


class LatticePattern(enum.Enum):
    """Arrangement of the vertex centres."""

    HCP = "hcp"
    FCC = "fcc"
    SIMPLE_CUBIC = "simple_cubic"
    ALTERNATING_CUBIC = "alternating_cubic"

    @classmethod
    def parse(cls, value: str | LatticePattern) -> LatticePattern:
        if isinstance(value, LatticePattern):
            return value
        key = str(value).strip().lower().replace("-", "_").replace(" ", "_")
        aliases = {"sc": "simple_cubic", "cubic": "simple_cubic", "bcc": "alternating_cubic"}
        try:
            return cls(aliases.get(key, key))
        except ValueError:
            raise GeometryError(
                f"unknown lattice pattern {value!r}; use one of "
                f"{', '.join(p.value for p in cls)} (aliases: sc, bcc)"
            ) from None


@dataclass(frozen=True)
class LatticeCell:
    """The periodic cell of one lattice as configured (mm, degrees)."""

    a1: NDArray[np.float64]  # in-plane generators (x, y)
    a2: NDArray[np.float64]
    layer_mm: float
    odd_shift: NDArray[np.float64]  # in-plane shift of odd layers
    domain_mm: tuple[float, float, float]  # fundamental domain of the translations (x, y, z)
    rotation_period_deg: float
    nearest_neighbour_mm: float


def lattice_cell(p: LatticeParameters) -> LatticeCell:
    """The cell of the lattice that ``p`` configures (pattern, spacing, scaling, layer distance)."""
    s, f = float(p.spacing_mm), float(p.lateral_spacing_factor)
    pat = LatticePattern.parse(p.pattern)
    if pat is LatticePattern.HCP:
        a = s * f
        a1, a2 = np.array([a, 0.0]), np.array([a / 2, a * math.sqrt(3) / 2])
        h = s * math.sqrt(2 / 3)
        shift = (a1 + a2) / 3
        period, n_layers, dom_y = 60.0, 2, a * math.sqrt(3) / 2
    else:
        base = 2 * s / math.sqrt(3) if pat is LatticePattern.ALTERNATING_CUBIC else s
        a = base * f
        a1, a2 = np.array([a, 0.0]), np.array([0.0, a])
        h = {
            LatticePattern.SIMPLE_CUBIC: s,
            LatticePattern.FCC: s / math.sqrt(2),
            LatticePattern.ALTERNATING_CUBIC: s / math.sqrt(3),
        }[pat]
        shift = np.zeros(2) if pat is LatticePattern.SIMPLE_CUBIC else np.array([a / 2, a / 2])
        period, n_layers, dom_y = 90.0, 1, a
    if p.si_spacing_mm is not None:
        h = float(p.si_spacing_mm)
    # Nearest neighbour of the site at the origin (all sites are equivalent by symmetry).
    pts = points_in_ball(a1, a2, h, shift, 3.0 * max(np.linalg.norm(a1), h) + 1.0)
    r = np.linalg.norm(pts, axis=1)
    nn = float(r[r > 1e-9].min())
    return LatticeCell(a1, a2, h, shift, (float(a1[0]), float(dom_y), n_layers * h), period, nn)


def points_in_ball(
    a1: NDArray[np.float64],
    a2: NDArray[np.float64],
    h: float,
    shift: NDArray[np.float64],
    radius_mm: float,
) -> NDArray[np.float64]:
    """Lattice points (n, 3) within ``radius_mm`` of the origin (a site of an even layer)."""
    row = min(abs(a2[1]), abs(a1[0]))
    n_ij = math.ceil(radius_mm / row) + 2
    n_k = math.ceil(radius_mm / h) + 1
    i, j, k = np.meshgrid(
        np.arange(-2 * n_ij, 2 * n_ij + 1),
        np.arange(-n_ij, n_ij + 1),
        np.arange(-n_k, n_k + 1),
        indexing="ij",
    )
    i, j, k = i.ravel(), j.ravel(), k.ravel()
    xy = i[:, None] * a1 + j[:, None] * a2 + (k % 2)[:, None] * shift
    pts = np.column_stack([xy, k * h])
    return pts[np.linalg.norm(pts, axis=1) <= radius_mm]
