"""CRT beam weights against the prescription, the hot-spot limit and the protocol's dose limits.

Each field (an open conformal beam or a field-in-field segment) has its dose
computed once; the plan dose is their weighted sum, linear in the weights.
The weights come from a sequence of linear programmes (scipy's HiGHS):

    minimise   t / Rx + P * sum_k s_k / Rx + mu * mean body dose / Rx
    subject to dose >= Rx          at the PTV voxels meant to be covered,
               dose <= t           at the voxels that could be the hottest,
               dose <= bound_k + s_k   (or >= bound_k - s_k) at the voxels that
                                   limit k bounds (:meth:`DoseLimit.planning_rows`),
               w >= 0, s >= 0,

so the hot spot is as low as the limits allow and a limit is broken only where
no weighting meets it (its slack s_k says by how much). The coverage set leaves
out the coldest ``100 - 95 + COVERAGE_SLACK_PCT`` % of the PTV (the D95%
normalisation lets 5 % lie below the prescription), and which organ voxels may
exceed a volume limit's threshold follows the previous solution; so the
programme is solved again from each solution a few times, and the weighting
whose normalised plan is best (:func:`evaluate`) is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, sparse

from lattice_plan.errors import PlanningError
from lattice_plan.planning.crt_limits import MINOR, PER_PROTOCOL, DoseLimit

log = logging.getLogger(__name__)

#: Hot-spot limit of the issue and of ICRU 50/62: 107 % of the prescription.
MAX_DOSE_PCT = 107.0
# The coverage rows leave out the coldest (5 - this) % of the PTV; the plan is then
# normalised on its sub-voxel D95, which a few tenths of a per cent can move.
COVERAGE_SLACK_PCT = 1.5
# Each Gy a limit is broken by costs this many Gy of hot spot.
_LIMIT_PENALTY = 20.0
# A little integral dose in the objective breaks ties towards less dose outside the PTV.
_BODY_WEIGHT = 0.02
# Voxels whose dose is below this fraction of a bound are left out of that bound's rows
# (they cannot reach it in one step), and each set of rows keeps only the voxels nearest
# its bound; later rounds bring in the voxels that come close.
_ROW_FLOOR = 0.6
_MAX_ROWS = 800
# Hot-spot rows: the voxels within this fraction of the current maximum.
_HOT_FRACTION = 0.9
_ROUNDS = 6


def _dose(w: NDArray[np.float64], per_field: NDArray[np.floating]) -> NDArray[np.float64]:
    """Voxel doses of weights ``w``, in the per-field doses' precision (float32 is enough and
    keeps the products over the whole body fast)."""
    return (np.asarray(w, dtype=per_field.dtype) @ per_field).astype(np.float64)


@dataclass(frozen=True, eq=False)
class WeightProblem:
    """Per-field doses (Gy per unit weight, whole course; float32 or float64) on the voxels.

    ptv: (n_fields, n_ptv); outside: (n_fields, n_out) the other body voxels;
    limits: each DoseLimit with its structure's voxel doses (n_fields, n_voxels);
    body_mean: (n_fields,) mean body dose; voxel_cc: dose-grid voxel volume.
    """

    ptv: NDArray[np.floating]
    outside: NDArray[np.floating]
    limits: tuple[tuple[DoseLimit, NDArray[np.floating]], ...]
    body_mean: NDArray[np.float64]
    voxel_cc: float
    fractions: int
    rx_gy: float

    @property
    def n_fields(self) -> int:
        return int(self.ptv.shape[0])


@dataclass(frozen=True)
class Evaluation:
    """A weighting normalised to PTV D95% = Rx (voxel centres) and judged.

    scale: the factor applied to the weights for that; dmax_pct: body maximum, % of Rx;
    values/outcomes: per limit; hi: ICRU 83 homogeneity index (D2 - D98) / D50 of the
    PTV; ci: Paddick conformity index (PTV volume in the Rx isodose)^2 / (PTV volume x
    Rx isodose volume); status: 0 meets the protocol and the hot-spot limit, 1 at most
    minor deviations, 2 otherwise; worst: the largest relative excess over a limit.
    """

    weights: tuple[float, ...]
    dmax_pct: float
    ptv_dmax_pct: float
    values: tuple[float, ...]
    outcomes: tuple[str, ...]
    hi: float
    ci: float
    status: int
    worst: float

    @property
    def n_broken(self) -> int:
        """How many limits (the hot-spot limit included) are not met per protocol."""
        return sum(o != PER_PROTOCOL for o in self.outcomes) + (self.dmax_pct > MAX_DOSE_PCT)

    def rank_key(self) -> tuple[float, ...]:
        """Smaller is better: the status, how many limits are broken, the largest excess,
        then homogeneity and conformity (to 0.01, so that near-equal plans are ties)."""
        return (
            self.status,
            self.n_broken,
            round(self.worst, 3),
            round(self.hi, 2),
            -round(self.ci, 2),
        )


def evaluate(problem: WeightProblem, w: NDArray[np.float64]) -> Evaluation:
    """The normalised plan of weights ``w`` judged against the limits (see Evaluation)."""
    rx = problem.rx_gy
    d_ptv = _dose(w, problem.ptv)
    d95 = float(np.percentile(d_ptv, 5.0))
    if not d95 > 0:
        raise PlanningError("the fields give no dose to the PTV; check the apertures")
    scale = rx / d95
    w = w * scale
    d_ptv = d_ptv * scale
    d_out = _dose(w, problem.outside) if problem.outside.size else np.zeros(1)
    ptv_max = float(d_ptv.max())
    dmax = max(ptv_max, float(d_out.max()))
    values, outcomes, excess = [], [], [0.0]
    for lim, dose in problem.limits:
        v = lim.value(_dose(w, dose), problem.voxel_cc, problem.fractions, rx)
        values.append(v)
        outcomes.append(lim.outcome(v))
        excess.append(lim.excess(v))
    dmax_pct = 100.0 * dmax / rx
    excess.append(max(dmax_pct - MAX_DOSE_PCT, 0.0) / MAX_DOSE_PCT)
    d2, d50, d98 = np.percentile(d_ptv, [98.0, 50.0, 2.0])
    tv_piv = float(np.count_nonzero(d_ptv >= rx))
    piv = tv_piv + float(np.count_nonzero(d_out >= rx))
    ci = tv_piv**2 / (d_ptv.size * piv) if piv > 0 else 0.0
    hot_ok = dmax_pct <= MAX_DOSE_PCT + 1e-9
    if hot_ok and all(o == PER_PROTOCOL for o in outcomes):
        status = 0
    elif hot_ok and all(o in (PER_PROTOCOL, MINOR) for o in outcomes):
        status = 1
    else:
        status = 2
    return Evaluation(
        tuple(float(x) for x in w),
        dmax_pct,
        100.0 * ptv_max / rx,
        tuple(values),
        tuple(outcomes),
        float((d2 - d98) / d50),
        float(ci),
        status,
        float(max(excess)),
    )


def _lp(
    problem: WeightProblem, w: NDArray[np.float64], seen: dict[object, NDArray[np.intp]]
) -> NDArray[np.float64] | None:
    """One linear programme from the current weights ``w`` (see the module docstring).

    ``seen`` keeps the voxels bounded in earlier rounds (hot-spot and limit rows), so
    that a voxel once near its bound stays bounded: the rounds converge instead of
    trading one hot spot for another (a cutting-plane method)."""
    rx = problem.rx_gy
    n = problem.n_fields
    d_ptv = _dose(w, problem.ptv)
    d_out = _dose(w, problem.outside)
    # Coverage: all but the coldest voxels (ranked by the current dose); the coldest of
    # them bind, so only those get rows.
    n_cov = int(np.ceil(d_ptv.size * (1.0 - (5.0 - COVERAGE_SLACK_PCT) / 100.0)))
    cover = np.argsort(-d_ptv, kind="stable")[:n_cov][::-1][:_MAX_ROWS]
    both = np.concatenate([d_ptv, d_out])
    near_max = np.flatnonzero(both >= _HOT_FRACTION * both.max())
    hottest = near_max[np.argsort(-both[near_max], kind="stable")[:_MAX_ROWS]]
    hottest = seen["hot"] = np.union1d(seen.get("hot", hottest), hottest)
    blocks_a: list[NDArray[np.float64]] = []  # rows over [w]
    t_col: list[float] = []  # coefficient of t in each block row
    slack: list[int] = []  # which slack (-1: none) each row uses
    rhs: list[NDArray[np.float64]] = []

    def add(a: NDArray[np.float64], b: float, upper: bool, t: float, k: int) -> None:
        if a.shape[1] == 0:
            return
        s = 1.0 if upper else -1.0
        blocks_a.append(s * a.T.astype(np.float64))
        t_col.extend([t] * a.shape[1])
        slack.extend([k] * a.shape[1])
        rhs.append(np.full(a.shape[1], s * b))

    add(problem.ptv[:, cover], rx, False, 0.0, -1)
    n_ptv = d_ptv.size
    hot = np.concatenate(
        [
            problem.ptv[:, hottest[hottest < n_ptv]],
            problem.outside[:, hottest[hottest >= n_ptv] - n_ptv],
        ],
        axis=1,
    )
    add(hot, 0.0, True, -1.0, -1)
    n_slack = 0
    for k, (lim, dose) in enumerate(problem.limits):
        cur = _dose(w, dose)
        if lim.kind == "mean":
            f, bound = lim.mean_row_factor(cur, problem.fractions, rx)
            row = (dose @ f / f.size)[:, None]
            add(row, bound, lim.upper, 0.0, n_slack)
        else:
            idx, bound, upper = lim.planning_rows(cur, problem.voxel_cc, problem.fractions, rx)
            # The rows nearest their bound bind (idx is ranked hottest first).
            keep = idx[cur[idx] >= _ROW_FLOOR * bound][:_MAX_ROWS] if upper else idx[-_MAX_ROWS:]
            was = seen.get(k, np.zeros(cur.size, dtype=bool))
            now = np.zeros(cur.size, dtype=bool)
            now[idx] = was[idx]  # bounded before and still not among the voxels allowed over
            now[keep] = True
            seen[k] = now
            keep = np.flatnonzero(now)
            add(dose[:, keep], bound, upper, 0.0, n_slack)
        n_slack += 1
    a_w = np.concatenate(blocks_a, axis=0)
    m = a_w.shape[0]
    t_coef = np.asarray(t_col)[:, None]
    rows_s = np.asarray(slack)
    s_mat = sparse.csr_matrix(
        (
            -np.ones(np.count_nonzero(rows_s >= 0)),
            (np.flatnonzero(rows_s >= 0), rows_s[rows_s >= 0]),
        ),
        shape=(m, n_slack),
    )
    a_ub = sparse.hstack([sparse.csr_matrix(np.hstack([a_w, t_coef])), s_mat], format="csr")
    c = np.concatenate(
        [_BODY_WEIGHT * problem.body_mean / rx, [1.0 / rx], np.full(n_slack, _LIMIT_PENALTY / rx)]
    )
    res = optimize.linprog(c, A_ub=a_ub, b_ub=np.concatenate(rhs), bounds=(0, None), method="highs")
    if res.status != 0:
        log.debug("CRT weights: linear programme not solved (%s)", res.message)
        return None
    return np.asarray(res.x[:n])


def optimise_weights(
    problem: WeightProblem, start: NDArray[np.float64]
) -> tuple[NDArray[np.float64], Evaluation]:
    """The best weighting found from ``start`` by repeated linear programmes (normalised)."""
    w = np.asarray(start, dtype=float)
    best = evaluate(problem, w)
    w = np.asarray(best.weights)
    seen: dict[object, NDArray[np.intp]] = {}
    for _ in range(_ROUNDS):
        new = _lp(problem, w, seen)
        if new is None or not np.any(new > 0):
            break
        ev = evaluate(problem, new)
        step = np.abs(np.asarray(ev.weights) - w).max()
        w = np.asarray(ev.weights)
        if ev.rank_key() < best.rank_key():
            best = ev
        if step < 1e-3 * w.max():
            break
    return np.asarray(best.weights), best
