"""DVH comparison figure: cumulative DVHs of several plans, one colour per structure.

Input is plain data so that any producer can feed it: a mapping
plan name -> structure name -> (dose_gy, volume_percent), where volume_percent
is the cumulative volume (% of the structure) receiving at least dose_gy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import AnalysisError

DVHCurves = Mapping[str, Mapping[str, tuple[ArrayLike, ArrayLike]]]

PLAN_LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
_VOLUME_TOL_PERCENT = 1e-6


def _check_curve(
    plan: str, structure: str, curve: tuple[ArrayLike, ArrayLike]
) -> tuple[NDArray, NDArray]:
    try:
        dose_gy, volume_percent = curve
    except (TypeError, ValueError):
        raise AnalysisError(
            f"DVH of {structure!r} in plan {plan!r} must be a pair (dose_gy, volume_percent)"
        ) from None
    d = np.asarray(dose_gy, dtype=float)
    v = np.asarray(volume_percent, dtype=float)
    where = f"DVH of {structure!r} in plan {plan!r}"
    if d.ndim != 1 or v.shape != d.shape or d.size < 2:
        raise AnalysisError(
            f"{where}: dose_gy and volume_percent must be 1D arrays of the same length >= 2, "
            f"got shapes {d.shape} and {v.shape}"
        )
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(v))):
        raise AnalysisError(f"{where}: dose and volume must be finite")
    if np.any(np.diff(d) < 0):
        raise AnalysisError(f"{where}: dose_gy must be non-decreasing")
    if np.any(v < -_VOLUME_TOL_PERCENT) or np.any(v > 100 + _VOLUME_TOL_PERCENT):
        raise AnalysisError(
            f"{where}: volume_percent must lie in 0-100 %, got {v.min():.3g}..{v.max():.3g}"
        )
    if np.any(np.diff(v) > _VOLUME_TOL_PERCENT):
        raise AnalysisError(
            f"{where}: a cumulative DVH must not increase with dose; pass the cumulative curve"
        )
    return d, v


def dvh_comparison(
    curves: DVHCurves,
    structures: Sequence[str] | None = None,
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    reference_plan: str | None = "CRT",
    dose_label: str = "dose (Gy)",
    title: str = "",
) -> Figure:
    """Cumulative DVHs of every plan on one axes: colour = structure, line style = plan.

    ``structures`` selects and orders the structures (default: all, in order
    of first appearance); ``colors`` maps structure names to RGB 0-255 (e.g.
    from a StructureSet); ``reference_plan`` (if present) is drawn first with
    solid lines; ``dose_label`` names the dose axis (e.g. "EQD2 (Gy)").
    """
    if not curves:
        raise AnalysisError("dvh_comparison needs at least one plan with DVH curves")
    plans = list(curves)
    if reference_plan in curves:
        plans.remove(reference_plan)
        plans.insert(0, reference_plan)
    present: list[str] = []
    for plan in plans:
        for name in curves[plan]:
            if name not in present:
                present.append(name)
    if structures is None:
        names = present
    else:
        missing = [n for n in structures if n not in present]
        if missing:
            raise AnalysisError(
                f"no DVH for structure(s) {', '.join(map(repr, missing))}; "
                f"the curves hold: {', '.join(present)}"
            )
        names = list(structures)
    cycle = [f"C{n}" for n in range(10)]
    color_of = {
        n: (np.array(colors[n]) / 255.0 if colors and n in colors else cycle[m % 10])
        for m, n in enumerate(names)
    }
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    d_max = 0.0
    for p_idx, plan in enumerate(plans):
        style = PLAN_LINESTYLES[p_idx % len(PLAN_LINESTYLES)]
        for name in names:
            if name not in curves[plan]:
                continue
            d, v = _check_curve(plan, name, curves[plan][name])
            ax.plot(d, v, color=color_of[name], linestyle=style, linewidth=1.5)
            d_max = max(d_max, float(d[v > 0].max()) if np.any(v > 0) else 0.0)
    ax.set_xlabel(dose_label)
    ax.set_ylabel("volume (%)")
    ax.set_ylim(0, 102)
    ax.set_xlim(0, d_max * 1.05 if d_max > 0 else 1.0)
    ax.grid(True, alpha=0.3)
    structure_handles = [Line2D([], [], color=color_of[n], label=n) for n in names]
    plan_handles = [
        Line2D(
            [],
            [],
            color="black",
            linestyle=PLAN_LINESTYLES[i % len(PLAN_LINESTYLES)],
            label=f"{p} (reference)" if p == reference_plan else p,
        )
        for i, p in enumerate(plans)
    ]
    first = ax.legend(
        handles=structure_handles,
        title="structure",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    ax.add_artist(first)
    ax.legend(
        handles=plan_handles, title="plan", loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=8
    )
    if title:
        ax.set_title(title)
    return fig
