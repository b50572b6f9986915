"""Lattice (SFRT) vertices: placement, constraint checks, valley, void spheres and ring.

One job per module:

- ``pattern``: the lattice patterns (HCP, FCC, simple and alternating cubic) and their cell;
- ``parameters``: :class:`LatticeParameters` and its checks;
- ``surface``: the surface model (distance from a point to a structure surface), sphere masks;
- ``constraints``: feasibility of vertex centres (GTV margin, OAR clearance);
- ``result``: :class:`LatticeSearch` and :class:`LatticeResult`;
- ``evaluation``: :func:`evaluate_vertices` for vertex lists made elsewhere;
- ``search``: :func:`place_vertices`, the offset and rotation search;
- ``volumes``: valley, void spheres and ring.
"""

from lattice_plan.geometry.lattice.evaluation import evaluate_vertices
from lattice_plan.geometry.lattice.parameters import DIAMETER_RANGE_MM, LatticeParameters
from lattice_plan.geometry.lattice.pattern import LatticePattern
from lattice_plan.geometry.lattice.result import LatticeResult, LatticeSearch
from lattice_plan.geometry.lattice.search import place_vertices, place_vertices_in
from lattice_plan.geometry.lattice.surface import sphere_mask
from lattice_plan.geometry.lattice.volumes import (
    VoidSpheres,
    ring_structure,
    valley_structure,
    void_spheres,
)

__all__ = [
    "DIAMETER_RANGE_MM",
    "LatticeParameters",
    "LatticePattern",
    "LatticeResult",
    "LatticeSearch",
    "VoidSpheres",
    "evaluate_vertices",
    "place_vertices",
    "place_vertices_in",
    "ring_structure",
    "sphere_mask",
    "valley_structure",
    "void_spheres",
]
