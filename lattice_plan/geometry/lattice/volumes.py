"""Volumes complementary to the vertices: the valley, void spheres between vertices and the ring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.lattice.evaluation import evaluate_vertices
from lattice_plan.geometry.lattice.parameters import LatticeParameters
from lattice_plan.geometry.lattice.result import LatticeResult
from lattice_plan.geometry.lattice.surface import sphere_mask
from lattice_plan.geometry.morphology import expand_mask, ring
from lattice_plan.geometry.structure import Structure, StructureKind


def valley_structure(
    gtv: Structure,
    vertices: LatticeResult | Structure,
    margin_mm: float = 5.0,
    name: str = "Valley",
) -> Structure:
    """GTV minus the vertices expanded by ``margin_mm`` (kind VALLEY)."""
    v = vertices.vertices if isinstance(vertices, LatticeResult) else vertices
    gtv.grid.require_same(v.grid, f"vertex structure {v.name!r}")
    grown = expand_mask(v.mask, v.grid.spacing_mm, margin_mm)
    mask = gtv.mask & ~grown
    if not mask.any():
        raise GeometryError(
            f"the valley of {gtv.name!r} is empty: the vertices expanded by {margin_mm:g} mm "
            "cover the GTV; use a smaller valley margin or fewer vertices"
        )
    return gtv.with_mask(mask, name, StructureKind.VALLEY)


@dataclass(frozen=True, eq=False)
class VoidSpheres:
    """Low-dose spheres between vertices: centres (n, 3 LPS mm), radius, merged structure."""

    centers_lps_mm: NDArray[np.float64]
    radius_mm: float
    structure: Structure


def void_spheres(
    result: LatticeResult,
    diameter_mm: float | None = None,
    name: str = "Voids",
) -> VoidSpheres:
    """Spheres at the midpoints of neighbouring vertices, inside the GTV shrunk by the margin.

    Neighbours are vertex pairs at most 1.01 lattice spacings apart. The default
    diameter leaves a gap of a quarter of the free distance to each vertex:
    (spacing - vertex diameter) / 2. Kind VALLEY.
    """
    p = result.params
    nn = p.min_center_distance_mm
    if diameter_mm is None:
        diameter_mm = (nn - p.diameter_mm) / 2.0
    if not diameter_mm > 0:
        raise GeometryError(f"void sphere diameter_mm must be positive, got {diameter_mm!r}")
    rv = diameter_mm / 2.0
    c = result.centers_lps_mm
    mids = []
    for a in range(len(c)):
        for b in range(a + 1, len(c)):
            if np.linalg.norm(c[a] - c[b]) <= 1.01 * nn:
                mids.append((c[a] + c[b]) / 2)
    grid = result.gtv.grid
    mask = np.zeros(grid.shape, dtype=bool)
    if not mids:
        raise GeometryError(
            "no two vertices are lattice neighbours, so there is no place between them for voids"
        )
    mids_arr = np.array(mids)
    vparams = LatticeParameters(
        diameter_mm=p.diameter_mm,
        spacing_mm=p.spacing_mm,
        gtv_margin_mm=p.gtv_margin_mm,
        oar_clearance_mm=0.0,
    )
    check = evaluate_vertices(mids_arr, diameter_mm, result.gtv, (), vparams)
    ok = check.gtv_clearance_mm >= p.gtv_margin_mm - 1e-9
    vdist = np.linalg.norm(check.centers_lps_mm[:, None] - c[None], axis=-1) - result.radii_mm
    ok &= vdist.min(axis=1) > rv
    centers = check.centers_lps_mm[ok]
    if len(centers) == 0:
        raise GeometryError(
            f"no void sphere of diameter {diameter_mm:g} mm fits between the vertices inside the "
            f"GTV shrunk by {p.gtv_margin_mm:g} mm; use a smaller void diameter"
        )
    for x in centers:
        mask |= sphere_mask(grid, x, rv)
    return VoidSpheres(centers, rv, Structure(name, mask, grid, StructureKind.VALLEY))


def ring_structure(
    gtv: Structure,
    inner_margin_mm: float = 5.0,
    outer_margin_mm: float = 20.0,
    body: Structure | None = None,
    name: str = "Ring",
) -> Structure:
    """Shell from ``inner_margin_mm`` to ``outer_margin_mm`` around the GTV (kind RING), inside ``body``."""
    shell = ring(gtv, inner_margin_mm, outer_margin_mm, name=name, kind=StructureKind.RING)
    if body is not None:
        gtv.grid.require_same(body.grid, f"body structure {body.name!r}")
        shell = shell.with_mask(shell.mask & body.mask)
    if shell.is_empty:
        raise GeometryError(f"the ring around {gtv.name!r} is empty (outside the body?)")
    return shell
