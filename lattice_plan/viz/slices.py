"""Three orthogonal CT slices through a point, with structure contours and optional dose.

Views are drawn in radiological convention: axial seen from the feet (patient
left on the image right), coronal seen from the front, sagittal from the
patient's left; extents are LPS mm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.structure import StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume

SOFT_TISSUE_WINDOW_HU = (-160.0, 240.0)  # W 400 / L 40


def _planes(volume_array: NDArray, kji: tuple[int, int, int]) -> dict[str, NDArray]:
    k, j, i = kji
    return {
        "axial": volume_array[k, :, :],
        "coronal": volume_array[:, j, :],
        "sagittal": volume_array[:, :, i],
    }


def _extent(z: NDArray, y: NDArray, x: NDArray) -> dict[str, list[float]]:
    # imshow extent [left, right, bottom, top]; rows of axial are y (P down), of coronal/sagittal z.
    return {
        "axial": [x[0], x[-1], y[-1], y[0]],
        "coronal": [x[0], x[-1], z[0], z[-1]],
        "sagittal": [y[0], y[-1], z[0], z[-1]],
    }


def orthogonal_slices(
    ct: Volume,
    structures: StructureSet | None = None,
    point_lps_mm: ArrayLike | None = None,
    dose: Volume | None = None,
    isodose_levels_gy: Sequence[float] = (),
    markers_lps_mm: ArrayLike | None = None,
    title: str = "",
    window_hu: tuple[float, float] = SOFT_TISSUE_WINDOW_HU,
    marker_slab_mm: float = 5.0,
) -> Figure:
    """A figure with axial, coronal and sagittal CT slices through ``point_lps_mm``.

    Contours of every structure are drawn in its colour; ``dose`` (Gy, on the
    CT grid) is shown as a colour wash above 10 % of its maximum with isodose
    lines at ``isodose_levels_gy``; ``markers_lps_mm`` (n, 3) mark points such
    as vertex centres: bold where they lie within ``marker_slab_mm`` of the
    slice plane (default 5 mm, the radius of a 10 mm vertex), small and grey
    elsewhere (projected from other slices). The default point is the centroid of the first
    non-empty GTV in ``structures``, else the CT centre.
    """
    grid = ct.grid
    if not grid.is_axis_aligned:
        raise GeometryError("orthogonal_slices needs an axis-aligned CT grid")
    if dose is not None:
        grid.require_same(dose.grid, "dose for the slice figure")
    if point_lps_mm is None:
        gtvs = [] if structures is None else structures.of_kind(StructureKind.GTV)
        gtvs = [s for s in gtvs if not s.is_empty]
        point_lps_mm = (
            gtvs[0].centroid_lps_mm()
            if gtvs
            else grid.points_lps_mm((np.array(grid.shape[::-1]) - 1) / 2.0)
        )
    ijk = np.rint(grid.continuous_ijk(point_lps_mm)).astype(int)
    ijk = np.clip(ijk, 0, np.array(grid.shape[::-1]) - 1)
    kji = (int(ijk[2]), int(ijk[1]), int(ijk[0]))
    z, y, x = grid.axis_coords_lps_mm()
    # imshow needs increasing display coordinates; sort axes that run backwards.
    flips = [bool(a[-1] < a[0]) if len(a) > 1 else False for a in (z, y, x)]
    z, y, x = (a[::-1] if f else a for a, f in zip((z, y, x), flips, strict=True))

    def _orient(arr: NDArray) -> NDArray:
        sl = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
        return arr[sl]

    kji_oriented = tuple(
        int(n - 1 - v) if f else v for v, n, f in zip(kji, grid.shape, flips, strict=True)
    )
    ct_planes = _planes(_orient(ct.array), kji_oriented)  # type: ignore[arg-type]
    extent = _extent(z, y, x)
    fig = Figure(figsize=(15, 5.4), layout="constrained")
    axes = fig.subplots(1, 3)
    dose_max = float(dose.array.max()) if dose is not None else 0.0
    image = None
    for ax, view in zip(axes, ("axial", "coronal", "sagittal"), strict=True):
        origin = "upper" if view == "axial" else "lower"
        ax.imshow(
            ct_planes[view],
            cmap="gray",
            vmin=window_hu[0],
            vmax=window_hu[1],
            extent=extent[view],
            origin=origin,
        )
        coords = {"axial": (x, y), "coronal": (x, z), "sagittal": (y, z)}[view]
        if dose is not None and dose_max > 0:
            dplane = _planes(_orient(dose.array), kji_oriented)[view]  # type: ignore[arg-type]
            wash = np.ma.masked_less(dplane, 0.1 * dose_max)
            image = ax.imshow(
                wash,
                cmap="jet",
                alpha=0.45,
                vmin=0,
                vmax=dose_max,
                extent=extent[view],
                origin=origin,
            )
            levels = sorted(lv for lv in isodose_levels_gy if 0 < lv < dose_max)
            if levels:
                cs = ax.contour(*coords, dplane, levels=levels, colors="white", linewidths=0.8)
                ax.clabel(cs, fmt="%.3g Gy", fontsize=7)
        if structures is not None:
            for s in structures:
                plane = _planes(_orient(s.mask), kji_oriented)[view]  # type: ignore[arg-type]
                if plane.any():
                    ax.contour(
                        *coords,
                        plane.astype(float),
                        levels=[0.5],
                        colors=[np.array(s.color) / 255.0],
                        linewidths=1.0,
                    )
        pos = grid.points_lps_mm(np.array(ijk, dtype=float))
        if markers_lps_mm is not None:
            m = np.atleast_2d(np.asarray(markers_lps_mm, dtype=float)).reshape(-1, 3)
            normal = {"axial": 2, "coronal": 1, "sagittal": 0}[view]
            in_slab = np.abs(m[:, normal] - pos[normal]) <= marker_slab_mm
            cols = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[view]
            ax.plot(*(m[~in_slab][:, c] for c in cols), "+", color="0.75", markersize=5)
            ax.plot(
                *(m[in_slab][:, c] for c in cols),
                "+",
                color="yellow",
                markersize=9,
                markeredgewidth=1.5,
            )
        labels = {
            "axial": ("x (R → L), mm", "y (A → P), mm"),
            "coronal": ("x (R → L), mm", "z (I → S), mm"),
            "sagittal": ("y (A → P), mm", "z (I → S), mm"),
        }[view]
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        where = {
            "axial": f"z = {pos[2]:.1f}",
            "coronal": f"y = {pos[1]:.1f}",
            "sagittal": f"x = {pos[0]:.1f}",
        }[view]
        ax.set_title(f"{view} ({where} mm)")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="dose (Gy)")
    if structures is not None:
        handles = [
            Line2D([], [], color=np.array(s.color) / 255.0, label=s.name) for s in structures
        ]
        if markers_lps_mm is not None:
            handles.append(
                Line2D([], [], color="yellow", marker="+", linestyle="", label="vertex centre")
            )
        fig.legend(
            handles=handles, loc="outside lower center", ncol=min(len(handles), 9), fontsize=8
        )
    if title:
        fig.suptitle(title)
    return fig
