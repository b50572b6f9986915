"""One CRT candidate arrangement made into a plan: its fields' doses, the weights against the
limits, and field-in-field segments where it still breaks one.

:class:`CandidateProblem` holds the voxel sets of one patient (PTV, the rest of the
body, each limit's structure on the dose grid) and computes each field's dose once
(Gy per unit weight: one unit is the MU that gives the prescription per fraction at the
isocentre). :func:`optimise_candidate` weights the open fields
(:mod:`lattice_plan.planning.crt_weights`); while the candidate breaks a limit or the
107 % hot-spot limit, it adds one segment per field closed over the region at fault
(:mod:`lattice_plan.planning.crt_segments`) and weights again, up to a number of
segments per field, keeping a round only if it ranks better. Segments delivering less
than MIN_SEGMENT_MU are dropped and the rest weighted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import PlanningError
from lattice_plan.geometry.structure import Structure, structure_on_grid
from lattice_plan.planning.crt_arrangements import Arrangement
from lattice_plan.planning.crt_limits import PER_PROTOCOL, LimitSet
from lattice_plan.planning.crt_segments import segment_beam
from lattice_plan.planning.crt_weights import (
    Evaluation,
    WeightProblem,
    evaluate,
    optimise_weights,
)
from lattice_plan.planning.prescription import Prescription

# A segment delivering less than this (MU per fraction) is dropped: too little to deliver.
MIN_SEGMENT_MU = 2.0
# Field-in-field segments even out some per cent (two rounds took PA + laterals on the
# phantom from about 128 % to 109 %); above this open-field hot spot (one-sided fields
# through a thick target) they are not tried, which saves their dose computations.
SEGMENT_HOT_SPOT_PCT = 130.0


@dataclass(frozen=True, eq=False)
class FieldColumn:
    """One field of the weight problem: a beam (MU per unit weight) and its dose per unit
    weight on the engine's active voxels (Gy, whole course, float32)."""

    beam: Beam
    parent: str
    dose: NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Candidate:
    """A weighted candidate; ``segments`` says why it has the segments it has."""

    arrangement: Arrangement
    columns: tuple[FieldColumn, ...]
    evaluation: Evaluation
    segments: str = ""


class CandidateProblem:
    """The voxel sets of one patient's weight problems (PTV, other body voxels, limits)."""

    def __init__(self, engine: DoseEngine, ptv: Structure, limits: LimitSet, rx: Prescription):
        active = engine.active_mask
        self.engine = engine
        self.active_flat = np.flatnonzero(active)
        position = np.cumsum(active.ravel()) - 1
        ptv_mask = structure_on_grid(ptv, engine.dose_grid).mask & active
        if not ptv_mask.any():
            raise PlanningError("the PTV has no voxels on the dose grid")
        self.ptv_idx = position[np.flatnonzero(ptv_mask)]
        self.out_idx = position[np.flatnonzero(active & ~ptv_mask)]
        self.limit_idx = []
        for lim in limits.limits:
            m = structure_on_grid(lim.structure, engine.dose_grid).mask & active
            self.limit_idx.append(position[np.flatnonzero(m)])
        self.limits = limits.limits
        self.rx = rx
        self.voxel_cc = float(np.prod(engine.dose_grid.spacing_mm)) / 1000.0

    def weight_problem(self, columns: Sequence[FieldColumn]) -> WeightProblem:
        d = np.stack([c.dose for c in columns])
        return WeightProblem(
            ptv=d[:, self.ptv_idx],
            outside=d[:, self.out_idx],
            limits=tuple(
                (lim, d[:, idx]) for lim, idx in zip(self.limits, self.limit_idx, strict=True)
            ),
            body_mean=d.mean(axis=1, dtype=np.float64),
            voxel_cc=self.voxel_cc,
            fractions=self.rx.fractions,
            rx_gy=self.rx.total_dose_gy,
        )

    def column(self, beam: Beam, parent: str) -> FieldColumn:
        dose = self.engine.compute([beam]).array.ravel()[self.active_flat]
        return FieldColumn(beam, parent, (dose * self.rx.fractions).astype(np.float32))

    def region(self, columns: Sequence[FieldColumn], ev: Evaluation) -> Structure:
        """Where the candidate's plan is at fault: above the hot-spot level, or organ voxels
        above the bound of a limit it breaks (dose grid)."""
        d = (np.asarray(ev.weights, dtype=np.float32) @ np.stack([c.dose for c in columns])).astype(
            float
        )
        rx = self.rx.total_dose_gy
        level = max(1.03 * rx, rx + 0.5 * (ev.dmax_pct / 100.0 * rx - rx))
        at_fault = d > level
        for lim, idx, outcome in zip(self.limits, self.limit_idx, ev.outcomes, strict=True):
            if outcome == PER_PROTOCOL or not lim.upper or lim.kind == "mean":
                continue
            rows = lim.planning_rows(d[idx], self.voxel_cc, self.rx.fractions, rx)
            if rows is not None:
                sel, bound, _ = rows
                at_fault[idx[sel[d[idx][sel] > bound]]] = True
        mask = np.zeros(self.engine.dose_grid.n_voxels, dtype=bool)
        mask[self.active_flat[at_fault]] = True
        return Structure(
            "CRT_segment_region", mask.reshape(self.engine.dose_grid.shape), self.engine.dose_grid
        )


def optimise_candidate(
    problem: CandidateProblem,
    arrangement: Arrangement,
    open_columns: Sequence[FieldColumn],
    max_segments: int,
    fixed_weights: NDArray[np.float64] | None,
) -> Candidate:
    columns = list(open_columns)
    if fixed_weights is not None:
        ev = evaluate(problem.weight_problem(columns), fixed_weights)
        return Candidate(arrangement, tuple(columns), ev, "user weights, no segments")
    start = np.full(len(columns), 1.0 / len(columns))
    w, ev = optimise_weights(problem.weight_problem(columns), start)
    why = "none allowed" if max_segments == 0 else f"up to {max_segments} per field"
    for level in range(max_segments):
        if ev.status == 0:
            why = "open fields meet every limit" if level == 0 else f"{level} round(s)"
            break
        if ev.dmax_pct > SEGMENT_HOT_SPOT_PCT:
            why = (
                f"not tried: open-field hot spot {ev.dmax_pct:.0f} % > {SEGMENT_HOT_SPOT_PCT:g} %,"
                " more than a few segments even out"
            )
            break
        region = problem.region(columns, ev)
        new = []
        for col in open_columns:
            seg = segment_beam(col.beam, region, f"{col.beam.name}_S{level + 1}")
            if seg is not None:
                new.append(problem.column(seg, col.beam.name))
        if not new:
            why = "no deliverable segment blocks the region at fault"
            break
        trial = [*columns, *new]
        w2, ev2 = optimise_weights(
            problem.weight_problem(trial), np.concatenate([w, np.zeros(len(new))])
        )
        if ev2.rank_key() >= ev.rank_key():
            why = f"{level} round(s); round {level + 1} did not improve the plan"
            break
        columns, w, ev = trial, w2, ev2
        why = f"{level + 1} round(s)"
    # Segments too small to deliver are dropped and the rest re-weighted.
    mu = np.array([c.beam.mu for c in columns]) * w
    keep = [i for i, c in enumerate(columns) if c.parent == c.beam.name or mu[i] >= MIN_SEGMENT_MU]
    if len(keep) < len(columns):
        columns = [columns[i] for i in keep]
        w, ev = optimise_weights(problem.weight_problem(columns), w[keep])
    return Candidate(arrangement, tuple(columns), ev, why)
