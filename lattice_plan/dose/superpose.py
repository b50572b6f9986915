"""Superposition of one beam: fluence maps at the isocentre plane, convolved, gathered at points.

The beam's fluence (aperture or beamlet map, times the in-air off-axis
ratio) is painted on a fine and a coarse map grid (:func:`map_grids`),
convolved by FFT with each lateral kernel of the beam model
(:class:`~lattice_plan.dose.map_convolution.MapConvolver`), and each point
takes the convolved maps at its projection, weighted by the component's
depth function at its radiological depth and by the inverse square
(:func:`gather`, :mod:`lattice_plan.kernels.superposition`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.fluence import MapGrid, beam_fluence, field_bounds_mm
from lattice_plan.dose.map_convolution import MapConvolver, support_of
from lattice_plan.dose.model import BeamModel
from lattice_plan.dose.point_geometry import PointGeometry
from lattice_plan.kernels.superposition import gather_beam


def map_grids(beam: Beam, geom: PointGeometry, model: BeamModel) -> tuple[MapGrid, MapGrid]:
    """(fine, coarse) fluence grids: field plus each kernel's reach, within reach of the points."""
    flo, fhi = field_bounds_mm(beam)
    grids = []
    widest = max(k.shape[0] for k in model.map_kernels(geom.scales).fine)
    fine_reach = (widest // 2 + 2) * model.fine_mm
    for reach, h in ((fine_reach, model.fine_mm), (model.kernel_radius_mm, model.coarse_mm)):
        lo = np.array(flo) - reach
        hi = np.array(fhi) + reach
        if len(geom.u_mm):
            # a point takes fluence from up to the kernel reach around its projection
            lo = np.maximum(lo, [float(geom.u_mm.min()) - reach, float(geom.v_mm.min()) - reach])
            hi = np.minimum(hi, [float(geom.u_mm.max()) + reach, float(geom.v_mm.max()) + reach])
        hi = np.maximum(hi, lo)
        grids.append(MapGrid.covering(tuple(lo), tuple(hi), h))
    return grids[0], grids[1]


def gather(
    fine: NDArray,
    coarse: NDArray,
    fine_grid: MapGrid,
    coarse_grid: MapGrid,
    conv: MapConvolver,
    geom: PointGeometry,
    sel: NDArray[np.int64],
    scale: float,
    out: NDArray,
) -> None:
    """Add ``scale`` times the convolved maps' dose at points ``sel`` of ``geom`` to ``out``."""
    fine_layout, coarse_layout = conv.layouts(fine_grid, coarse_grid)
    gather_beam(
        fine, *fine_layout, coarse, *coarse_layout, *geom.kernel_args(), sel, float(scale), out
    )


def add_beam_dose(
    beam: Beam,
    geom: PointGeometry,
    sel: NDArray[np.int64],
    out: NDArray,
    model: BeamModel,
) -> None:
    """Add the beam's dose (Gy, for its MU) at points ``sel`` of ``geom`` to ``out``.

    ``geom`` must hold ``model``'s depth weights.
    """
    if beam.mu == 0:
        return
    fine_grid, coarse_grid = map_grids(beam, geom, model)
    fluences = (beam_fluence(beam, model, fine_grid), beam_fluence(beam, model, coarse_grid))
    supports = (support_of(fluences[0]), support_of(fluences[1]))
    conv = MapConvolver(model.map_kernels(geom.scales), fine_grid, coarse_grid, supports=supports)
    fine, coarse = conv.forward(*fluences)
    gather(fine, coarse, fine_grid, coarse_grid, conv, geom, sel, beam.mu * model.gy_per_mu, out)
