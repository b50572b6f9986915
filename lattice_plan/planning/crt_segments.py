"""Field-in-field segments: a CRT field's MLC closed over the region it should spare.

A segment is a second static beam at its field's gantry angle with the same
jaws and an MLC that blocks the beam's-eye-view projection of a region (the
voxels above the hot-spot level, or an organ's voxels above its dose limit).
Leaves travel along X_b, so a leaf pair cannot open a hole: in each leaf pair
the side of the region whose closing blocks less of the open field closes up
to the region's far edge. The open field and its segments are delivered one
after the other, each with its own MU, as any RTPLAN reader handles.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import MLC, Beam
from lattice_plan.geometry.structure import Structure
from lattice_plan.planning.apertures import project_structure

# A segment must keep at least this share of its field's open area, and close at least
# this share of it: smaller apertures are too small to model or deliver reliably (a few MU
# through a sliver), and a segment that closes less is its own open field.
MIN_OPEN_FRACTION = 0.2
MIN_CLOSED_FRACTION = 0.03
_PIXEL_MM = 2.0  # at the isocentre: fine enough for 5 mm leaves


def _open_length_mm(mlc: MLC) -> NDArray[np.float64]:
    return np.maximum(mlc.bank_x2_mm - mlc.bank_x1_mm, 0.0)


def segment_beam(field: Beam, region: Structure, name: str) -> Beam | None:
    """``field`` with its MLC closed over ``region``'s projection, or None when that segment
    would close too little or too much of the field (see MIN_OPEN_FRACTION)."""
    if field.mlc is None or region.is_empty:
        return None
    proj = project_structure(
        region,
        field.isocenter_lps_mm,
        field.gantry_deg,
        collimator_deg=field.collimator_deg,
        couch_deg=field.couch_deg,
        sad_mm=field.sad_mm,
        pixel_mm=_PIXEL_MM,
    )
    mlc = field.mlc
    edges = mlc.leaf_edges_mm
    x1, x2 = mlc.bank_x1_mm.copy(), mlc.bank_x2_mm.copy()
    xs, ys, h = proj.x_centers_mm(), proj.y_centers_mm(), proj.pixel_mm / 2
    for n in range(mlc.n_pairs):
        if x2[n] <= x1[n]:
            continue
        rows = (ys + h > edges[n]) & (ys - h < edges[n + 1])
        if not rows.any():
            continue
        cols = np.flatnonzero(proj.mask[rows].any(axis=0))
        if cols.size == 0:
            continue
        a = max(float(xs[cols[0]] - h), x1[n])
        b = min(float(xs[cols[-1]] + h), x2[n])
        if b <= a:
            continue
        if b - x1[n] <= x2[n] - a:  # close bank B (the -X side) up to the region's far edge
            x1[n] = b
        else:
            x2[n] = a
        if x2[n] <= x1[n]:
            x1[n] = x2[n] = min(max(a, mlc.bank_x1_mm[n]), mlc.bank_x2_mm[n])
    before = float(np.sum(_open_length_mm(mlc) * np.diff(edges)))
    after = float(np.sum(np.maximum(x2 - x1, 0.0) * np.diff(edges)))
    if after < MIN_OPEN_FRACTION * before or after > (1 - MIN_CLOSED_FRACTION) * before:
        return None
    return replace(
        field,
        name=name,
        mlc=MLC(edges, x1, x2),
        extra={**field.extra, "segment_of": field.name, "aperture_area_mm2": after},
    )
