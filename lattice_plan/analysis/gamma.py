"""3D gamma index between a reference and an evaluated dose (global or local).

Reference points are the voxel centres of the reference grid whose dose is at
least ``threshold_percent`` of the normalisation dose. Around each, the
evaluated dose is interpolated trilinearly on a cubic lattice of search
offsets (pitch ``dta_mm / search_resolution``, the same in every direction)
out to ``max_gamma * dta_mm``; the grids may differ in spacing and origin.
Gamma values above ``max_gamma`` are reported as ``max_gamma`` (they fail
either way); so are reference points whose whole search sphere lies outside
the evaluated grid. The search finds the minimum over the lattice, so it can only
overestimate gamma: the true minimiser lies within pitch * sqrt(3) / 2 of a
lattice point (Low et al., Med Phys 25 (1998) 656; Low & Dempsey, Med Phys 30
(2003) 2455 on the effect of the search resolution).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.volume import Volume
from lattice_plan.kernels.gamma import corner_range_kji, gamma_search

log = logging.getLogger(__name__)

_MAX_OFFSETS = 2_000_000
_PASS_TOLERANCE = 1e-9  # gamma exactly 1 passes despite round-off in offsets and doses
_NEAR_GAMMA = 0.35  # offsets with r < 0.35 DTA are searched one by one before the cells


@dataclass(frozen=True, eq=False)
class GammaResult:
    """Gamma map on the reference grid (NaN where not evaluated) and its summary.

    Attributes:
        gamma: Volume (unit "1") on the reference grid; NaN below the threshold.
        pass_rate_percent: % of evaluated points with gamma <= 1 (to within 1e-9 round-off).
        n_evaluated: number of reference points above the threshold.
        dose_percent, dta_mm, local, threshold_percent, normalization_gy: the criteria used.
    """

    gamma: Volume
    pass_rate_percent: float
    n_evaluated: int
    dose_percent: float
    dta_mm: float
    local: bool
    threshold_percent: float
    normalization_gy: float
    max_gamma: float

    @property
    def evaluated_mask(self) -> NDArray[np.bool_]:
        return ~np.isnan(self.gamma.array)

    @property
    def mean_gamma(self) -> float:
        return float(np.nanmean(self.gamma.array))

    def __repr__(self) -> str:
        kind = "local" if self.local else "global"
        return (
            f"GammaResult({self.dose_percent:g} %/{self.dta_mm:g} mm {kind}, threshold "
            f"{self.threshold_percent:g} %, pass {self.pass_rate_percent:.2f} % of "
            f"{self.n_evaluated} points)"
        )


def search_offsets_mm(
    dta_mm: float, max_gamma: float, search_resolution: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cubic lattice of offsets (m, 3) in mm within ``max_gamma * dta_mm``, sorted by distance.

    Pitch ``dta_mm / search_resolution``. Returns the offsets and their r^2 / DTA^2.
    This is the set the gamma search minimises over.
    """
    step = dta_mm / search_resolution
    n = int(np.floor(max_gamma * search_resolution))
    a = np.arange(-n, n + 1, dtype=float) * step
    x, y, z = np.meshgrid(a, a, a, indexing="ij")
    off = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    d2 = (off**2).sum(axis=1) / dta_mm**2
    keep = d2 < max_gamma**2
    off, d2 = off[keep], d2[keep]
    order = np.argsort(d2, kind="stable")
    return off[order], d2[order]


def _cells(
    dta_mm: float, max_gamma: float, search_resolution: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, NDArray[np.float64]]:
    """Split the fine offset lattice into cubic cells of ``n x n x n`` offsets (n odd).

    Returns cell centres (mc, 3) mm sorted by distance, their distances, the cell
    radius (mm) and the fine offsets (mf, 3) relative to a centre, mm.
    """
    step = dta_mm / search_resolution
    n = max(1, round(search_resolution / 3) | 1)  # odd, about DTA/3 wide
    half = (n - 1) // 2
    f = np.arange(-half, half + 1, dtype=float) * step
    fx, fy, fz = np.meshgrid(f, f, f, indexing="ij")
    fine = np.stack([fx.ravel(), fy.ravel(), fz.ravel()], axis=1)
    cell_radius = float(np.sqrt(3.0) * half * step)
    pitch = n * step
    reach = max_gamma * dta_mm + cell_radius
    m = int(np.ceil(reach / pitch))
    c = np.arange(-m, m + 1, dtype=float) * pitch
    cx, cy, cz = np.meshgrid(c, c, c, indexing="ij")
    centres = np.stack([cx.ravel(), cy.ravel(), cz.ravel()], axis=1)
    dist = np.sqrt((centres**2).sum(axis=1))
    keep = dist - cell_radius < max_gamma * dta_mm
    centres, dist = centres[keep], dist[keep]
    order = np.argsort(dist, kind="stable")
    return centres[order], dist[order], cell_radius, fine


