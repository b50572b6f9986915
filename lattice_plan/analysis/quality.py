"""Plan quality indices for a target and a reference isodose.

- Paddick conformity index: CI = TV_PIV^2 / (TV x PIV) (Paddick, J Neurosurg 93
  Suppl 3 (2000) 219), TV the target volume, PIV the volume inside the
  prescription isodose, TV_PIV the part of the target inside it. 1 is ideal.
- Gradient index: GI = PIV_50% / PIV_100% (Paddick & Lippitz, J Neurosurg 105
  Suppl (2006) 194).
- ICRU 83 homogeneity index: HI = (D2% - D98%) / D50% of the target. 0 is ideal.

PIV is counted inside ``body`` when given (a body outline), else over the whole
dose grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lattice_plan.analysis.dvh import DVH
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.structure import Structure, StructureKind
from lattice_plan.geometry.volume import Volume


def _check_rx(prescription_gy: float) -> float:
    rx = float(prescription_gy)
    if not np.isfinite(rx) or rx <= 0:
        raise AnalysisError(f"prescription_gy must be a positive dose, got {prescription_gy!r}")
    return rx


def _region_dvh(dose: Volume, body: Structure | None) -> DVH:
    if body is None:
        body = Structure(
            "dose grid", np.ones(dose.grid.shape, bool), dose.grid, StructureKind.EXTERNAL
        )
    return DVH.from_dose(dose, body, subdivisions=1 if body.grid.same_as(dose.grid) else None)


def isodose_volume_cc(dose: Volume, dose_gy: float, body: Structure | None = None) -> float:
    """Volume (cc) receiving at least ``dose_gy`` inside ``body`` (or the whole dose grid)."""
    return _region_dvh(dose, body).volume_at_dose_cc(_check_rx(dose_gy))


@dataclass(frozen=True)
class PlanQuality:
    """Quality indices of one target at one reference isodose (volumes in cc).

    ``homogeneity_index`` is NaN when the target's D50% is 0 (the target is missed).
    """

    target: str
    prescription_gy: float
    target_volume_cc: float
    piv_cc: float
    tv_piv_cc: float
    piv50_cc: float
    paddick_ci: float
    gradient_index: float
    homogeneity_index: float


def paddick_ci(
    dose: Volume, target: Structure, prescription_gy: float, body: Structure | None = None
) -> float:
    """Paddick conformity index TV_PIV^2 / (TV x PIV)."""
    return plan_quality(dose, target, prescription_gy, body).paddick_ci


def gradient_index(dose: Volume, prescription_gy: float, body: Structure | None = None) -> float:
    """Gradient index PIV(50 % of the prescription) / PIV(prescription)."""
    rx = _check_rx(prescription_gy)
    region = _region_dvh(dose, body)
    piv = region.volume_at_dose_cc(rx)
    if piv <= 0:
        raise AnalysisError(
            f"no volume receives the prescription {rx:g} Gy; gradient index undefined"
        )
    return region.volume_at_dose_cc(0.5 * rx) / piv


def homogeneity_index(dose: Volume, target: Structure) -> float:
    """ICRU 83 homogeneity index (D2% - D98%) / D50% of ``target``."""
    dvh = DVH.from_dose(dose, target)
    d50 = dvh.dose_at_volume_percent(50.0)
    if d50 <= 0:
        raise AnalysisError(f"target {target.name!r} has D50% = 0; homogeneity index undefined")
    return (dvh.dose_at_volume_percent(2.0) - dvh.dose_at_volume_percent(98.0)) / d50


def plan_quality(
    dose: Volume, target: Structure, prescription_gy: float, body: Structure | None = None
) -> PlanQuality:
    """Paddick CI, gradient index and ICRU 83 HI of ``target`` at ``prescription_gy``."""
    rx = _check_rx(prescription_gy)
    region = _region_dvh(dose, body)
    # The target is sampled like the region (one point per voxel), so that TV_PIV and PIV count
    # the same dose values: a target identical to the isodose volume gives CI = 1.
    tdvh = DVH.from_dose(dose, target, subdivisions=1)
    piv = region.volume_at_dose_cc(rx)
    tv = tdvh.volume_cc
    tv_piv = tdvh.volume_at_dose_cc(rx)
    if piv <= 0:
        raise AnalysisError(
            f"no volume receives the prescription {rx:g} Gy (max {region.max_gy:.4g} Gy); "
            "conformity and gradient indices are undefined"
        )
    hdvh = DVH.from_dose(dose, target)
    d50 = hdvh.dose_at_volume_percent(50.0)
    return PlanQuality(
        target=target.name,
        prescription_gy=rx,
        target_volume_cc=tv,
        piv_cc=piv,
        tv_piv_cc=tv_piv,
        piv50_cc=region.volume_at_dose_cc(0.5 * rx),
        paddick_ci=tv_piv**2 / (tv * piv),
        gradient_index=region.volume_at_dose_cc(0.5 * rx) / piv,
        homogeneity_index=(hdvh.dose_at_volume_percent(2.0) - hdvh.dose_at_volume_percent(98.0))
        / d50
        if d50 > 0
        else float("nan"),
    )
