"""Beam's-eye-view projection of a structure and the conformal MLC/jaw aperture made from it.

The projection is divergent: a point of the structure is seen from the source
(at ``(0, 0, SAD)`` in the beam-limiting-device frame, see
:mod:`lattice_plan.geometry.iec`) and drawn where its ray crosses the
isocentre plane, so a point at height ``z_b`` towards the source appears
magnified by ``SAD / (SAD - z_b)``.

It is computed by casting one ray from the source through the centre of every
pixel of a fine raster on the isocentre plane (default 0.5 mm) and sampling the
structure's voxels (nearest voxel, i.e. the union of the voxel boxes) along it
at a quarter of the smallest voxel pitch. A pixel belongs to the projection
when its ray meets the structure. The raster is a map ``[ny, nx]`` whose rows
run along +Y_b and columns along +X_b, with pixel edges on multiples of the
pixel size so that 5 mm leaf boundaries fall on pixel edges.

A penumbra margin is added in the isocentre plane (2D Euclidean distance), and
each MLC leaf pair is opened over the union of the (expanded) projection
within its width: from the leftmost to the rightmost projected point of every
pixel row that the leaf covers. The jaws are set to the extent of the open
leaves (X) and of the projection (Y).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from lattice_plan.dose.beam import (
    DEFAULT_LEAF_WIDTH_MM,
    DEFAULT_N_LEAF_PAIRS,
    DEFAULT_SAD_MM,
    MLC,
    Beam,
    Jaws,
)
from lattice_plan.errors import PlanningError
from lattice_plan.geometry.iec import T_bld_from_lps
from lattice_plan.geometry.structure import Structure

log = logging.getLogger(__name__)

DEFAULT_PIXEL_MM = 0.5
JAW_LIMIT_MM = 200.0  # Jaws accept positions within +/-200 mm of the axis (dose.beam.Jaws)

# Rays are sampled every quarter of the smallest voxel pitch: a voxel box can then be
# missed only where the ray crosses a corner of it over less than that length.
_RAY_STEP_FRACTION = 0.25
# Expansion in the raster: a pixel centre lies on average a quarter pixel inside the
# boundary it represents, so the distance threshold is widened by that much.
_EXPANSION_SURFACE_OFFSET = 0.25
# Rays handled per block, bounding the temporary arrays to a few tens of MB.
_RAYS_PER_BLOCK = 65536


@dataclass(frozen=True, eq=False)
class BevProjection:
    """A structure's divergent projection onto the isocentre plane of one beam.

    mask: [ny, nx] bool, row index along +Y_b, column index along +X_b.
    pixel_mm: pixel edge length at the isocentre plane.
    origin_bld_mm: (x, y) of the centre of pixel [0, 0] in the BLD frame, mm.
    structure_name: what was projected (with its margin, if any).
    margin_mm: the penumbra margin already added to the projection, mm.
    """

    mask: NDArray[np.bool_]
    pixel_mm: float
    origin_bld_mm: tuple[float, float]
    structure_name: str
    margin_mm: float = 0.0

    def __post_init__(self) -> None:
        mask = np.array(self.mask, dtype=bool)
        if mask.ndim != 2 or mask.size == 0:
            raise PlanningError(
                f"BEV projection of {self.structure_name!r}: mask must be a non-empty 2D array, "
                f"got shape {mask.shape}"
            )
        if not (np.isfinite(self.pixel_mm) and self.pixel_mm > 0):
            raise PlanningError(f"BEV projection pixel_mm must be positive, got {self.pixel_mm!r}")
        mask.setflags(write=False)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(
            self, "origin_bld_mm", (float(self.origin_bld_mm[0]), float(self.origin_bld_mm[1]))
        )

    @property
    def is_empty(self) -> bool:
        return not bool(self.mask.any())

    @property
    def area_mm2(self) -> float:
        """Area of the projection at the isocentre plane, mm^2."""
        return float(self.mask.sum()) * self.pixel_mm**2

    def x_centers_mm(self) -> NDArray[np.float64]:
        return self.origin_bld_mm[0] + self.pixel_mm * np.arange(self.mask.shape[1])

    def y_centers_mm(self) -> NDArray[np.float64]:
        return self.origin_bld_mm[1] + self.pixel_mm * np.arange(self.mask.shape[0])

    def extent_mm(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the projected pixels' outer edges, mm."""
        if self.is_empty:
            raise PlanningError(f"the BEV projection of {self.structure_name!r} is empty")
        rows = np.nonzero(self.mask.any(axis=1))[0]
        cols = np.nonzero(self.mask.any(axis=0))[0]
        x, y, h = self.x_centers_mm(), self.y_centers_mm(), self.pixel_mm / 2
        return (
            float(x[cols[0]] - h),
            float(x[cols[-1]] + h),
            float(y[rows[0]] - h),
            float(y[rows[-1]] + h),
        )

    def expanded(self, margin_mm: float) -> BevProjection:
        """The projection grown by ``margin_mm`` (>= 0) in the isocentre plane (2D Euclidean)."""
        m = float(margin_mm)
        if not np.isfinite(m) or m < 0:
            raise PlanningError(
                f"the penumbra margin must be a non-negative distance in mm, got {margin_mm!r}"
            )
        if m == 0 or self.is_empty:
            return self
        pad = int(np.ceil(m / self.pixel_mm)) + 2
        padded = np.pad(self.mask, pad)
        dist = ndimage.distance_transform_edt(~padded, sampling=self.pixel_mm)
        grown = dist <= m + _EXPANSION_SURFACE_OFFSET * self.pixel_mm
        origin = (
            self.origin_bld_mm[0] - pad * self.pixel_mm,
            self.origin_bld_mm[1] - pad * self.pixel_mm,
        )
        return BevProjection(grown, self.pixel_mm, origin, self.structure_name, self.margin_mm + m)