def _check_positive(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise AnalysisError(f"gamma {name} must be a positive number, got {value!r}")
    return v


def gamma_index(
    reference: Volume,
    evaluated: Volume,
    dose_percent: float = 3.0,
    dta_mm: float = 3.0,
    local: bool = False,
    threshold_percent: float = 10.0,
    normalization_gy: float | None = None,
    max_gamma: float = 2.0,
    search_resolution: int = 10,
) -> GammaResult:
    """3D gamma of ``evaluated`` against ``reference`` (both dose Volumes in Gy).

    ``dose_percent``: dose-difference criterion, % of ``normalization_gy``
    (global; default the reference maximum) or of the local reference dose
    (``local=True``). ``dta_mm``: distance to agreement. Points with reference
    dose below ``threshold_percent`` % of the normalisation dose are not
    evaluated. ``search_resolution``: search pitch is ``dta_mm / search_resolution``.
    """
    for name, vol in (("reference", reference), ("evaluated", evaluated)):
        if not isinstance(vol, Volume) or vol.unit != "Gy":
            raise AnalysisError(f"gamma {name} dose must be a Volume in Gy")
        if not np.all(np.isfinite(vol.array)):
            raise AnalysisError(f"gamma {name} dose holds NaN or infinite values")
    dose_pct = _check_positive("dose_percent", dose_percent)
    dta = _check_positive("dta_mm", dta_mm)
    cap = _check_positive("max_gamma", max_gamma)
    res = int(search_resolution)
    if res < 1 or res != search_resolution:
        raise AnalysisError(
            f"search_resolution must be a whole number >= 1, got {search_resolution!r}"
        )
    thr = float(threshold_percent)
    if not 0 <= thr < 100:
        raise AnalysisError(f"threshold_percent must lie in [0, 100), got {threshold_percent!r}")
    ref = np.asarray(reference.array, dtype=float)
    norm = float(ref.max()) if normalization_gy is None else float(normalization_gy)
    if not np.isfinite(norm) or norm <= 0:
        raise AnalysisError(
            f"gamma normalisation dose must be positive, got {norm!r} (is the reference dose all zero?)"
        )
    select = ref >= thr / 100.0 * norm
    if local:
        select &= ref > 0  # a local criterion is undefined at zero dose
    n_eval = int(np.count_nonzero(select))
    gamma_map = np.full(reference.grid.shape, np.nan)
    if n_eval == 0:
        raise AnalysisError(
            f"no reference point reaches the {thr:g} % threshold ({thr / 100 * norm:.4g} Gy); "
            "lower threshold_percent or check the normalisation dose"
        )

    centres_mm, cell_dist, cell_radius, fine_mm = _cells(dta, cap, res)
    if len(centres_mm) * len(fine_mm) > _MAX_OFFSETS:
        raise AnalysisError(
            f"max_gamma {cap:g} with search_resolution {res} needs too many search offsets; "
            "lower one of them"
        )
    near_mm, near_d2 = search_offsets_mm(dta, min(cap, _NEAR_GAMMA), res)
    T = evaluated.grid.ijk_from_lps
    k, j, i = np.nonzero(select)
    pts_lps = reference.grid.points_lps_mm(np.stack([i, j, k], axis=1).astype(float))
    pts_ijk = pts_lps @ T[:3, :3].T + T[:3, 3]
    ref_dose = ref[select]
    if local:
        inv_dd2 = 1.0 / (dose_pct / 100.0 * ref_dose) ** 2
    else:
        inv_dd2 = np.full(n_eval, 1.0 / (dose_pct / 100.0 * norm) ** 2)
    ev = np.ascontiguousarray(evaluated.array, dtype=np.float64)
    cell_shape = tuple(max(n - 1, 1) for n in ev.shape)
    cell_min, cell_max = np.empty(cell_shape), np.empty(cell_shape)
    corner_range_kji(ev, cell_min, cell_max)
    lin = T[:3, :3]
    half_mm = cell_radius / np.sqrt(3.0)
    box_half_ijk = np.abs(lin).sum(axis=1) * half_mm
    out = np.empty(n_eval)
    gamma_search(
        ev,
        cell_min,
        cell_max,
        np.ascontiguousarray(pts_ijk[:, ::-1]),
        np.ascontiguousarray(ref_dose),
        inv_dd2,
        np.ascontiguousarray((near_mm @ lin.T)[:, ::-1]),
        np.ascontiguousarray(near_d2),
        np.ascontiguousarray((centres_mm @ lin.T)[:, ::-1]),
        np.ascontiguousarray(centres_mm),
        np.ascontiguousarray(cell_dist),
        cell_radius,
        np.ascontiguousarray(box_half_ijk[::-1]),
        np.ascontiguousarray((fine_mm @ lin.T)[:, ::-1]),
        np.ascontiguousarray(fine_mm),
        1.0 / dta**2,
        cap * cap,
        out,
    )
    gamma = np.sqrt(out)
    gamma_map[select] = gamma
    pass_rate = 100.0 * float(np.count_nonzero(gamma <= 1.0 + _PASS_TOLERANCE)) / n_eval
    log.debug("gamma: %d points, pass %.2f %%", n_eval, pass_rate)
    return GammaResult(
        Volume(gamma_map, reference.grid, "1"),
        pass_rate,
        n_eval,
        dose_pct,
        dta,
        bool(local),
        thr,
        norm,
        cap,
    )
