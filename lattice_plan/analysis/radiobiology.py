"""Linear-quadratic radiobiology: BED and EQD2 per voxel, alpha/beta per structure, gEUD and EUD.

With ``n`` equal fractions of a total dose ``D`` (Gy) and tissue ratio
alpha/beta (Gy):

    BED  = D * (1 + D / (n * alpha/beta))
    EQD2 = BED / (1 + 2 / (alpha/beta))

(Fowler, Br J Radiol 62 (1989) 679; Joiner & van der Kogel, Basic Clinical
Radiobiology). gEUD = (sum_i v_i D_i^a)^(1/a) with relative volumes v_i
(Niemierko, Med Phys 26 (1999) 1100). The cell-survival EUD of a target is
the uniform dose, in the same number of fractions, that leaves the same mean
LQ surviving fraction (Niemierko, Med Phys 24 (1997) 103).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import TARGET_KINDS, Structure
from lattice_plan.geometry.volume import Volume, resample_array

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lattice_plan.analysis.dvh import DVH

ALPHA_BETA_TUMOUR_GY = 10.0
ALPHA_BETA_LATE_GY = 3.0
ALPHA_BETA_SPINAL_CORD_GY = 2.0

_CORD_NAME = re.compile(r"cord|cauda|canal|myelon|medulla", re.IGNORECASE)


def _check_fractionation(n_fractions: int, alpha_beta_gy: float | ArrayLike) -> None:
    if isinstance(n_fractions, bool) or int(n_fractions) != n_fractions or n_fractions < 1:
        raise AnalysisError(
            f"n_fractions must be a positive whole number, got {n_fractions!r}; take it from the plan"
        )
    ab = np.asarray(alpha_beta_gy, dtype=float)
    if not np.all(np.isfinite(ab)) or np.any(ab <= 0):
        raise AnalysisError(
            f"alpha/beta must be positive and finite (Gy), got {alpha_beta_gy!r}; "
            "typical values: tumour 10, late-responding normal tissue 3, spinal cord 2"
        )


def bed_gy(
    dose_gy: ArrayLike, n_fractions: int, alpha_beta_gy: float | ArrayLike
) -> NDArray[np.float64]:
    """Biologically effective dose (Gy) of total dose ``dose_gy`` given in ``n_fractions``."""
    _check_fractionation(n_fractions, alpha_beta_gy)
    d = np.asarray(dose_gy, dtype=float)
    return d * (1.0 + d / (n_fractions * np.asarray(alpha_beta_gy, dtype=float)))


def eqd2_gy(
    dose_gy: ArrayLike, n_fractions: int, alpha_beta_gy: float | ArrayLike
) -> NDArray[np.float64]:
    """Equivalent dose in 2 Gy fractions (Gy) of total dose ``dose_gy`` in ``n_fractions``."""
    ab = np.asarray(alpha_beta_gy, dtype=float)
    return bed_gy(dose_gy, n_fractions, ab) / (1.0 + 2.0 / ab)


def default_alpha_beta_gy(structure: Structure) -> float:
    """The default alpha/beta of a structure (Gy).

    Targets (GTV, CTV, PTV, vertices, core, valley): 10; spinal cord and cauda
    equina (recognised by name: cord, cauda, canal, myelon, medulla): 2; every
    other tissue (late-responding normal tissue): 3.
    """
    if structure.kind in TARGET_KINDS:
        return ALPHA_BETA_TUMOUR_GY
    if _CORD_NAME.search(structure.name):
        return ALPHA_BETA_SPINAL_CORD_GY
    return ALPHA_BETA_LATE_GY


def alpha_beta_map_gy(
    grid: Grid,
    structures: Sequence[Structure],
    alpha_beta_gy: dict[str, float] | None = None,
    background_gy: float = ALPHA_BETA_LATE_GY,
) -> NDArray[np.float64]:
    """Alpha/beta per voxel of ``grid`` (Gy), painted from ``structures`` in order.

    Each structure takes its value from ``alpha_beta_gy`` (by name,
    case-insensitive) or :func:`default_alpha_beta_gy`; later structures
    overwrite earlier ones where they overlap, so list the structure that
    should win last (e.g. the spinal cord after the body). Voxels in no
    structure get ``background_gy``. Structures on another grid are resampled
    (nearest voxel centre).
    """
    given = alpha_beta_gy or {}
    overrides = {k.casefold(): float(v) for k, v in given.items()}
    names = {s.name.casefold() for s in structures}
    unknown = sorted(k for k in given if k.casefold() not in names)
    if unknown:
        raise AnalysisError(
            f"alpha/beta given for {unknown}, which are not among the structures "
            f"{[s.name for s in structures]}; check the names"
        )
    _check_fractionation(1, [background_gy, *overrides.values()])
    out = np.full(grid.shape, float(background_gy))
    for s in structures:
        ab = overrides.get(s.name.casefold(), default_alpha_beta_gy(s))
        if s.grid.same_as(grid):
            mask = s.mask
        else:
            mask = resample_array(s.mask.astype(float), s.grid, grid, order=0) > 0.5
        out[mask] = ab
    return out


def eqd2_volume(
    dose: Volume,
    n_fractions: int,
    structures: Sequence[Structure] = (),
    alpha_beta_gy: dict[str, float] | None = None,
    background_gy: float = ALPHA_BETA_LATE_GY,
) -> Volume:
    """EQD2 (Gy) per voxel of ``dose`` with alpha/beta per structure (see :func:`alpha_beta_map_gy`)."""
    _require_gy(dose)
    ab = alpha_beta_map_gy(dose.grid, structures, alpha_beta_gy, background_gy)
    return Volume(eqd2_gy(dose.array, n_fractions, ab), dose.grid, "Gy")


def bed_volume(
    dose: Volume,
    n_fractions: int,
    structures: Sequence[Structure] = (),
    alpha_beta_gy: dict[str, float] | None = None,
    background_gy: float = ALPHA_BETA_LATE_GY,
) -> Volume:
    """BED (Gy) per voxel of ``dose`` with alpha/beta per structure (see :func:`alpha_beta_map_gy`)."""
    _require_gy(dose)
    ab = alpha_beta_map_gy(dose.grid, structures, alpha_beta_gy, background_gy)
    return Volume(bed_gy(dose.array, n_fractions, ab), dose.grid, "Gy")


def _require_gy(dose: Volume) -> None:
    if dose.unit != "Gy":
        raise AnalysisError(f"dose must be a Volume in Gy, got unit {dose.unit!r}")


def geud_gy(dvh: DVH, a: float) -> float:
    """Generalised EUD (Gy) of a DVH: (sum_i v_i D_i^a)^(1/a), v_i relative volumes.

    ``a`` is the volume parameter: 1 gives the mean dose, large positive values
    approach the maximum (serial organs), negative values the minimum (targets).
    Each bin stands for the mean dose of its volume.
    """
    a = float(a)
    if not np.isfinite(a) or a == 0:
        raise AnalysisError(f"gEUD volume parameter a must be finite and non-zero, got {a!r}")
    v = dvh.differential_cc / dvh.volume_cc
    d = dvh.bin_mean_gy
    keep = v > 0
    v, d = v[keep], d[keep]
    if a < 0 and np.any(d <= 0):
        raise AnalysisError(
            f"gEUD with a = {a:g} < 0 is undefined for zero dose in {dvh.name!r}; "
            "use a > 0 or a structure that receives dose everywhere"
        )
    # Work in logs: sum v d^a = exp(logsumexp(a log d + log v)), exact for large |a|.
    with np.errstate(divide="ignore"):
        log_terms = a * np.log(d) + np.log(v)
    return float(np.exp(logsumexp(log_terms) / a))


def eud_gy(
    dvh: DVH,
    n_fractions: int,
    alpha_per_gy: float = 0.3,
    alpha_beta_gy: float = ALPHA_BETA_TUMOUR_GY,
) -> float:
    """Cell-survival EUD (Gy): the uniform dose in ``n_fractions`` with the same mean survival.

    Surviving fraction of a voxel with total dose D: exp(-alpha D (1 + D / (n alpha/beta)));
    the EUD solves alpha E (1 + E / (n alpha/beta)) = -ln(mean survival). The
    dose must be physical (Gy); a uniform dose returns itself.
    """
    _check_fractionation(n_fractions, alpha_beta_gy)
    if not np.isfinite(alpha_per_gy) or alpha_per_gy <= 0:
        raise AnalysisError(f"alpha must be positive (1/Gy), got {alpha_per_gy!r}")
    v = dvh.differential_cc / dvh.volume_cc
    keep = v > 0
    d = dvh.bin_mean_gy[keep]
    beta = alpha_per_gy / alpha_beta_gy
    log_s = -(alpha_per_gy * d + beta * d * d / n_fractions)
    effect = -float(
        logsumexp(log_s, b=v[keep])
    )  # -ln(mean surviving fraction) = alpha E + beta E^2/n
    b_coef = beta / n_fractions
    return float(2.0 * effect / (alpha_per_gy + np.sqrt(alpha_per_gy**2 + 4.0 * b_coef * effect)))
