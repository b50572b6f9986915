"""Helpers shared by the SFRT and SCART planning tests: OAR doses at the CT voxels, TG-101 limits."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def ct_voxel_doses(plan, name: str) -> np.ndarray:
    """Plan dose (Gy) interpolated (trilinear) at the CT voxel centres of structure ``name``."""
    ijk = plan.dose.grid.continuous_ijk(plan.structures[name].points_lps_mm())
    return ndimage.map_coordinates(plan.dose.array, ijk[:, ::-1].T, order=1, mode="nearest")


def d_cc(doses: np.ndarray, volume_cc: float, voxel_cc: float) -> float:
    """Dose received by the hottest ``volume_cc`` (at least one voxel)."""
    return float(np.sort(doses)[::-1][max(1, round(volume_cc / voxel_cc)) - 1])


def check_tg101(plan, voxel_cc: float) -> None:
    """Every OAR of the phantom under its TG-101 single-fraction limit (Benedict et al., Med Phys
    37 (2010) 4078, Table III: skin max point dose < 26 Gy, bowel < 15.4 Gy; 200 cc of renal
    cortex < 8.4 Gy, 700 cc of liver < 9.1 Gy, or all of it when the phantom's organ is smaller).

    Cauda equina and canal are held to 10 Gy at D0.03cc, stricter than TG-101's max point doses
    (cauda 16 Gy, cord 14 Gy; cord < 10 Gy only for 0.35 cc): the inverse planner aims serial
    organs at 60 % of their TG-101 maximum (lattice_plan/planning/inverse.py, 9.6 Gy for the
    cauda), so a plan above 10 Gy there means the OAR objective failed, not only the limit."""
    assert d_cc(ct_voxel_doses(plan, "CaudaEquina"), 0.03, voxel_cc) < 10.0
    assert d_cc(ct_voxel_doses(plan, "SpinalCanal"), 0.03, voxel_cc) < 10.0
    assert d_cc(ct_voxel_doses(plan, "Skin"), 0.03, voxel_cc) < 26.0
    assert d_cc(ct_voxel_doses(plan, "Bowel"), 0.03, voxel_cc) < 15.4
    kidneys = np.r_[ct_voxel_doses(plan, "Kidney_L"), ct_voxel_doses(plan, "Kidney_R")]
    assert np.count_nonzero(kidneys < 8.4) * voxel_cc >= min(200.0, kidneys.size * voxel_cc)
    liver = ct_voxel_doses(plan, "Liver")
    assert np.count_nonzero(liver < 9.1) * voxel_cc >= min(700.0, liver.size * voxel_cc)
