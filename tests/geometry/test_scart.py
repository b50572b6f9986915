"""SCART core (STV): contraction, volume fraction, dose-ratio scaling, SI trimming, refusals."""

import math

import numpy as np
import pytest

from lattice_plan.errors import GeometryError
from lattice_plan.geometry import Grid, Structure, StructureKind, connected_components
from lattice_plan.geometry.scart import scart_core


def ellipsoid(semi_mm, spacing_mm, center=(0.4, -0.3, 0.2), name="GTV"):
    hw = max(semi_mm) + 5.0
    g = Grid.from_extent([-hw] * 3, [hw] * 3, spacing_mm)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    r = np.sqrt(
        ((x - center[0]) / semi_mm[0]) ** 2
        + ((y - center[1]) / semi_mm[1]) ** 2
        + ((z - center[2]) / semi_mm[2]) ** 2
    )
    return Structure(name, r <= 1.0, g, StructureKind.GTV)


def check_core(stv, gtv):
    assert stv.kind is StructureKind.CORE and stv.name == "STV"
    assert not stv.is_empty
    assert not (stv.mask & ~gtv.mask).any()  # inside the GTV
    assert len(connected_components(stv)) == 1  # one connected piece


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3, 0.4, 0.5])
def test_volume_fraction_on_the_phantom_within_3_percent(phantom, fraction):
    gtv = phantom.structures["GTV"]
    stv = scart_core(gtv, "volume_fraction", volume_fraction=fraction)
    check_core(stv, gtv)
    assert stv.volume_cc / gtv.volume_cc == pytest.approx(fraction, rel=0.03)


def test_dose_ratio_reproduces_the_linear_scale():
    """3 Gy edge / 15 Gy core -> scale 0.2 per axis: an ellipsoid 40x30x50 mm semi-axes gives
    8x6x10 mm. Widths measured on voxel centres (1 mm) are 2*semi - up to 2 voxels."""
    gtv = ellipsoid((40.0, 30.0, 50.0), 1.0)
    stv = scart_core(gtv, "dose_ratio", periphery_dose_gy=3.0, core_dose_gy=15.0)
    check_core(stv, gtv)
    lo, hi = stv.bounding_box_lps_mm()
    widths = hi - lo + 1.0  # voxel-centre span plus one pitch
    np.testing.assert_allclose(widths, [16.0, 12.0, 20.0], atol=1.5)
    # Volume: s^3 of the GTV (analytic 0.008), voxelisation of a 8x6x10 mm ellipsoid at 1 mm: 10 %.
    assert stv.volume_cc / gtv.volume_cc == pytest.approx(0.2**3, rel=0.10)


def test_dose_ratio_scales_about_the_centre():
    """6/15 Gy -> 0.4: the STV centroid stays on the GTV centroid (within a voxel)."""
    gtv = ellipsoid((30.0, 20.0, 25.0), 1.5)
    stv = scart_core(gtv, "dose_ratio", periphery_dose_gy=6.0, core_dose_gy=15.0)
    np.testing.assert_allclose(stv.centroid_lps_mm(), gtv.centroid_lps_mm(), atol=1.5)
    assert stv.volume_cc / gtv.volume_cc == pytest.approx(0.4**3, rel=0.05)


def test_contract_matches_the_analytic_sphere():
    """Sphere r = 30 mm contracted by 12 mm: 4/3 pi 18^3 (2 %, the margin tolerance of morphology)."""
    gtv = ellipsoid((30.0, 30.0, 30.0), 1.0)
    stv = scart_core(gtv, "contract", margin_mm=12.0)
    check_core(stv, gtv)
    assert stv.volume_cc == pytest.approx(4 / 3 * math.pi * 18.0**3 / 1000, rel=0.02)


def test_si_trim_shortens_the_core():
    """Trimming 5 mm from each SI end of the core removes 10 mm of its z extent."""
    gtv = ellipsoid((30.0, 30.0, 40.0), 2.0)
    full = scart_core(gtv, "contract", margin_mm=10.0)
    trimmed = scart_core(gtv, "contract", margin_mm=10.0, si_trim_mm=5.0)
    check_core(trimmed, gtv)
    z_full = full.points_lps_mm()[:, 2]
    z_trim = trimmed.points_lps_mm()[:, 2]
    assert np.ptp(z_full) - np.ptp(z_trim) == pytest.approx(10.0, abs=2.0)
    assert not (trimmed.mask & ~full.mask).any()


def test_volume_fraction_counts_the_trim():
    gtv = ellipsoid((30.0, 25.0, 35.0), 2.0)
    stv = scart_core(gtv, "volume_fraction", volume_fraction=0.3, si_trim_mm=4.0)
    assert stv.volume_cc / gtv.volume_cc == pytest.approx(0.3, rel=0.03)


def test_non_convex_gtv_gives_one_piece_inside():
    """A horseshoe (half torus): its centroid lies outside, the core is still one piece inside."""
    g = Grid.from_extent([-50] * 3, [50] * 3, 2.0)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    tube = (np.sqrt(x**2 + y**2) - 30.0) ** 2 + z**2 <= 9.0**2
    gtv = Structure("GTV", tube & (y > 0.0), g, StructureKind.GTV)
    # The premise: the centroid (about 2*30/pi = 19 mm from the axis) is not in the 21-39 mm tube.
    ijk = np.rint(g.continuous_ijk(gtv.centroid_lps_mm())).astype(int)
    assert not gtv.mask[ijk[2], ijk[1], ijk[0]]
    for kwargs in (
        {"method": "volume_fraction", "volume_fraction": 0.2},
        {"method": "dose_ratio", "periphery_dose_gy": 5.0, "core_dose_gy": 10.0},
        {"method": "contract", "margin_mm": 6.0},
    ):
        check_core(scart_core(gtv, **kwargs), gtv)


def test_input_is_not_modified():
    gtv = ellipsoid((20.0, 20.0, 20.0), 2.0)
    before = gtv.mask.copy()
    scart_core(gtv, "contract", margin_mm=5.0)
    np.testing.assert_array_equal(gtv.mask, before)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"method": "contract", "margin_mm": 25.0}, "empty"),
        ({"method": "dose_ratio", "periphery_dose_gy": 0.1, "core_dose_gy": 20.0}, "empty"),
        ({"method": "contract"}, "needs margin_mm"),
        ({"method": "volume_fraction"}, "needs volume_fraction"),
        ({"method": "volume_fraction", "volume_fraction": 1.2}, "between 0 and 1"),
        ({"method": "dose_ratio", "periphery_dose_gy": 15.0, "core_dose_gy": 3.0}, "0 < periphery"),
        ({"method": "dose_ratio", "periphery_dose_gy": 3.0}, "needs periphery_dose_gy"),
        ({"method": "shrink"}, "unknown SCART method"),
        ({"method": "contract", "margin_mm": 5.0, "si_trim_mm": -1.0}, "si_trim_mm"),
    ],
)
def test_bad_requests_are_refused(kwargs, words):
    gtv = ellipsoid((20.0, 18.0, 22.0), 2.0)
    with pytest.raises(GeometryError, match=words):
        scart_core(gtv, **kwargs)
