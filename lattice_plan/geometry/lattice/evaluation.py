"""Vertex spheres given by centre and diameter, measured against the placement constraints."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.lattice.constraints import check_gtv_and_oars
from lattice_plan.geometry.lattice.parameters import LatticeParameters
from lattice_plan.geometry.lattice.result import LatticeResult, LatticeSearch
from lattice_plan.geometry.lattice.surface import sphere_mask, structure_surface
from lattice_plan.geometry.morphology import contract_mask
from lattice_plan.geometry.structure import Structure, StructureKind

logger = logging.getLogger(__name__)


def _oar_distances(
    oars: Sequence[Structure], centers: NDArray[np.float64]
) -> dict[str, NDArray[np.float64]]:
    out = {}
    for s in oars:
        if s.is_empty:
            logger.warning("OAR %r is empty; it constrains no vertex", s.name)
            out[s.name] = np.full(len(centers), np.inf)
            continue
        dist = structure_surface(s, inside_of=True)
        out[s.name] = dist(centers) if len(centers) else np.zeros(0)
    return out


def evaluate_vertices(
    centers_lps_mm: ArrayLike,
    diameters_mm: ArrayLike | float,
    gtv: Structure,
    oars: Sequence[Structure] = (),
    params: LatticeParameters | None = None,
    search: LatticeSearch | None = None,
) -> LatticeResult:
    """Vertex spheres given by centre (n, 3 LPS mm) and diameter, measured against the constraints.

    Use it for a vertex list made elsewhere (see ``lattice_plan.io.vertex_table``);
    ``violations()`` of the result lists what breaks ``params``.
    """
    params = params or LatticeParameters()
    oars = check_gtv_and_oars(gtv, oars)
    gtv.require_nonempty("vertex evaluation")
    centers = np.array(centers_lps_mm, dtype=float).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(diameters_mm, dtype=float), (len(centers),)) / 2.0
    if not np.all(np.isfinite(centers)) or np.any(~np.isfinite(radii)) or np.any(radii <= 0):
        raise GeometryError("vertex centres must be finite and diameters positive (mm)")
    order = np.lexsort((centers[:, 0], centers[:, 1], centers[:, 2]))
    centers, radii = centers[order], np.array(radii[order])
    grid = gtv.grid
    gtv_dist = structure_surface(gtv, inside_of=False)
    gtv_clear = gtv_dist(centers) - radii if len(centers) else np.zeros(0)
    oar_clear = {k: v - radii for k, v in _oar_distances(oars, centers).items()}
    crop_mask = None
    merged = np.zeros(grid.shape, dtype=bool)
    for c, r in zip(centers, radii, strict=True):
        merged |= sphere_mask(grid, c, float(r))
    if not params.whole_spheres_only:
        crop_mask = contract_mask(gtv.mask, grid.spacing_mm, params.gtv_margin_mm)
        merged &= crop_mask
    vertices = Structure("Vertices", merged, grid, StructureKind.VERTEX)
    return LatticeResult(
        centers, radii, gtv, params, gtv_clear, oar_clear, vertices, search, crop_mask
    )
