"""How a CRT plan and its candidates read in the plan info, the report and the CLI summary.

One line per candidate tried (weights, segments, MU, hot spot, homogeneity,
conformity, each limit's value and outcome), a one-line description of the
chosen plan, and the limits a plan breaks with by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lattice_plan.dose.beam import Beam
from lattice_plan.planning.crt_limits import PER_PROTOCOL, DoseLimit
from lattice_plan.planning.crt_weights import MAX_DOSE_PCT, Evaluation


def _fmt(value: float, unit: str) -> str:
    return f"{value:.1f} %" if unit == "%" else f"{value:.1f} {unit}"


def limit_results(
    limits: Sequence[DoseLimit], values: Sequence[float], dmax_pct: float
) -> list[dict[str, Any]]:
    """Each limit (and the 107 % hot-spot limit) with its value, outcome and excess."""
    rows = []
    for lim, v in zip(limits, values, strict=True):
        excess = lim.excess(v)
        rows.append(
            {
                "limit": lim.label,
                "value": float(v),
                "unit": lim.unit,
                "outcome": lim.outcome(v),
                "excess": float(abs(v - lim.limit)) if excess > 0 else 0.0,
                "excess_pct": 100.0 * excess,
                "source": lim.source,
            }
        )
    over = max(dmax_pct - MAX_DOSE_PCT, 0.0)
    rows.append(
        {
            "limit": f"Dmax <= {MAX_DOSE_PCT:g} % of the prescription",
            "value": float(dmax_pct),
            "unit": "%",
            "outcome": PER_PROTOCOL if over == 0 else "major deviation",
            "excess": over,
            "excess_pct": 100.0 * over / MAX_DOSE_PCT,
            "source": "ICRU Reports 50/62: dose within 95-107 % of the prescription",
        }
    )
    return rows


def failure_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """ "<limit>: <value>, <excess> (<pct> %) beyond the limit (<outcome>)" for each broken limit."""
    return [
        f"{r['limit']}: {_fmt(r['value'], r['unit'])}, {_fmt(r['excess'], r['unit'])} "
        f"({r['excess_pct']:.1f} %) beyond the limit ({r['outcome']})"
        for r in rows
        if r["outcome"] != PER_PROTOCOL
    ]


def candidate_info(
    name: str,
    key: str,
    beams: Sequence[Beam],
    parents: Sequence[str],
    ev: Evaluation,
    limits: Sequence[DoseLimit],
    segments: str = "",
) -> dict[str, Any]:
    """A candidate's record: beams with relative weights and MU (per fraction, before the
    plan's final normalisation), segments, hot spot, HI, CI and each limit's value."""
    w = np.asarray(ev.weights)
    mu = {b.name: float(b.mu * x) for b, x in zip(beams, w, strict=True)}
    rows = limit_results(limits, ev.values, ev.dmax_pct)
    info = {
        "name": name,
        "key": key,
        "beams": [b.name for b in beams],
        "gantry_deg": [b.gantry_deg for b in beams],
        "weights": [float(x) for x in w / w.sum()],
        "mu_per_beam": mu,
        "total_mu": float(sum(mu.values())),
        "n_segments": sum(p != b.name for b, p in zip(beams, parents, strict=True)),
        "segments_note": segments,
        "dmax_pct": ev.dmax_pct,
        "ptv_dmax_pct": ev.ptv_dmax_pct,
        "homogeneity_index": ev.hi,
        "conformity_index": ev.ci,
        "limits": rows,
        "meets_limits": ev.status == 0,
    }
    info["line"] = candidate_line(info)
    return info


def candidate_line(info: dict[str, Any]) -> str:
    """One line: what the candidate is and how it fares."""
    beams = ", ".join(
        f"{b} {w:.2f}" for b, w in zip(info["beams"], info["weights"], strict=True) if w > 1e-4
    )
    worst = [r for r in info["limits"] if r["outcome"] != PER_PROTOCOL]
    verdict = (
        "meets every limit"
        if not worst
        else "breaks " + "; ".join(f"{r['limit']} ({_fmt(r['value'], r['unit'])})" for r in worst)
    )
    return (
        f"{info['name']}: {beams}; {info['n_segments']} segment(s)"
        + (f" ({info['segments_note']})" if info.get("segments_note") else "")
        + f", {info['total_mu']:.0f} MU/fx; "
        f"Dmax {info['dmax_pct']:.1f} %, HI {info['homogeneity_index']:.3f}, "
        f"CI {info['conformity_index']:.2f}; {verdict}"
    )


def describe_plan(arrangement: str, beams: Sequence[Beam]) -> str:
    """ "<arrangement>: PA 41 % (162 MU), PA_S1 ... ; 1 segment(s); 395 MU per fraction"."""
    total = sum(b.mu for b in beams)
    parts = ", ".join(
        f"{b.name} {100 * float(b.extra.get('weight', 0.0)):.0f} % ({b.mu:.0f} MU)" for b in beams
    )
    n_seg = sum("segment_of" in b.extra for b in beams)
    return f"{arrangement}: {parts}; {n_seg} segment(s); {total:.0f} MU per fraction"