def project_to_isocentre_plane(
    points_bld_mm: ArrayLike, sad_mm: float = DEFAULT_SAD_MM
) -> NDArray[np.float64]:
    """(x, y) where the rays from the source through BLD points (..., 3) cross the isocentre plane, mm."""
    p = np.asarray(points_bld_mm, dtype=float)
    if p.shape[-1] != 3:
        raise PlanningError(f"points_bld_mm must have shape (..., 3), got {p.shape}")
    depth = sad_mm - p[..., 2]
    if np.any(depth <= 0):
        raise PlanningError(
            f"a point lies at or beyond the source (z_b >= SAD = {sad_mm} mm); "
            "check the isocentre and the structure"
        )
    return p[..., :2] * (sad_mm / depth)[..., None]


def _pixel_axis(lo_mm: float, hi_mm: float, pixel_mm: float) -> NDArray[np.float64]:
    """Pixel centres at (n + 1/2) * pixel covering [lo, hi]; pixel edges fall on multiples of the pixel."""
    n0 = int(np.floor(lo_mm / pixel_mm))
    n1 = int(np.ceil(hi_mm / pixel_mm))
    return (np.arange(n0, n1) + 0.5) * pixel_mm


def project_structure(
    structure: Structure,
    isocenter_lps_mm: ArrayLike,
    gantry_deg: float,
    *,
    collimator_deg: float = 0.0,
    couch_deg: float = 0.0,
    sad_mm: float = DEFAULT_SAD_MM,
    pixel_mm: float = DEFAULT_PIXEL_MM,
) -> BevProjection:
    """Divergent beam's-eye-view projection of ``structure`` onto the isocentre plane.

    Angles in degrees (IEC 61217); the patient position is that of the
    structure's grid. ``pixel_mm`` is the raster pitch at the isocentre plane.
    """
    structure.require_nonempty("a beam's-eye-view projection")
    if not (np.isfinite(pixel_mm) and pixel_mm > 0):
        raise PlanningError(f"pixel_mm must be positive, got {pixel_mm!r}")
    grid = structure.grid
    T = T_bld_from_lps(
        isocenter_lps_mm, gantry_deg, collimator_deg, couch_deg, grid.patient_position
    )

    # Crop the mask to its bounding box with a one-voxel empty border, so that every
    # sample outside the box can be clamped onto the border and read as "outside".
    lo, hi = structure.bounding_box_kji()
    lo_p, hi_p = lo - 1, hi + 1
    sub = np.zeros(tuple(hi_p - lo_p), dtype=bool)
    sub[1:-1, 1:-1, 1:-1] = structure.mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    # Index (i, j, k) of the padded sub-array from LPS: shift the grid's affine.
    ijk_from_lps = grid.ijk_from_lps.copy()
    ijk_from_lps[:3, 3] -= lo_p[::-1]
    A = ijk_from_lps @ np.linalg.inv(T)  # padded (i, j, k) from BLD

    # The box of the mask's voxel edges, in the BLD frame: depth range and BEV bounds.
    corners_ijk = np.array(
        [
            [i, j, k]
            for i in (lo[2] - 0.5, hi[2] - 0.5)
            for j in (lo[1] - 0.5, hi[1] - 0.5)
            for k in (lo[0] - 0.5, hi[0] - 0.5)
        ]
    )
    corners_lps = grid.points_lps_mm(corners_ijk)
    corners_bld = corners_lps @ T[:3, :3].T + T[:3, 3]
    z_lo, z_hi = float(corners_bld[:, 2].min()), float(corners_bld[:, 2].max())
    if z_hi >= sad_mm:
        raise PlanningError(
            f"structure {structure.name!r} reaches the source of the beam at gantry {gantry_deg:g} deg "
            f"(z_b up to {z_hi:.0f} mm, SAD {sad_mm:g} mm); check the isocentre"
        )
    xy = project_to_isocentre_plane(corners_bld, sad_mm)
    xs = _pixel_axis(float(xy[:, 0].min()) - pixel_mm, float(xy[:, 0].max()) + pixel_mm, pixel_mm)
    ys = _pixel_axis(float(xy[:, 1].min()) - pixel_mm, float(xy[:, 1].max()) + pixel_mm, pixel_mm)

    step = _RAY_STEP_FRACTION * min(grid.spacing_mm)
    n_steps = int(np.ceil((z_hi - z_lo) / step)) + 1
    z_samples = np.linspace(z_lo, z_hi, n_steps)
    scale = (sad_mm - z_samples) / sad_mm  # a pixel's ray at height z: (x, y) * scale
    shape_ijk = np.array(sub.shape[::-1])

    U, V = np.meshgrid(xs, ys)  # [ny, nx]
    u, v = U.ravel(), V.ravel()
    hit = np.zeros(u.size, dtype=bool)
    for start in range(0, u.size, _RAYS_PER_BLOCK):
        sl = slice(start, start + _RAYS_PER_BLOCK)
        base = A[:3, 0:1] * u[sl] + A[:3, 1:2] * v[sl]  # (3, n): index shift per unit (x, y)
        block_hit = np.zeros(base.shape[1], dtype=bool)
        for s, z in zip(scale, z_samples, strict=True):
            ijk = np.rint(base * s + (A[:3, 2] * z + A[:3, 3])[:, None]).astype(np.intp)
            np.clip(ijk, 0, (shape_ijk - 1)[:, None], out=ijk)
            block_hit |= sub[ijk[2], ijk[1], ijk[0]]
        hit[sl] = block_hit
    mask = hit.reshape(U.shape)
    log.debug(
        "projected %s at gantry %.1f: %d rays x %d samples, %.0f mm^2",
        structure.name,
        gantry_deg,
        u.size,
        n_steps,
        mask.sum() * pixel_mm**2,
    )
    return BevProjection(mask, pixel_mm, (float(xs[0]), float(ys[0])), structure.name)


