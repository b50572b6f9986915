"""Shape measures of a structure: diameters as the trial's eligibility rule uses them.

Widths are measured on the voxel centres of the mask plus one voxel pitch
along the measuring direction (each voxel stands for a sample one pitch wide),
so a box of N voxels measures N pitches and a sphere of radius r about 2r;
both within one voxel of the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import ConvexHull, QhullError

from lattice_plan.geometry.structure import Structure


@dataclass(frozen=True)
class Diameters:
    """Diameters of a structure, mm.

    recist_long_mm / recist_short_mm: the longest in-plane diameter on the axial
    slice where it is largest, and the greatest width perpendicular to it on that
    slice (RECIST 1.1 style); recist_slice_z_mm: that slice's z (LPS).
    min_caliper_mm / max_caliper_mm: the smallest and largest 3D caliper widths.
    """

    recist_long_mm: float
    recist_short_mm: float
    recist_slice_z_mm: float
    min_caliper_mm: float
    max_caliper_mm: float

    def shortest_diameter_mm(self) -> float:
        """The shortest diameter used for eligibility: the RECIST short axis, as read on axial CT."""
        return self.recist_short_mm


def _fibonacci_directions(n: int) -> NDArray[np.float64]:
    """``n`` nearly uniform unit vectors on the upper hemisphere (widths are symmetric)."""
    idx = np.arange(n) + 0.5
    z = idx / n
    phi = np.pi * (1 + 5**0.5) * idx
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _hull_points(points: NDArray[np.float64]) -> NDArray[np.float64]:
    try:
        return points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return points  # degenerate (flat or tiny) sets: use all points


def _pitch_along(
    directions: NDArray[np.float64], pitch_xyz: NDArray[np.float64]
) -> NDArray[np.float64]:
    return np.sqrt(((directions * pitch_xyz) ** 2).sum(axis=-1))


def _max_pair(
    points: NDArray[np.float64], pitch_xyz: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64]]:
    """Largest distance between two points plus the pitch along it; and its unit direction."""
    best, best_dir = 0.0, np.eye(points.shape[1])[0]
    for start in range(0, len(points), 512):
        diff = points[start : start + 512, None, :] - points[None, :, :]
        d = np.sqrt((diff**2).sum(axis=-1))
        flat = int(np.argmax(d))
        a, b = np.unravel_index(flat, d.shape)
        if d[a, b] > best:
            best = float(d[a, b])
            best_dir = diff[a, b] / best
    return best + float(_pitch_along(best_dir[None, :], pitch_xyz)[0]), best_dir


def _widths(
    points: NDArray[np.float64], directions: NDArray[np.float64], pitch_xyz: NDArray[np.float64]
) -> NDArray[np.float64]:
    proj = points @ directions.T
    return proj.max(axis=0) - proj.min(axis=0) + _pitch_along(directions, pitch_xyz)


def diameters(structure: Structure, n_directions: int = 4000) -> Diameters:
    """RECIST-style axial diameters and 3D caliper widths of ``structure`` (mm)."""
    structure.require_nonempty("diameter measurement")
    grid = structure.grid
    pts = structure.points_lps_mm()
    # Pitch of the voxels along x, y, z (LPS): spacing permuted by the direction cosines.
    pitch_xyz = np.abs(grid.direction) @ grid.spacing_ijk_mm

    hull = _hull_points(pts)
    max_caliper, _ = _max_pair(hull, pitch_xyz)
    dirs = _fibonacci_directions(n_directions)
    try:
        normals = ConvexHull(hull).equations[:, :3]
        dirs = np.vstack([dirs, normals])
    except (QhullError, ValueError):
        pass
    min_caliper = float(_widths(hull, dirs, pitch_xyz).min())

    # Axial slices: group by z (LPS); for axial CT each slice has one z.
    z_round = np.round(pts[:, 2], 3)
    best = (-1.0, 0.0, 0.0)
    for z in np.unique(z_round):
        sl = pts[z_round == z]
        sl2 = _hull_points(sl[:, :2]) if len(sl) > 3 else sl[:, :2]
        sl3 = np.column_stack([sl2, np.full(len(sl2), z)])
        long_mm, long_dir = _max_pair(sl3, pitch_xyz * np.array([1, 1, 0]))
        if long_mm > best[0]:
            perp = np.array([-long_dir[1], long_dir[0], 0.0])
            short_mm = float(_widths(sl3, perp[None, :], pitch_xyz * np.array([1, 1, 0]))[0])
            best = (long_mm, short_mm, float(z))
    return Diameters(
        recist_long_mm=best[0],
        recist_short_mm=best[1],
        recist_slice_z_mm=best[2],
        min_caliper_mm=min_caliper,
        max_caliper_mm=max_caliper,
    )
