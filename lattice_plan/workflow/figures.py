"""The figures and 3D scene images of a case's plans (PNG files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lattice_plan.analysis.dvh import DVH
from lattice_plan.geometry.coverage import part_within
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.plan import Plan
from lattice_plan.workflow._common import (
    REPORTED_KINDS,
    Progress,
    report_progress,
    reported_structures,
    safe_name,
)

# A rim along the body outline: only clutter on the slice figures (as in the 3D scenes).
_SLICE_SKIP_NAMES = ("skin",)


def _dose_on_ct(dose: Volume, patient: Patient) -> Volume:
    return dose.resampled(patient.grid, order=1, fill_value=0.0)


def _vertex_centers(plans: Sequence[Plan]) -> np.ndarray | None:
    for plan in plans:
        centers = plan.info.get("vertex_centers_lps_mm")
        if centers:
            return np.asarray(centers, dtype=float).reshape(-1, 3)
    return None


def _dvh_curves(plans: Sequence[Plan]) -> tuple[dict, dict]:
    curves: dict[str, dict[str, tuple]] = {}
    colors: dict[str, tuple[int, int, int]] = {}
    for plan in plans:
        dose = plan.require_dose()
        per: dict[str, tuple] = {}
        for s in reported_structures(plan.structures):
            covered = part_within(s, [dose.grid])
            if covered.is_empty:
                continue
            dvh = DVH.from_dose(dose, covered)
            per[s.name] = (dvh.dose_edges_gy, dvh.cumulative_percent)
            colors.setdefault(s.name, s.color)
        curves[plan.name] = per
    return curves, colors


def write_figures(
    patient: Patient,
    plans: Sequence[Plan],
    folder: Path,
    progress: Progress | None,
) -> list[tuple[str, Path]]:
    """Slices per plan, DVH comparison, profiles through the vertex centres, fluence maps."""
    from lattice_plan.viz.dvh_plot import dvh_comparison
    from lattice_plan.viz.fluence_plot import fluence_maps
    from lattice_plan.viz.profiles import dose_profiles, segments_through_points
    from lattice_plan.viz.slices import orthogonal_slices

    folder.mkdir()
    written: list[tuple[str, Path]] = []
    centers = _vertex_centers(plans)
    n_steps = 2 * len(plans) + 2
    step = 0

    def save(fig: Any, name: str, caption: str) -> None:
        nonlocal step
        path = folder / name
        fig.savefig(path, dpi=100, format="png")
        written.append((caption, path))
        step += 1
        report_progress(progress, "figures", step, n_steps)

    for plan in plans:
        rx = plan.prescription.total_dose_gy
        dose_ct = _dose_on_ct(plan.require_dose(), patient)
        levels = [f * rx for f in (0.2, 0.5, 0.8, 1.0)]
        shown = StructureSet(
            tuple(
                s
                for s in plan.structures
                if s.kind in (*REPORTED_KINDS, StructureKind.EXTERNAL)
                and s.name.casefold() not in _SLICE_SKIP_NAMES
            ),
            plan.structures.grid,
        )
        fig = orthogonal_slices(
            patient.ct,
            shown,
            dose=dose_ct,
            isodose_levels_gy=levels,
            markers_lps_mm=centers,
            title=f"{plan.name}: {plan.prescription.describe()}; isodoses 20/50/80/100 % of {rx:g} Gy",
        )
        save(
            fig,
            f"slices_{safe_name(plan.name)}.png",
            f"{plan.name}: dose on axial, coronal and sagittal slices through the GTV centre",
        )
    curves, colors = _dvh_curves(plans)
    fig = dvh_comparison(curves, colors=colors, title="Cumulative DVHs (physical dose)")
    save(
        fig,
        "dvh_comparison.png",
        "DVH comparison of the plans (colour: structure, line style: plan)",
    )
    if centers is not None and len(centers):
        segments = segments_through_points(centers, axis="x")[:3]
        labels = [
            f"through vertex row at y = {s[0][1]:.0f} mm, z = {s[0][2]:.0f} mm" for s in segments
        ]
    else:
        gtv = patient.structures.of_kind(StructureKind.GTV)[0]
        c = gtv.centroid_lps_mm()
        lo, hi = gtv.bounding_box_lps_mm()
        segments = [(np.array([lo[0] - 20, c[1], c[2]]), np.array([hi[0] + 20, c[1], c[2]]))]
        labels = ["left-right through the GTV centre"]
    fig = dose_profiles(
        {p.name: p.require_dose() for p in plans},
        segments,
        labels=labels,
        markers_lps_mm=centers,
        title="Dose profiles (vertex centres marked)",
    )
    save(fig, "profiles.png", "Dose profiles through the vertex centres: peaks and valleys")
    for plan in plans:
        fig = fluence_maps(plan.beams, title=f"{plan.name}: beam fluence (relative)")
        save(fig, f"fluence_{safe_name(plan.name)}.png", f"{plan.name}: fluence map of each beam")
    return written


def write_scenes(
    plans: Sequence[Plan], folder: Path, progress: Progress | None
) -> list[tuple[str, Path]]:
    from lattice_plan.viz.scene3d import build_scene, save_scene_png

    folder.mkdir()
    written = []
    for n, plan in enumerate(plans, start=1):
        scene = build_scene(
            plan.structures,
            plan.require_dose(),
            plan.beams,
            reference_dose_gy=plan.prescription.total_dose_gy,
            title=plan.name,
        )
        path = save_scene_png(
            scene, folder / f"scene_{safe_name(plan.name)}.png", window_size=(1000, 750)
        )
        written.append(
            (
                f"{plan.name}: 3D view (body, GTV, vertices/STV, OARs, 50 % and 90 % isodoses of the prescription, beams)",
                path,
            )
        )
        report_progress(progress, "3D scenes", n, len(plans))
    return written