@dataclass(frozen=True, eq=False)
class Aperture:
    """A conformal aperture: jaws and MLC, and the projection they were shaped to."""

    jaws: Jaws
    mlc: MLC
    projection: BevProjection

    @property
    def open_area_mm2(self) -> float:
        """Area open through both the MLC and the jaws at the isocentre plane, mm^2."""
        edges = self.mlc.leaf_edges_mm
        y_lo = np.clip(edges[:-1], self.jaws.y1_mm, self.jaws.y2_mm)
        y_hi = np.clip(edges[1:], self.jaws.y1_mm, self.jaws.y2_mm)
        x_lo = np.clip(self.mlc.bank_x1_mm, self.jaws.x1_mm, self.jaws.x2_mm)
        x_hi = np.clip(self.mlc.bank_x2_mm, self.jaws.x1_mm, self.jaws.x2_mm)
        return float(np.sum((y_hi - y_lo) * (x_hi - x_lo)))

    @property
    def equivalent_square_mm(self) -> float:
        """Side of the square with the same open area, mm (a rough field-size measure)."""
        return float(np.sqrt(self.open_area_mm2))


def aperture_from_projection(
    projection: BevProjection,
    *,
    n_leaf_pairs: int = DEFAULT_N_LEAF_PAIRS,
    leaf_width_mm: float = DEFAULT_LEAF_WIDTH_MM,
) -> Aperture:
    """MLC and jaws opened over ``projection`` (margins already added).

    Each leaf pair opens from the leftmost to the rightmost projected point of
    the pixel rows under it; pairs with nothing under them close at the middle
    of the jaw opening (behind the Y jaws when outside the projection).
    """
    if projection.is_empty:
        raise PlanningError(
            f"cannot shape an aperture: the BEV projection of {projection.structure_name!r} is empty"
        )
    mlc0 = MLC.closed(n_leaf_pairs, leaf_width_mm)
    edges = mlc0.leaf_edges_mm
    x_min, x_max, y_min, y_max = projection.extent_mm()
    span = max(abs(x_min), abs(x_max), abs(y_min), abs(y_max))
    reach = min(JAW_LIMIT_MM, float(edges[-1]), float(-edges[0]))
    if span > reach + 1e-9:
        raise PlanningError(
            f"the projection of {projection.structure_name!r} reaches {span:.0f} mm from the beam axis, "
            f"beyond the collimator's {reach:.0f} mm; move the isocentre towards the target or split "
            "the field"
        )
    x = projection.x_centers_mm()
    y = projection.y_centers_mm()
    h = projection.pixel_mm / 2
    x1 = np.zeros(mlc0.n_pairs)
    x2 = np.zeros(mlc0.n_pairs)
    is_open = np.zeros(mlc0.n_pairs, dtype=bool)
    for n in range(mlc0.n_pairs):
        rows = (y + h > edges[n] + 1e-9) & (y - h < edges[n + 1] - 1e-9)
        if not rows.any():
            continue
        cols = np.nonzero(projection.mask[rows].any(axis=0))[0]
        if cols.size == 0:
            continue
        is_open[n] = True
        x1[n] = x[cols[0]] - h
        x2[n] = x[cols[-1]] + h
    jaws = Jaws(float(x1[is_open].min()), float(x2[is_open].max()), y_min, y_max)
    centre = (jaws.x1_mm + jaws.x2_mm) / 2
    x1[~is_open] = centre
    x2[~is_open] = centre
    return Aperture(jaws, MLC(edges, x1, x2), projection)


