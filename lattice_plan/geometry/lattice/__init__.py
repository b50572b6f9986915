"""Lattice (SFRT) vertices: placement, constraint checks, valley, void spheres and ring."""

from lattice_plan.geometry.lattice.search import (
    DIAMETER_RANGE_MM,
    LatticeParameters,
    LatticePattern,
    LatticeResult,
    LatticeSearch,
    VoidSpheres,
    evaluate_vertices,
    place_vertices,
    place_vertices_in,
    ring_structure,
    sphere_mask,
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
