"""Grids, frames, structures, margins, shape measures; lattice and SCART volumes."""

from lattice_plan.geometry.grid import Grid
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
from lattice_plan.geometry.shape import Diameters, diameters
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume, resample_array

__all__ = [
    "Diameters",
    "Grid",
    "Patient",
    "Structure",
    "StructureKind",
    "StructureSet",
    "Volume",
    "connected_components",
    "contract",
    "diameters",
    "expand",
    "intersection",
    "resample_array",
    "ring",
    "subtract",
    "union",
]