def conformal_aperture(
    structure: Structure,
    isocenter_lps_mm: ArrayLike,
    gantry_deg: float,
    *,
    margin_mm: float = 7.0,
    collimator_deg: float = 0.0,
    couch_deg: float = 0.0,
    sad_mm: float = DEFAULT_SAD_MM,
    pixel_mm: float = DEFAULT_PIXEL_MM,
    n_leaf_pairs: int = DEFAULT_N_LEAF_PAIRS,
    leaf_width_mm: float = DEFAULT_LEAF_WIDTH_MM,
) -> Aperture:
    """The jaws and MLC of a beam conformed to ``structure`` plus ``margin_mm`` (penumbra) in its BEV."""
    projection = project_structure(
        structure,
        isocenter_lps_mm,
        gantry_deg,
        collimator_deg=collimator_deg,
        couch_deg=couch_deg,
        sad_mm=sad_mm,
        pixel_mm=pixel_mm,
    )
    return aperture_from_projection(
        projection.expanded(margin_mm), n_leaf_pairs=n_leaf_pairs, leaf_width_mm=leaf_width_mm
    )


def conformal_beam(
    name: str,
    structure: Structure,
    isocenter_lps_mm: ArrayLike,
    gantry_deg: float,
    *,
    margin_mm: float = 7.0,
    mu: float = 100.0,
    collimator_deg: float = 0.0,
    couch_deg: float = 0.0,
    sad_mm: float = DEFAULT_SAD_MM,
    pixel_mm: float = DEFAULT_PIXEL_MM,
) -> Beam:
    """A static beam whose jaws and MLC conform to ``structure`` plus ``margin_mm`` (mm, degrees)."""
    ap = conformal_aperture(
        structure,
        isocenter_lps_mm,
        gantry_deg,
        margin_mm=margin_mm,
        collimator_deg=collimator_deg,
        couch_deg=couch_deg,
        sad_mm=sad_mm,
        pixel_mm=pixel_mm,
    )
    return Beam(
        name=name,
        gantry_deg=gantry_deg,
        isocenter_lps_mm=tuple(np.asarray(isocenter_lps_mm, dtype=float)),
        jaws=ap.jaws,
        mu=mu,
        collimator_deg=collimator_deg,
        couch_deg=couch_deg,
        mlc=ap.mlc,
        sad_mm=sad_mm,
        extra={
            "aperture_target": structure.name,
            "aperture_margin_mm": float(margin_mm),
            "aperture_area_mm2": ap.open_area_mm2,
        },
    )
