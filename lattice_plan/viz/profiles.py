"""Dose profiles along line segments (e.g. through vertex centres): peaks and valleys.

Doses are sampled by trilinear interpolation at points spaced ``step_mm``
along each segment (LPS mm); points outside the dose grid are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.volume import Volume
from lattice_plan.viz.dvh_plot import PLAN_LINESTYLES

_AXES = {"x": 0, "y": 1, "z": 2}
_AXIS_LABELS = ("x (R → L), mm", "y (A → P), mm", "z (I → S), mm")


def _segment(start_lps_mm: ArrayLike, end_lps_mm: ArrayLike) -> tuple[NDArray, NDArray]:
    a = np.asarray(start_lps_mm, dtype=float)
    b = np.asarray(end_lps_mm, dtype=float)
    if (
        a.shape != (3,)
        or b.shape != (3,)
        or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)))
    ):
        raise GeometryError(
            f"a profile segment needs two finite LPS points (x, y, z) in mm, got {start_lps_mm!r}, {end_lps_mm!r}"
        )
    if np.linalg.norm(b - a) <= 0:
        raise GeometryError(f"profile segment from {tuple(a)} to {tuple(b)} has zero length")
    return a, b


def sample_line(
    dose: Volume, start_lps_mm: ArrayLike, end_lps_mm: ArrayLike, step_mm: float = 0.5
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Dose along the segment from ``start_lps_mm`` to ``end_lps_mm`` (trilinear).

    Returns (distance_mm from the start, points_lps_mm (n, 3), values) with
    NaN where a point lies outside the dose grid (beyond its outer voxel centres).
    """
    a, b = _segment(start_lps_mm, end_lps_mm)
    if not (np.isfinite(step_mm) and step_mm > 0):
        raise GeometryError(f"profile step_mm must be positive, got {step_mm}")
    length = float(np.linalg.norm(b - a))
    n = int(np.ceil(length / step_mm - 1e-9)) + 1
    distance = np.linspace(0.0, length, n)
    points = a + np.outer(distance / length, b - a)
    ijk = dose.grid.continuous_ijk(points)
    coords = ijk[:, ::-1].T  # map_coordinates wants [k, j, i] rows
    values = ndimage.map_coordinates(
        np.asarray(dose.array, dtype=float), coords, order=1, mode="nearest"
    )
    upper = np.array(dose.grid.shape[::-1], dtype=float) - 1
    inside = np.all((ijk >= -1e-6) & (ijk <= upper + 1e-6), axis=1)
    values[~inside] = np.nan
    return distance, points, values


