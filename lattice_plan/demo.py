"""The main job on the built-in phantom (what ``lattice-plan demo`` and ``make demo`` run).

The lumbar-metastasis phantom is planned in the three arms (SFRT, SCART and
CRT), the plans are evaluated against each other and the built-in study
protocol, and everything is written to one folder: the CT series, one
RTSTRUCT, an RTPLAN and RTDOSE per plan, ``metrics.json``, figures, 3D scene
images and ``report.html`` (see :func:`lattice_plan.workflow.run_case`).

Two settings: the default (2.5 mm CT and dose grid, up to 100 optimiser
iterations) and ``fast`` (4 mm CT, 5 mm dose grid, 12 iterations), a coarse
but complete run for tests and a first look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lattice_plan.phantoms import build_phantom
from lattice_plan.workflow import ARMS, Progress, crt_notes, run_case


@dataclass(frozen=True)
class DemoSettings:
    """Resolution and effort of the demo: phantom voxel size and plan-spec overrides."""

    phantom_spacing_mm: float
    phantom_length_mm: float
    overrides: dict[str, Any] = field(default_factory=dict)


DEMO_SETTINGS = DemoSettings(
    phantom_spacing_mm=2.5,
    phantom_length_mm=200.0,
    overrides={"dose.spacing_mm": 2.5, "optimiser.max_iterations": 100},
)
FAST_SETTINGS = DemoSettings(
    phantom_spacing_mm=4.0,
    phantom_length_mm=160.0,
    overrides={"dose.spacing_mm": 5.0, "optimiser.max_iterations": 12},
)


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    fast: bool = False,
    delivery: str | None = None,
    progress: Progress | None = None,
    crt_schedule: str | None = None,
) -> str:
    """Plan, evaluate and write the three arms of the built-in phantom into ``out_dir``.

    ``delivery`` sets the SFRT and SCART plans' ``[delivery] method`` (e.g.
    ``"vmat"``: two full arcs, :mod:`lattice_plan.planning.vmat`); default: the spec's.

    Returns a human-readable summary (eligibility, per plan its prescription,
    key metrics and protocol verdict, and where the outputs are). ``crt_schedule``:
    the CRT arm's schedule ("30Gy/10" by default, "20Gy/5", "8Gy/1").
    """
    settings = FAST_SETTINGS if fast else DEMO_SETTINGS
    sp = settings.phantom_spacing_mm
    patient = build_phantom(spacing_mm=(sp, sp, sp), length_mm=settings.phantom_length_mm)
    metrics = run_case(
        patient,
        ARMS,
        out_dir,
        overrides={
            **settings.overrides,
            **({} if delivery is None else {"delivery.method": delivery}),
            **({"crt.schedule": crt_schedule} if crt_schedule else {}),
        },
        protocol="builtin",
        write_ct=True,
        progress=progress,
    )
    return summary_text(metrics, Path(out_dir))


def _fmt(value: Any, spec: str = ".3g", unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{unit}"


def summary_text(metrics: dict[str, Any], out_dir: Path) -> str:
    """A few lines per plan from ``metrics`` (as :func:`lattice_plan.workflow.evaluate_plans` gives)."""
    p = metrics["patient"]
    lines = [p["description"] or p["id"]]
    if "gtv_diameters_mm" in p:
        d = p["gtv_diameters_mm"]
        gtv = p["structures"][p["gtv"]]["volume_cc"]
        lines.append(
            f"{p['gtv']}: {gtv:.1f} cc, axial {d['recist_long']:.1f} x {d['recist_short']:.1f} mm; "
            f"eligible (shortest diameter > 30 mm): {'yes' if p['eligible'] else 'no'}"
        )
    for name, s in metrics["plans"].items():
        gtv = s["structures"].get(p.get("gtv", ""), {})
        parts = [
            f"{name:<6} {s['prescription']}",
            f"MU/fx {_fmt(s['total_mu_per_fraction'], '.0f')}",
            f"GTV Dmean {_fmt(gtv.get('Dmean'), '.2f', ' Gy')}",
            f"PVDR D10/D90 {_fmt(s.get('pvdr_d10_d90'), '.2f')}",
        ]
        if "n_vertices" in s:
            parts.append(f"{s['n_vertices']} vertices, PVDR mean {_fmt(s.get('pvdr_mean'), '.2f')}")
        qa = s.get("qa") or {}
        if qa.get("arm"):
            parts.append(f"QA ({qa['arm']}): {qa['verdict']}")
        lines.append("; ".join(parts))
        lines += [f"  {n}" for n in crt_notes(name, s)]
    lines.append(f"wrote {out_dir} (report: {out_dir / 'report.html'})")
    return "\n".join(lines)
