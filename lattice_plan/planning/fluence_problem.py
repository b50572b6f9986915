"""The fluence optimisation problem: dose operators, objective terms and F(x) with its gradient.

For beamlet weights x >= 0 (all beams' fluence maps, concatenated beam by
beam, each map row-major [ny, nx])::

    F(x) = sum_t w_t f_t(A_t x) / s^2  +  lambda * S(x)

``A`` is a dose operator on a voxel subset (the voxels of the structures that
have objectives), ``A_t`` its rows of term t, ``f_t`` the objective's penalty
(Gy^2, see :mod:`lattice_plan.planning.objectives`), ``s`` a dose scale
(the prescription, so F is dimensionless), and ``S`` the smoothness penalty:
the mean squared difference of neighbouring beamlets (along both map axes)
relative to the mean initial weight squared, so that ``lambda`` is
dimensionless too. The gradient uses the operator's adjoint,
``grad = sum_t w_t A_t^T f_t'(A_t x) / s^2 + lambda * S'(x)``, so no dense
dose-influence matrix is needed; :class:`MatrixOperator` wraps an explicit
matrix for small problems and tests.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from lattice_plan.errors import PlanningError
from lattice_plan.geometry.grid import Grid
from lattice_plan.planning.layout import FluenceLayout
from lattice_plan.planning.objectives import Objective, VoxelContext, check_objectives


@runtime_checkable
class DoseOperator(Protocol):
    """Linear map from beamlet weights (n_beamlets,) to dose (Gy) at voxels (n_voxels,)."""

    @property
    def n_beamlets(self) -> int: ...

    @property
    def n_voxels(self) -> int: ...

    def forward(self, x: NDArray[np.float64]) -> NDArray[np.float64]: ...

    def adjoint(self, g: NDArray[np.float64]) -> NDArray[np.float64]: ...


@dataclass(frozen=True, eq=False)
class MatrixOperator:
    """An explicit dose-influence matrix (n_voxels, n_beamlets), dense or scipy sparse."""

    matrix: NDArray[np.float64] | sparse.sparray | sparse.spmatrix

    def __post_init__(self) -> None:
        m = self.matrix
        if m.ndim != 2 or min(m.shape) < 1:
            raise PlanningError(
                f"the dose-influence matrix must be 2D (voxels, beamlets), got shape {m.shape}"
            )
        if not sparse.issparse(m):
            m = np.array(m, dtype=float)
            m.setflags(write=False)
            object.__setattr__(self, "matrix", m)

    @property
    def n_voxels(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_beamlets(self) -> int:
        return int(self.matrix.shape[1])

    def forward(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(self.matrix @ x, dtype=float)

    def adjoint(self, g: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(self.matrix.T @ g, dtype=float)

    def rows(self, rows: NDArray[np.int64]) -> MatrixOperator:
        """The operator on the voxels ``rows`` (positions in this operator's output) only."""
        idx = np.asarray(rows, dtype=np.int64)
        m = sparse.csr_array(self.matrix) if sparse.issparse(self.matrix) else self.matrix
        return MatrixOperator(m[idx])


@dataclass(frozen=True, eq=False)
class ObjectiveTerm:
    """One objective, prepared, and the positions of its voxels in the operator's output."""

    objective: Objective
    voxels: NDArray[np.int64]

    def __post_init__(self) -> None:
        v = np.asarray(self.voxels, dtype=np.int64)
        if v.ndim != 1 or v.size == 0:
            raise PlanningError(
                f"objective '{self.objective.describe()}' has no voxels to act on; is "
                f"{self.objective.structure!r} empty on the dose grid?"
            )
        v.setflags(write=False)
        object.__setattr__(self, "voxels", v)


def _thinned(mask: NDArray[np.bool_], max_voxels: int) -> NDArray[np.bool_]:
    """``mask`` on the sub-lattice of every s-th voxel along each axis, s the smallest that fits."""
    n = int(np.count_nonzero(mask))
    stride = 1
    while n > max_voxels and stride < 8:
        stride += 1
        lattice = np.zeros(mask.shape, dtype=bool)
        lattice[::stride, ::stride, ::stride] = True
        thinned = mask & lattice
        n = int(np.count_nonzero(thinned))
        if n <= max_voxels:
            return thinned
    return mask if stride == 1 else thinned


def objective_terms(
    objectives: Sequence[Objective],
    masks: Mapping[str, NDArray[np.bool_]],
    grid: Grid,
    max_voxels: int | None = None,
) -> tuple[NDArray[np.int64], list[ObjectiveTerm]]:
    """The voxel subset of a set of objectives and their terms on it.

    ``masks`` holds a boolean mask [k, j, i] on ``grid`` (the dose grid) for
    every structure the objectives name (and every fall-off target). Returns the
    sorted flat indices of the union of the objectives' voxels (the rows the
    dose operator must evaluate) and one :class:`ObjectiveTerm` per objective,
    whose ``voxels`` index into that subset.

    ``max_voxels``: a structure with more voxels is sampled on the sub-lattice of
    every s-th voxel along each axis (s = 2, 3, ...: the smallest that brings
    it under the cap), so large structures such as the normal tissue cost less
    per iteration; its objective is then the same average over a regular sample.
    """
    check_objectives(objectives)
    lookup = {name.casefold(): name for name in masks}
    flat: dict[str, NDArray[np.int64]] = {}
    named: dict[str, NDArray[np.bool_]] = {}
    for name, mask in masks.items():
        if mask.shape != grid.shape:
            raise PlanningError(
                f"mask of {name!r} has shape {mask.shape}, the dose grid {grid.shape}"
            )
        named[name] = mask
    for obj in objectives:
        key = obj.structure.casefold()
        if key not in lookup:
            raise PlanningError(
                f"objective '{obj.describe()}' names {obj.structure!r}, which is not among the "
                f"structures ({', '.join(masks)})"
            )
        name = lookup[key]
        mask = named[name]
        if max_voxels is not None:
            mask = _thinned(mask, int(max_voxels))
        flat[obj.structure] = np.flatnonzero(mask)
        named.setdefault(obj.structure, named[name])
        if flat[obj.structure].size == 0:
            raise PlanningError(
                f"objective '{obj.describe()}': structure {obj.structure!r} has no voxels on the "
                f"dose grid (spacing {grid.spacing_mm} mm); use a finer dose grid or drop it"
            )
    union = np.zeros(grid.n_voxels, dtype=bool)
    for idx in flat.values():
        union[idx] = True
    subset = np.flatnonzero(union)
    context = VoxelContext(grid, named, flat)
    terms = [
        ObjectiveTerm(obj.prepare(context), np.searchsorted(subset, flat[obj.structure]))
        for obj in objectives
    ]
    return subset, terms


class FluenceObjective:
    """F(x) and its gradient (call it with x); keeps the last evaluation's weighted terms.

    ``x_ref`` is the fluence scale of the smoothness penalty (a typical beamlet weight).
    """

    def __init__(
        self,
        operator: DoseOperator,
        terms: Sequence[ObjectiveTerm],
        layout: FluenceLayout,
        dose_scale_gy: float,
        smoothness: float,
        x_ref: float,
    ) -> None:
        self.operator = operator
        self.terms = list(terms)
        self.inv_s2 = 1.0 / dose_scale_gy**2
        self.D = layout.difference_matrix()
        self.n_pairs = max(self.D.shape[0], 1)
        self.smooth_coef = smoothness / (self.n_pairs * x_ref**2)
        self.last_terms: dict[str, float] = {}
        self.evaluations = 0
        self._last: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def on(self, operator: DoseOperator, terms: Sequence[ObjectiveTerm]) -> FluenceObjective:
        """The same F (dose scale, smoothness) with another operator and terms (an active set)."""
        other = copy.copy(self)
        other.operator = operator
        other.terms = list(terms)
        other.last_terms = {}
        other.evaluations = 0
        other._last = None
        return other

    def dose_at(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The dose at the operator's voxels for weights x (the last evaluation's when x is its x)."""
        if self._last is not None and np.array_equal(self._last[0], x):
            return self._last[1]
        return self.operator.forward(x)

    def dose_terms(
        self, dose: NDArray[np.float64]
    ) -> tuple[float, NDArray[np.float64], dict[str, float]]:
        """The weighted objective terms of a dose at the operator's voxels, and their gradient."""
        g_dose = np.zeros_like(dose)
        total = 0.0
        values: dict[str, float] = {}
        for t in self.terms:
            v, g = t.objective.evaluate(dose[t.voxels])
            w = t.objective.weight * self.inv_s2
            total += w * v
            values[t.objective.describe()] = w * v
            g_dose[t.voxels] += w * g  # a term's voxels are distinct
        return total, g_dose, values

    def smoothness_term(self, x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        """The weighted smoothness penalty at x and the neighbour differences D x."""
        dx = self.D @ x
        return self.smooth_coef * float(dx @ dx), dx

    def value(self, x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        """F(x) without its gradient, and the dose at the operator's voxels; sets ``last_terms``."""
        dose = self.operator.forward(x)
        total, _, values = self.dose_terms(dose)
        if self.smooth_coef > 0:
            s, _ = self.smoothness_term(x)
            total += s
            values["smoothness"] = s
        self.last_terms = values
        return total, dose

    def __call__(self, x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        self.evaluations += 1
        dose = self.operator.forward(x)
        self._last = (np.array(x, dtype=float), dose)
        total, g_dose, values = self.dose_terms(dose)
        grad = self.operator.adjoint(g_dose)
        if self.smooth_coef > 0:
            s, dx = self.smoothness_term(x)
            total += s
            values["smoothness"] = s
            grad = grad + (2.0 * self.smooth_coef) * (self.D.T @ dx)
        self.last_terms = values
        return total, grad
