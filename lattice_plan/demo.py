"""The main job on the built-in phantom (what ``lattice-plan demo`` and ``make demo`` run)."""

from __future__ import annotations

import json
from pathlib import Path

from lattice_plan.geometry.shape import diameters
from lattice_plan.geometry.structure import StructureKind
from lattice_plan.io.atomic import atomic_output_path, prepare_output_dir
from lattice_plan.phantoms import build_phantom
from lattice_plan.viz.slices import orthogonal_slices

ELIGIBLE_SHORTEST_DIAMETER_MM = 30.0  # trial: soft-tissue mass with shortest diameter > 30 mm


def run_demo(out_dir: Path, progress: bool = True) -> str:
    """Build the phantom, write ``phantom.json`` and ``phantom_slices.png`` into ``out_dir``.

    Returns a human-readable summary (structures with volumes, GTV diameters, eligibility).
    """
    out = prepare_output_dir(out_dir)
    patient = build_phantom()
    gtv = patient.structures.of_kind(StructureKind.GTV)[0]
    d = diameters(gtv)
    eligible = d.shortest_diameter_mm() > ELIGIBLE_SHORTEST_DIAMETER_MM
    lines = [f"{patient.description}", f"CT grid: {patient.grid}", "structures:"]
    lines += [f"  {s.name:<12} {s.kind.value:<9} {s.volume_cc:9.1f} cc" for s in patient.structures]
    lines += [
        f"GTV diameters: axial long {d.recist_long_mm:.1f} mm x short {d.recist_short_mm:.1f} mm "
        f"(z = {d.recist_slice_z_mm:.1f} mm); 3D caliper min {d.min_caliper_mm:.1f} mm, max {d.max_caliper_mm:.1f} mm",
        f"eligible (shortest diameter > {ELIGIBLE_SHORTEST_DIAMETER_MM:.0f} mm): {'yes' if eligible else 'no'}",
    ]
    summary = {
        "description": patient.description,
        "structures": {
            s.name: {"kind": s.kind.value, "volume_cc": round(s.volume_cc, 3)}
            for s in patient.structures
        },
        "gtv_diameters_mm": {
            "recist_long": d.recist_long_mm,
            "recist_short": d.recist_short_mm,
            "min_caliper": d.min_caliper_mm,
            "max_caliper": d.max_caliper_mm,
        },
        "eligible": eligible,
    }
    with atomic_output_path(out / "phantom.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    fig = orthogonal_slices(
        patient.ct, patient.structures, gtv.centroid_lps_mm(), title=patient.description
    )
    with atomic_output_path(out / "phantom_slices.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    lines.append(f"wrote {out / 'phantom.json'} and {out / 'phantom_slices.png'}")
    return "\n".join(lines)
