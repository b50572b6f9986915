"""The active set of the fluence optimiser: the objective voxels worth evaluating every iteration.

A ceiling objective (a maximum, a valley, a fall-off: each voxel's penalty is
zero below its own ceiling) adds nothing, neither to F nor to its gradient,
from a voxel whose dose is below the ceiling. Most voxels of the normal tissue,
the skin or a distant organ sit far below theirs, so the optimiser evaluates a
ceiling only at the voxels within a margin (a fraction of the prescription) of
it, and a maximum-mean objective (MeanDose "max") only while its mean is within
the margin of its level. Every other objective (targets, minima, DVH points,
gEUD) keeps all its voxels. A ceiling term on the active set keeps the
normalisation of the whole structure (the mean over all its voxels), so F on
the active set equals the exact F as long as no left-out voxel rises to its
ceiling. :class:`ActiveProblem` is F on the active set; the optimiser checks
the set on every voxel every few iterations and replaces it when some voxel
came within half the margin of its ceiling: F and its gradient at that point
do not change (the voxels added are still under their ceilings), so L-BFGS-B
goes on with its curvature pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from lattice_plan.planning.fluence_problem import DoseOperator, FluenceObjective, ObjectiveTerm
from lattice_plan.planning.objectives import MeanDose, Objective


@dataclass(frozen=True, eq=False)
class _CeilingPart(Objective):
    """A ceiling objective on some of its voxels, normalised by the whole structure's voxel count."""

    levels: NDArray[np.float64] = field(kw_only=True)
    n_total: int = field(kw_only=True)
    source: str = field(kw_only=True)
    kind: ClassVar[str] = "ceiling part"

    def evaluate(self, dose_gy: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        dev = np.maximum(np.asarray(dose_gy, dtype=float) - self.levels, 0.0)
        return float(np.dot(dev, dev) / self.n_total), (2.0 / self.n_total) * dev

    def describe(self) -> str:
        return self.source


def _max_mean(obj: Objective) -> bool:
    return isinstance(obj, MeanDose) and obj.sense == "max"


@dataclass(frozen=True, eq=False)
class ActiveSet:
    """Which voxels of each term are evaluated (``keep[t]``: indices into ``terms[t].voxels``).

    ``rows``: the sorted union of the kept voxels (positions in the full
    operator's output); ``terms``: the terms on the active set, indexing into
    ``rows`` (a term with no kept voxel is left out).
    """

    keep: tuple[NDArray[np.int64], ...]
    rows: NDArray[np.int64]
    terms: tuple[ObjectiveTerm, ...]

    @property
    def n_voxels(self) -> int:
        return int(self.rows.size)

    def lacks(self, keep: Sequence[NDArray[np.int64]]) -> bool:
        """True when ``keep`` (per term, as :attr:`keep`) has some voxel that this set leaves out."""
        return any(
            np.setdiff1d(b, a, assume_unique=True).size > 0
            for a, b in zip(self.keep, keep, strict=True)
        )


def _kept_voxels(
    terms: Sequence[ObjectiveTerm], dose_gy: NDArray[np.float64], margin_gy: float
) -> list[NDArray[np.int64]]:
    """Per term, the indices into its voxels that the active set for ``dose_gy`` keeps."""
    keep: list[NDArray[np.int64]] = []
    for t in terms:
        d = dose_gy[t.voxels]
        ceiling = t.objective.voxel_ceiling_gy
        if ceiling is not None:
            keep.append(np.flatnonzero(d > np.asarray(ceiling) - margin_gy))
        elif _max_mean(t.objective) and d.mean() <= t.objective.dose_gy - margin_gy:  # type: ignore[attr-defined]
            keep.append(np.zeros(0, dtype=np.int64))
        else:
            keep.append(np.arange(t.voxels.size, dtype=np.int64))
    if not any(k.size for k in keep):  # every term far under its ceiling: keep them all
        keep = [np.arange(t.voxels.size, dtype=np.int64) for t in terms]
    return keep


def select_active(
    terms: Sequence[ObjectiveTerm], dose_gy: NDArray[np.float64], margin_gy: float
) -> ActiveSet:
    """The active set for ``dose_gy`` (Gy at every voxel of the full operator's output)."""
    keep = _kept_voxels(terms, dose_gy, margin_gy)
    rows = np.unique(np.concatenate([t.voxels[k] for t, k in zip(terms, keep, strict=True)]))
    restricted = []
    for t, k in zip(terms, keep, strict=True):
        if k.size == 0:
            continue
        pos = np.searchsorted(rows, t.voxels[k])
        if k.size == t.voxels.size:
            restricted.append(ObjectiveTerm(t.objective, pos))
            continue
        ceiling = np.broadcast_to(
            np.asarray(t.objective.voxel_ceiling_gy, dtype=float), t.voxels.shape
        )
        part = _CeilingPart(
            t.objective.structure,
            weight=t.objective.weight,
            levels=np.ascontiguousarray(ceiling[k]),
            n_total=int(t.voxels.size),
            source=t.objective.describe(),
        )
        restricted.append(ObjectiveTerm(part, pos))
    return ActiveSet(tuple(keep), rows, tuple(restricted))


class ActiveProblem:
    """F on the active set of ``full`` (callable like :class:`FluenceObjective`), which it renews.

    ``on_rows(rows)``: the full problem's operator on some of its voxels;
    ``margin_gy``: how far under its ceiling a voxel is still evaluated.
    """

    def __init__(
        self,
        full: FluenceObjective,
        on_rows: Callable[[NDArray[np.int64]], DoseOperator],
        margin_gy: float,
        dose_gy: NDArray[np.float64],
    ) -> None:
        self.full = full
        self.on_rows = on_rows
        self.margin_gy = float(margin_gy)
        self._done = 0
        self._use(select_active(full.terms, dose_gy, self.margin_gy))

    def _use(self, active: ActiveSet) -> None:
        self.active = active
        self.problem = self.full.on(self.on_rows(active.rows), active.terms)

    @property
    def evaluations(self) -> int:
        return self._done + self.problem.evaluations

    def __call__(self, x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        return self.problem(x)

    def dose_view(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The dose at every voxel of the full problem: NaN where it is not evaluated."""
        out = np.full(self.full.operator.n_voxels, np.nan)
        out[self.active.rows] = self.problem.dose_at(x)
        return out

    def renew(self, dose_gy: NDArray[np.float64]) -> bool:
        """Take a new active set if some left-out voxel came within half the margin (dose at all voxels)."""
        if not self.active.lacks(_kept_voxels(self.full.terms, dose_gy, self.margin_gy / 2)):
            return False
        self._done += self.problem.evaluations
        self._use(select_active(self.full.terms, dose_gy, self.margin_gy))
        return True
