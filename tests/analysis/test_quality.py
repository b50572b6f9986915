"""Paddick CI, gradient index and ICRU 83 HI on constructed doses."""

import numpy as np
import pytest

from lattice_plan.analysis.quality import (
    gradient_index,
    homogeneity_index,
    isodose_volume_cc,
    paddick_ci,
    plan_quality,
)
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry import Grid, Structure, StructureKind, Volume

G = Grid.from_extent((-40, -40, -40), (40, 40, 40), 1.0)
Z, Y, X = np.meshgrid(*G.axis_coords_lps_mm(), indexing="ij")
R = np.sqrt(X**2 + Y**2 + Z**2)


def test_offset_spheres_paddick_and_gradient():
    """Target sphere r 15 mm; 20 Gy isodose a sphere r 15 mm shifted 5 mm; dose 20 (r'/15)^-2.

    Paddick: TV_PIV is the lens of two r 15 spheres 5 mm apart,
    V = pi (4r + d)(2r - d)^2 / 12 (sphere-sphere intersection); CI = V^2 / (TV PIV).
    Gradient: the 10 Gy isodose of 20 (15 / r')^2 is r' = 15 sqrt(2): GI = 2^(3/2).
    """
    target = Structure("PTV", R <= 15.0, G, StructureKind.PTV)
    rs = np.sqrt((X - 5.0) ** 2 + Y**2 + Z**2)
    dose = Volume(20.0 * np.minimum((15.0 / np.maximum(rs, 1e-6)) ** 2, 1.5), G, "Gy")
    tv = 4 / 3 * np.pi * 15**3 / 1000
    lens = np.pi * (4 * 15 + 5) * (2 * 15 - 5) ** 2 / 12 / 1000
    q = plan_quality(dose, target, 20.0)
    assert q.paddick_ci == pytest.approx(lens**2 / (tv * tv), rel=0.03)
    assert q.gradient_index == pytest.approx(2**1.5, rel=0.03)
    assert paddick_ci(dose, target, 20.0) == pytest.approx(q.paddick_ci)
    assert gradient_index(dose, 20.0) == pytest.approx(q.gradient_index)
    assert isodose_volume_cc(dose, 20.0) == pytest.approx(tv, rel=0.02)


def test_homogeneity_index_linear_dose():
    """Cube target 20 mm, dose 50 + z (Gy) over z in [-10, 10]: uniform in z, so
    D2 = 50 + 9.6, D98 = 50 - 9.6, D50 = 50 and HI = 19.2 / 50 (analytic). Voxel centres at
    half-integer mm so the mask spans exactly 20 mm."""
    g = Grid.from_extent((-19.5, -19.5, -19.5), (19.5, 19.5, 19.5), 1.0)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    target = Structure("PTV", (np.abs(x) < 10) & (np.abs(y) < 10) & (np.abs(z) < 10), g)
    dose = Volume(50.0 + z, g, "Gy")
    assert homogeneity_index(dose, target) == pytest.approx(19.2 / 50.0, rel=0.02)
    uniform = Volume(np.full(g.shape, 50.0), g, "Gy")
    assert homogeneity_index(uniform, target) == pytest.approx(0.0, abs=1e-9)


def test_perfect_conformity_and_errors():
    target = Structure("PTV", R <= 15.0, G, StructureKind.PTV)
    dose = Volume(np.where(R <= 15.0, 20.0, 5.0), G, "Gy")
    q = plan_quality(dose, target, 20.0, body=Structure("Body", R <= 38.0, G))
    assert q.paddick_ci == pytest.approx(1.0, rel=0.01)
    with pytest.raises(AnalysisError, match="prescription"):
        plan_quality(dose, target, 30.0)
    with pytest.raises(AnalysisError, match="positive"):
        plan_quality(dose, target, -1.0)
