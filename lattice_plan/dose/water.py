"""Water-tank scans of a beam model, computed by the same engine as patient dose.

The phantom is a water box (HU 0) with its surface at the requested SSD,
irradiated by a gantry-0 beam on a head-first-supine "patient": the beam axis
runs along +y (LPS), crossplane is X_b (LPS x) and inplane is Y_b (LPS z).
Every function returns Gy per MU (output factors: relative to 10 x 10 cm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.cache import BoundedCache
from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DoseError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.volume import Volume

_DEPTH_STEP_MM = 1.0
_LATERAL_STEP_MM = 10.0
AXES = ("crossplane", "inplane")


def water_phantom(
    ssd_mm: float, max_depth_mm: float, half_width_mm: float, sad_mm: float = 1000.0
) -> Volume:
    """A water box (HU 0) under air for a gantry-0 beam with isocentre at LPS (0, 0, 0).

    The surface lies at y = ssd - sad, halfway between an air voxel centre and
    a water voxel centre, so trilinear sampling puts the density step exactly
    at the surface. The box reaches from above the isocentre (when the SSD
    exceeds the SAD) to ``max_depth_mm`` and +/- ``half_width_mm`` laterally.
    """
    y_surface = ssd_mm - sad_mm
    dy = _DEPTH_STEP_MM
    n_air = max(1, math.ceil(y_surface / dy + 0.5))
    y0 = y_surface - (n_air - 0.5) * dy
    ny = n_air + math.ceil(max(max_depth_mm, -y_surface) / dy) + 2
    nx = 2 * math.ceil(half_width_mm / _LATERAL_STEP_MM) + 1
    x0 = -(nx // 2) * _LATERAL_STEP_MM
    grid = Grid(
        (nx, ny, nx), (_LATERAL_STEP_MM, dy, _LATERAL_STEP_MM), (x0, y0, x0), patient_position="HFS"
    )
    hu = np.zeros(grid.shape, dtype=np.int16)
    hu[:, :n_air, :] = -1000
    return Volume(hu, grid, "HU")


# Water-phantom engines by (model, SSD, depth, half width): fits ask for the same few many times.
_ENGINES: BoundedCache[DoseEngine] = BoundedCache(max_entries=16)


def _engine(
    model: BeamModel, ssd_mm: float, max_depth_mm: float, half_width_mm: float
) -> DoseEngine:
    key = (model, ssd_mm, max_depth_mm, half_width_mm)
    engine = _ENGINES.get(key)
    if engine is None:
        ct = water_phantom(ssd_mm, max_depth_mm, half_width_mm, model.sad_mm)
        engine = DoseEngine(ct, None, model, dose_spacing_mm=_LATERAL_STEP_MM)
        _ENGINES.put(key, engine)
    return engine


def _field_beam(field_mm: Sequence[float], center_mm: Sequence[float], model: BeamModel) -> Beam:
    fx, fy = (float(f) for f in field_mm)
    cx, cy = (float(c) for c in center_mm)
    if not (fx > 0 and fy > 0):
        raise DoseError(f"field_mm must be two positive sizes (x, y) in mm, got {tuple(field_mm)}")
    jaws = Jaws(cx - fx / 2, cx + fx / 2, cy - fy / 2, cy + fy / 2)
    return Beam("water", 0.0, (0.0, 0.0, 0.0), jaws, mu=1.0, sad_mm=model.sad_mm)


def _bld_to_lps(
    x_b: NDArray, y_b: NDArray, depth_mm: NDArray, ssd_mm: float, sad_mm: float
) -> NDArray:
    # HFS, gantry 0: X_b = x, Y_b = z, Z_b = -y; the point at depth d lies at s = ssd + d.
    y = ssd_mm + depth_mm - sad_mm
    return np.stack(np.broadcast_arrays(x_b, y, y_b), axis=-1).astype(float)


def _model(model: BeamModel | None) -> BeamModel:
    return BeamModel.load_default() if model is None else model


def _check_ssd(ssd_mm: float, sad_mm: float) -> None:
    if not (math.isfinite(ssd_mm) and 0.3 * sad_mm <= ssd_mm <= 2.0 * sad_mm):
        raise DoseError(
            f"ssd_mm must lie within {0.3 * sad_mm:.0f}-{2 * sad_mm:.0f} mm, got {ssd_mm}"
        )


def pdd(
    field_mm: Sequence[float],
    ssd_mm: float = 1000.0,
    depths_mm: ArrayLike = (15.0, 50.0, 100.0, 200.0),
    center_mm: Sequence[float] = (0.0, 0.0),
    model: BeamModel | None = None,
) -> NDArray[np.float64]:
    """Dose per MU (Gy/MU) along the ray through the field centre at the given depths (mm)."""
    m = _model(model)
    _check_ssd(ssd_mm, m.sad_mm)
    d = np.asarray(depths_mm, dtype=float).ravel()
    if d.size == 0 or np.any(d < 0) or np.any(d > 500) or not np.all(np.isfinite(d)):
        raise DoseError("depths_mm must be finite values within 0-500 mm")
    beam = _field_beam(field_mm, center_mm, m)
    mag = (ssd_mm + d) / m.sad_mm
    pts = _bld_to_lps(center_mm[0] * mag, center_mm[1] * mag, d, ssd_mm, m.sad_mm)
    half = float(np.abs(pts[:, [0, 2]]).max()) + 3 * _LATERAL_STEP_MM
    eng = _engine(m, float(ssd_mm), float(d.max()) + 5.0, half)
    return eng.point_dose([beam], pts)


def profile(
    field_mm: Sequence[float],
    ssd_mm: float,
    depth_mm: float,
    positions_mm: ArrayLike,
    axis: str = "crossplane",
    center_mm: Sequence[float] = (0.0, 0.0),
    model: BeamModel | None = None,
) -> NDArray[np.float64]:
    """Dose per MU (Gy/MU) at ``positions_mm`` (from the beam axis, at depth) along ``axis``.

    The scan line passes through the field centre: its other coordinate is the
    field centre projected to the depth.
    """
    if axis not in AXES:
        raise DoseError(f"axis must be one of {AXES}, got {axis!r}")
    m = _model(model)
    _check_ssd(ssd_mm, m.sad_mm)
    if not (math.isfinite(depth_mm) and 0 <= depth_mm <= 500):
        raise DoseError(f"depth_mm must lie within 0-500 mm, got {depth_mm}")
    pos = np.asarray(positions_mm, dtype=float).ravel()
    if pos.size == 0 or not np.all(np.isfinite(pos)) or np.any(np.abs(pos) > 400):
        raise DoseError("positions_mm must be finite values within +/-400 mm")
    beam = _field_beam(field_mm, center_mm, m)
    mag = (ssd_mm + depth_mm) / m.sad_mm
    if axis == "crossplane":
        x_b, y_b = pos, np.full_like(pos, center_mm[1] * mag)
    else:
        x_b, y_b = np.full_like(pos, center_mm[0] * mag), pos
    pts = _bld_to_lps(x_b, y_b, np.full_like(pos, depth_mm), ssd_mm, m.sad_mm)
    half = float(np.abs(pts[:, [0, 2]]).max()) + 3 * _LATERAL_STEP_MM
    eng = _engine(m, float(ssd_mm), float(depth_mm) + 5.0, half)
    return eng.point_dose([beam], pts)


def output_factor(
    field_mm: Sequence[float],
    ssd_mm: float = 900.0,
    depth_mm: float = 100.0,
    model: BeamModel | None = None,
) -> float:
    """Total scatter factor: central-axis dose of the field over that of 10 x 10 cm, same setup."""
    m = _model(model)
    num = pdd(field_mm, ssd_mm, [depth_mm], model=m)[0]
    ref = pdd((100.0, 100.0), ssd_mm, [depth_mm], model=m)[0]
    return float(num / ref)
