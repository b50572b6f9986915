"""Each beam's fluence map (or open aperture) in the beam's-eye view at the isocentre plane.

Coordinates are the beam-limiting-device frame projected to the isocentre
(X_b along the jaw X / leaf travel direction, Y_b across the leaves), mm, as
in :mod:`lattice_plan.dose.beam`. The jaws are outlined; a beam without a
fluence map shows its aperture (jaws and MLC) as 1 = open.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam
from lattice_plan.errors import DoseError

APERTURE_PIXEL_MM = 1.0


def aperture_raster(
    beam: Beam, x_mm: NDArray[np.float64], y_mm: NDArray[np.float64]
) -> NDArray[np.float64]:
    """1 where the jaws (and MLC, if any) are open at points (y_mm[r], x_mm[c]), else 0.

    Ignores transmission and penumbra: it is the geometric aperture at the isocentre.
    """
    X, Y = np.meshgrid(np.asarray(x_mm, float), np.asarray(y_mm, float))
    j = beam.jaws
    # Half-open intervals, so a closed leaf pair (x1 == x2) leaves no open line.
    inside = (X >= j.x1_mm) & (X < j.x2_mm) & (Y >= j.y1_mm) & (Y < j.y2_mm)
    if beam.mlc is not None:
        edges = beam.mlc.leaf_edges_mm
        pair = np.searchsorted(edges, Y, side="right") - 1
        valid = (pair >= 0) & (pair < beam.mlc.n_pairs)
        p = np.clip(pair, 0, beam.mlc.n_pairs - 1)
        inside &= valid & (X >= beam.mlc.bank_x1_mm[p]) & (X < beam.mlc.bank_x2_mm[p])
    return inside.astype(float)


def _map_of(beam: Beam) -> tuple[NDArray, list[float], bool]:
    """The image to show, its extent [x0, x1, y0, y1] (mm) and whether it is a fluence map."""
    if beam.fluence is not None:
        f = beam.fluence
        xs, ys, b = f.x_centers_mm(), f.y_centers_mm(), f.beamlet_mm
        extent = [xs[0] - b / 2, xs[-1] + b / 2, ys[0] - b / 2, ys[-1] + b / 2]
        return np.asarray(f.values), extent, True
    j = beam.jaws
    pad = 10.0
    h = APERTURE_PIXEL_MM / 2  # pixel centres half a pixel inside the edges
    xs = np.arange(j.x1_mm - pad + h, j.x2_mm + pad, APERTURE_PIXEL_MM)
    ys = np.arange(j.y1_mm - pad + h, j.y2_mm + pad, APERTURE_PIXEL_MM)
    return aperture_raster(beam, xs, ys), [xs[0] - h, xs[-1] + h, ys[0] - h, ys[-1] + h], False


def fluence_maps(beams: Sequence[Beam], ncols: int | None = None, title: str = "") -> Figure:
    """One panel per beam: relative fluence (1 = open) on a common colour scale, jaws outlined.

    Titles give the beam's name, gantry/collimator/couch angles (degrees) and MU.
    """
    beams = list(beams)
    if not beams:
        raise DoseError("fluence_maps needs at least one beam")
    n = len(beams)
    ncols = min(n, 4) if ncols is None else int(ncols)
    if ncols < 1:
        raise DoseError(f"ncols must be at least 1, got {ncols}")
    nrows = int(np.ceil(n / ncols))
    maps = [_map_of(b) for b in beams]
    vmax = max(float(m.max()) for m, _, _ in maps)
    vmax = vmax if vmax > 0 else 1.0
    fig = Figure(figsize=(3.6 * ncols + 1.2, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for idx, ax in enumerate(axes.ravel()):
        if idx >= n:
            ax.set_axis_off()
            continue
        beam = beams[idx]
        values, extent, is_fluence = maps[idx]
        image = ax.imshow(
            values,
            origin="lower",  # row index runs along +Y_b
            extent=extent,
            cmap="viridis",
            vmin=0.0,
            vmax=vmax,
            interpolation="nearest",
        )
        j = beam.jaws
        ax.add_patch(
            Rectangle(
                (j.x1_mm, j.y1_mm),
                j.x2_mm - j.x1_mm,
                j.y2_mm - j.y1_mm,
                fill=False,
                edgecolor="white",
                linestyle="--",
                linewidth=1.0,
            )
        )
        if is_fluence and beam.mlc is not None:
            xs = np.linspace(extent[0], extent[1], 400)
            ys = np.linspace(extent[2], extent[3], 400)
            ax.contour(
                xs, ys, aperture_raster(beam, xs, ys), levels=[0.5], colors="red", linewidths=0.8
            )
        kind = "fluence" if is_fluence else "open aperture"
        ax.set_title(
            f"{beam.name} ({kind})\nG{beam.gantry_deg:.0f}° C{beam.collimator_deg:.0f}° "
            f"T{beam.couch_deg:.0f}°, {beam.mu:.0f} MU",
            fontsize=9,
        )
        ax.set_xlabel("X_b at isocentre (mm)")
        ax.set_ylabel("Y_b at isocentre (mm)")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="relative fluence (1 = open)")
    handles = [Line2D([], [], color="white", linestyle="--", label="jaws")]
    if any(b.mlc is not None and b.fluence is not None for b in beams):
        handles.append(Line2D([], [], color="red", label="MLC aperture"))
    legend = fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    legend.get_frame().set_facecolor("0.6")
    if title:
        fig.suptitle(title)
    return fig
