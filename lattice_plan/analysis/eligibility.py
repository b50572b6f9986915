"""The trial's eligibility of a tumour by its size: the shortest diameter of the GTV."""

from __future__ import annotations

from lattice_plan.geometry.shape import Diameters

#: The trial admits a soft-tissue mass whose shortest diameter exceeds this (mm).
ELIGIBLE_SHORTEST_DIAMETER_MM = 30.0


def is_eligible(d: Diameters) -> bool:
    """Whether a mass of diameters ``d`` is eligible: its shortest diameter (RECIST short axis
    on axial CT) exceeds :data:`ELIGIBLE_SHORTEST_DIAMETER_MM`."""
    return bool(d.shortest_diameter_mm() > ELIGIBLE_SHORTEST_DIAMETER_MM)
