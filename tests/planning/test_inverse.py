"""Pieces of the inverse-planning pipeline: rasterisation, TG-101 objectives, iso-effect."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import structure_on_grid
from lattice_plan.geometry.volume import resample_array
from lattice_plan.planning.inverse import (
    TG101_LIMITS_GY,
    _limit_for_fractions,
    default_oar_objectives,
    organ_of,
)
from lattice_plan.planning.objectives import MaxDose, MeanDose
from lattice_plan.planning.prescription import prescription_from


def test_structure_on_grid_equals_the_full_resampling(phantom):
    """structure_on_grid resamples only around the structure: same mask as the whole grid."""
    g = phantom.grid
    grids = [
        g.crop((2, 3, 4), (70, 90, 130)).with_spacing(2.5),  # shifted dose grid, same pitch
        Grid((40, 50, 60), (2.0, 3.0, 2.5), (-20.0, -40.0, -50.0)),  # partly outside the CT
    ]
    for dose_grid in grids:
        for name in ("GTV", "CaudaEquina", "Liver", "Skin"):
            s = phantom.structures[name]
            full = resample_array(
                s.mask.astype(np.float32), s.grid, dose_grid, order=1, fill_value=0.0
            )
            expected = full >= 0.5
            np.testing.assert_array_equal(
                structure_on_grid(s, dose_grid).mask, expected, err_msg=name
            )


def test_organ_names_map_to_tg101_organs():
    assert organ_of("CaudaEquina") == "cauda"
    assert organ_of("SpinalCanal") == "cord" and organ_of("SpinalCord") == "cord"
    assert organ_of("Kidney_L") == "kidney" and organ_of("Bowel_Small") == "bowel"
    assert organ_of("Liver") == "liver" and organ_of("Skin") == "skin"
    assert organ_of("Femur_Head_L") is None


def test_limits_for_other_fraction_counts_keep_the_bed():
    cord = TG101_LIMITS_GY["cord"].dmax_gy
    assert _limit_for_fractions(cord, 1) == 14.0 and _limit_for_fractions(cord, 5) == 30.0
    # 10 fractions: BED of 14 Gy x 1 with alpha/beta 2 Gy is 14 (1 + 14/2) = 112 Gy;
    # n d (1 + d/2) = 112 with n = 10 gives d = -1 + sqrt(1 + 22.4) = 3.837 Gy, 38.37 Gy total.
    assert _limit_for_fractions(cord, 10) == pytest.approx(10 * (-1 + np.sqrt(23.4)), rel=1e-12)


def test_default_oar_objectives_follow_tg101(phantom):
    oars = [phantom.structures[n] for n in ("CaudaEquina", "Kidney_L", "Skin")]
    objs = default_oar_objectives(oars, prescription_from(15.0, 1, "Vertices", "Dmean"))
    cauda, kidney, skin = objs
    # Serial organs: a maximum at 60 % of the Dmax limit (cauda 16 Gy, skin 26 Gy).
    assert isinstance(cauda, MaxDose) and cauda.dose_gy == pytest.approx(0.6 * 16.0)
    assert isinstance(skin, MaxDose) and skin.dose_gy == pytest.approx(0.6 * 26.0)
    # Parallel organs: mean dose at most half the critical-volume threshold (8.4 Gy).
    assert isinstance(kidney, MeanDose) and kidney.dose_gy == pytest.approx(4.2)
    assert cauda.weight > skin.weight
    three = default_oar_objectives(oars[:1], prescription_from(24.0, 3, "STV"))
    assert three[0].dose_gy == pytest.approx(0.6 * 24.0)  # cauda 3 fractions: 24 Gy
