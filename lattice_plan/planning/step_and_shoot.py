"""Step-and-shoot sequencing: intensity levels decomposed into MLC segments by leaf sweep.

Each leaf pair's staircase (:func:`lattice_plan.planning.sequencing.leaf_rows`)
is quantised to ``levels`` equal steps of the beam's largest value, then
decomposed by the sweep technique of Bortfeld, Kahler, Waldron and Boyer
("X-ray field compensation with multileaf collimators", Int J Radiat Oncol
Biol Phys 28 (1994) 723): in a row with integer profile q, unit k opens from
the k-th rise to the k-th fall read along +X_b, so the row needs sum(rises)
units, the fewest any decomposition can use for that row (the same bound
as Engel, Discrete Appl Math 152 (2005) 35, whose decomposition also
minimises the number of segments: this one does not). Segment k opens unit
k of every row that has one; consecutive identical segments are merged (their
MU add, the fluence is unchanged). Segments smaller than ``min_area_mm2`` are
dropped and their MU reported; a unit below ``min_segment_mu`` is refused
(fewer levels). Rows are leaf pairs; tips DLG-compensated like the sliding window.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.control_points import ControlPointBeam
from lattice_plan.dose.delivery import delivery_time_s
from lattice_plan.dose.machine import Machine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.sequencing import (
    PARK_MARGIN_MM,
    SequencingReport,
    cp_beam_from_apertures,
    leaf_rows,
)


def _row_units(q: NDArray[np.int64], edges: NDArray) -> tuple[NDArray, NDArray]:
    """(left, right) effective edges of each unit of one row, in sweep order."""
    steps = np.diff(np.concatenate([[0], q, [0]]))
    left = np.repeat(edges, np.maximum(steps, 0))
    right = np.repeat(edges, np.maximum(-steps, 0))
    return left, right


def step_and_shoot(
    beam: Beam,
    machine: Machine,
    levels: int = 10,
    min_segment_mu: float = 1.0,
    min_area_mm2: float = 0.0,
) -> tuple[ControlPointBeam, SequencingReport]:
    """Sequence a fluence-map beam as STATIC segments (see the module docstring)."""
    if not (isinstance(levels, int) and 1 <= levels <= 100):
        raise PlanningError(f"step-and-shoot levels must be an integer in 1..100, got {levels!r}")
    rows = leaf_rows(beam, machine)
    top = float(rows.intensity_mu.max())
    unit = top / levels
    if unit < min_segment_mu:
        raise PlanningError(
            f"beam {beam.name!r}: {levels} levels of {top:.1f} MU give {unit:.2f} MU per level, "
            f"below the minimum segment {min_segment_mu} MU; use at most {int(top // min_segment_mu)} levels"
        )
    q = np.rint(rows.intensity_mu / unit).astype(np.int64)
    edges = rows.col_edges_mm
    units = {p: _row_units(q[p], edges) for p in range(len(q)) if q[p].any()}
    n_units = max(len(u[0]) for u in units.values())
    widths = np.diff(machine.mlc.leaf_edges_mm)
    half = machine.dosimetric_leaf_gap_mm / 2
    park = rows.jaws.x1_mm - half - PARK_MARGIN_MM
    segments: list[tuple[NDArray, NDArray, float]] = []
    dropped = 0.0
    y0, y1 = rows.jaws.y1_mm, rows.jaws.y2_mm
    e = machine.mlc.leaf_edges_mm
    in_jaw = np.clip(np.minimum(e[1:], y1) - np.maximum(e[:-1], y0), 0, None)
    for k in range(n_units):
        lo = np.full(len(widths), np.nan)
        hi = np.full(len(widths), np.nan)
        for p, (left, right) in units.items():
            if k < len(left):
                lo[p], hi[p] = left[k], right[k]
        opened = ~np.isnan(lo)
        area = float(np.sum((hi - lo)[opened] * in_jaw[opened]))
        if area < min_area_mm2:
            dropped += unit
            continue
        # DLG compensation: nominal tips lie DLG/2 inside the effective opening
        centre = np.where(opened, (lo + hi) / 2, park)
        x1 = np.where(opened, np.minimum(lo + half, centre), park)
        x2 = np.where(opened, np.maximum(hi - half, centre), park)
        if segments and np.array_equal(segments[-1][0], x1) and np.array_equal(segments[-1][1], x2):
            segments[-1] = (x1, x2, segments[-1][2] + unit)
        else:
            segments.append((x1, x2, unit))
    if not segments:
        raise PlanningError(
            f"beam {beam.name!r}: every segment is below the minimum area {min_area_mm2} mm2"
        )
    mu = float(sum(s[2] for s in segments))
    cum = np.concatenate([[0.0], np.cumsum([s[2] for s in segments])]) / mu
    weights = np.repeat(cum, 2)[1:-1]
    x1 = np.repeat(np.array([s[0] for s in segments]), 2, axis=0)
    x2 = np.repeat(np.array([s[1] for s in segments]), 2, axis=0)
    cp_beam = cp_beam_from_apertures(beam, machine, rows.jaws, weights, x1, x2, mu, "STATIC")
    report = SequencingReport(
        beam.name,
        "step_and_shoot",
        mu,
        len(weights),
        len(segments),
        delivery_time_s(cp_beam, machine),
        0.0,
        dropped,
    )
    return cp_beam, report
