"""Grids, frames, structures, margins, shape measures; lattice and SCART volumes."""

from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.lattice import (
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
from lattice_plan.geometry.morphology import (
    connected_components,
    contract,
    expand,
    intersection,
    ring,
    subtract,
    union,
)
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.scart import scart_core
from lattice_plan.geometry.shape import Diameters, diameters
from lattice_plan.geometry.structure import (
    DVH_KINDS,
    TARGET_KINDS,
    Structure,
    StructureKind,
    StructureSet,
)
from lattice_plan.geometry.volume import Volume, resample_array

__all__ = [
    "DVH_KINDS",
    "TARGET_KINDS",
    "Diameters",
    "Grid",
    "LatticeParameters",
    "LatticePattern",
    "LatticeResult",
    "LatticeSearch",
    "Patient",
    "Structure",
    "StructureKind",
    "StructureSet",
    "VoidSpheres",
    "Volume",
    "connected_components",
    "contract",
    "diameters",
    "evaluate_vertices",
    "expand",
    "intersection",
    "place_vertices",
    "place_vertices_in",
    "resample_array",
    "ring",
    "ring_structure",
    "scart_core",
    "sphere_mask",
    "subtract",
    "union",
    "valley_structure",
    "void_spheres",
]
