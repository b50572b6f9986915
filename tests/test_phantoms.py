"""The built-in patient: anatomy, HU ranges, eligibility and determinism."""

import numpy as np
import pytest

from lattice_plan.errors import GeometryError
from lattice_plan.geometry import diameters
from lattice_plan.phantoms import PhantomParameters, build_phantom

# Typical CT numbers at 120 kVp (e.g. Hounsfield-scale tables in Bushberg, The Essential Physics
# of Medical Imaging, 3rd ed., Table 10-1): fat -100 +/- 20, soft tissue/muscle 20-60,
# cancellous bone 150-350, cortical bone 700-1300, gas < -500.
# The per-organ ranges below are design checks, not measurements: each holds the phantom's own
# design value (lattice_plan/phantoms.py HU: tumour 40 with necrosis 15, kidney 35, liver 60,
# nerve 25 in CSF 10) widened by the 2-98 % spread of its 6 HU noise (+/- 2.05 sd = 12 HU), and
# lies inside Bushberg's soft-tissue 20-60 HU except where the design puts fluid (necrosis, CSF:
# 0-20 HU, water-like) or the liver (60 HU: unenhanced liver is denser than muscle).
HU_RANGES = {
    "GTV": (0, 70),
    "Kidney_L": (15, 60),
    "Kidney_R": (15, 60),
    "Liver": (40, 80),
    "CaudaEquina": (0, 50),
}


def test_structures_named_as_a_physician_would(phantom):
    assert phantom.structures.names == [
        "External",
        "Skin",
        "GTV",
        "CaudaEquina",
        "SpinalCanal",
        "Kidney_L",
        "Kidney_R",
        "Bowel",
        "Liver",
    ]
    assert phantom.grid.patient_position == "HFS"
    assert max(phantom.grid.spacing_mm[1:]) <= 2.5
    z_extent = phantom.grid.shape[0] * phantom.grid.spacing_mm[0]
    assert z_extent >= 200.0


def test_gtv_size_and_eligibility(phantom):
    """A 60-90 mm irregular mass: shortest diameter above the trial's 30 mm threshold."""
    gtv = phantom.structures["GTV"]
    assert 100.0 < gtv.volume_cc < 250.0
    d = diameters(gtv)
    assert 60.0 <= d.recist_long_mm <= 95.0
    assert d.shortest_diameter_mm() > 30.0
    assert d.min_caliper_mm > 30.0
    # Irregular, not a sphere: the long axis clearly exceeds the short one.
    assert d.max_caliper_mm > 1.3 * d.min_caliper_mm


@pytest.mark.parametrize(("name", "lo_hi"), HU_RANGES.items())
def test_hu_ranges_per_tissue(phantom, name, lo_hi):
    hu = phantom.ct.array[phantom.structures[name].mask]
    lo, hi = np.percentile(hu, [2, 98])
    assert lo_hi[0] <= lo and hi <= lo_hi[1], f"{name}: HU 2-98 % range {lo}..{hi} outside {lo_hi}"


def test_bone_fat_air_and_gas(phantom):
    ct = phantom.ct.array
    body = phantom.structures["External"].mask
    assert np.all(ct[~body] == -1000)
    assert np.percentile(ct[body], 99.5) > 700  # cortical bone present
    skin_hu = np.median(ct[phantom.structures["Skin"].mask])
    assert -130 <= skin_hu <= -70  # skin rim lies in subcutaneous fat
    assert (ct[phantom.structures["Bowel"].mask] < -500).sum() > 50  # gas pockets in the bowel
    canal = phantom.structures["SpinalCanal"].mask
    assert np.median(ct[canal]) < 40


def test_organs_do_not_overlap_the_target(phantom):
    gtv = phantom.structures["GTV"].mask
    for name in ("CaudaEquina", "SpinalCanal", "Kidney_L", "Kidney_R", "Bowel", "Liver"):
        assert not (gtv & phantom.structures[name].mask).any(), name
    assert (phantom.structures["CaudaEquina"].mask <= phantom.structures["SpinalCanal"].mask).all()


def test_deterministic_and_parameterised():
    a = build_phantom(seed=3, spacing_mm=(5.0, 5.0, 5.0))
    b = build_phantom(seed=3, spacing_mm=(5.0, 5.0, 5.0))
    assert np.array_equal(a.ct.array, b.ct.array)
    big = build_phantom(mass_diameters_mm=(80.0, 70.0, 84.0), spacing_mm=(5.0, 5.0, 5.0), seed=3)
    assert big.structures["GTV"].volume_cc > 1.3 * a.structures["GTV"].volume_cc
    with pytest.raises(GeometryError, match="mass_diameters_mm"):
        PhantomParameters(mass_diameters_mm=(5.0, 5.0, 5.0))