def segments_through_points(
    points_lps_mm: ArrayLike, axis: str = "x", margin_mm: float = 20.0, tol_mm: float = 2.0
) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Segments along LPS ``axis`` through rows of points (e.g. vertex centres).

    Points whose other two coordinates agree within ``tol_mm`` form one row;
    each row gives one segment from its first to its last point, extended by
    ``margin_mm`` at both ends. Rows with most points come first.
    """
    pts = np.atleast_2d(np.asarray(points_lps_mm, dtype=float))
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0 or not np.all(np.isfinite(pts)):
        raise GeometryError("points_lps_mm must be a non-empty (n, 3) array of finite LPS mm")
    if axis not in _AXES:
        raise GeometryError(f"axis must be one of x, y, z, got {axis!r}")
    if margin_mm < 0 or tol_mm <= 0:
        raise GeometryError(f"margin_mm must be >= 0 and tol_mm > 0, got {margin_mm}, {tol_mm}")
    a = _AXES[axis]
    others = [c for c in range(3) if c != a]
    unassigned = list(range(len(pts)))
    rows: list[list[int]] = []
    while unassigned:
        seed = unassigned.pop(0)
        row = [seed]
        for idx in list(unassigned):
            if np.all(np.abs(pts[idx, others] - pts[seed, others]) <= tol_mm):
                row.append(idx)
                unassigned.remove(idx)
        rows.append(row)
    rows.sort(key=lambda r: (-len(r), *pts[r[0], others]))
    segments = []
    for row in rows:
        p = pts[row]
        start = np.empty(3)
        start[others] = p[:, others].mean(axis=0)
        end = start.copy()
        start[a] = p[:, a].min() - margin_mm
        end[a] = p[:, a].max() + margin_mm
        segments.append((start, end))
    return segments


def _axis_of(a: NDArray, b: NDArray) -> int | None:
    """Index of the LPS axis the segment runs along, or None for an oblique segment."""
    d = (b - a) / np.linalg.norm(b - a)
    hits = np.nonzero(np.abs(np.abs(d) - 1.0) < 1e-9)[0]
    return int(hits[0]) if len(hits) else None


def dose_profiles(
    doses: Mapping[str, Volume],
    segments: Sequence[tuple[ArrayLike, ArrayLike]],
    labels: Sequence[str] | None = None,
    markers_lps_mm: ArrayLike | None = None,
    marker_tol_mm: float = 2.5,
    reference_plan: str | None = "CRT",
    step_mm: float = 0.5,
    title: str = "",
) -> Figure:
    """One panel per segment with the dose of every plan along it.

    Segments along an LPS axis are plotted against that coordinate, oblique
    ones against the distance from their start. ``markers_lps_mm`` (e.g.
    vertex centres) lying within ``marker_tol_mm`` of a segment are marked
    by vertical lines, so the peaks can be told from the valleys.
    """
    if not doses:
        raise GeometryError("dose_profiles needs at least one dose")
    for name, d in doses.items():
        if d.unit != "Gy":
            raise GeometryError(f"dose of plan {name!r} must be in Gy, got unit {d.unit!r}")
    segs = [_segment(s, e) for s, e in segments]
    if not segs:
        raise GeometryError("dose_profiles needs at least one segment")
    if labels is not None and len(labels) != len(segs):
        raise GeometryError(f"got {len(labels)} labels for {len(segs)} segments")
    markers = (
        np.zeros((0, 3))
        if markers_lps_mm is None
        else np.atleast_2d(np.asarray(markers_lps_mm, dtype=float)).reshape(-1, 3)
    )
    plans = list(doses)
    if reference_plan in doses:
        plans.remove(reference_plan)
        plans.insert(0, reference_plan)
    fig = Figure(figsize=(9, 1.0 + 2.6 * len(segs)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(segs), 1, squeeze=False)[:, 0])
    for n, (ax, (a, b)) in enumerate(zip(axes, segs, strict=True)):
        axis = _axis_of(a, b)
        length = float(np.linalg.norm(b - a))
        u = (b - a) / length
        for p_idx, plan in enumerate(plans):
            dist, pts, values = sample_line(doses[plan], a, b, step_mm)
            x = pts[:, axis] if axis is not None else dist
            label = f"{plan} (reference)" if plan == reference_plan else plan
            ax.plot(x, values, linestyle=PLAN_LINESTYLES[p_idx % len(PLAN_LINESTYLES)], label=label)
        # Markers within marker_tol_mm of the segment (perpendicular distance, inside its span).
        t = (markers - a) @ u
        perp = np.linalg.norm(markers - a - np.outer(t, u), axis=1) if len(markers) else t
        near = (perp <= marker_tol_mm) & (t >= 0) & (t <= length)
        for m_idx, tm in enumerate(t[near]):
            xm = (a + tm * u)[axis] if axis is not None else tm
            ax.axvline(
                xm,
                color="0.5",
                linestyle=":",
                linewidth=1,
                label="vertex centre" if m_idx == 0 else None,
            )
        ax.set_xlabel(_AXIS_LABELS[axis] if axis is not None else "distance from start (mm)")
        ax.set_ylabel("dose (Gy)")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        name = labels[n] if labels is not None else f"profile {n + 1}"
        ax.set_title(
            f"{name}: ({a[0]:.1f}, {a[1]:.1f}, {a[2]:.1f}) → ({b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}) mm LPS",
            fontsize=9,
        )
        ax.legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig
