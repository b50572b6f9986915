"""Diameters of analytic shapes, within one voxel."""

import numpy as np
import pytest

from lattice_plan.geometry import Grid, Structure, diameters


def _structure(mask_fn, spacing, lo=-60.0):
    g = Grid.from_extent((lo, lo, lo), (60, 60, 60), spacing)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    return Structure("T", mask_fn(x, y, z), g)


@pytest.mark.parametrize("spacing", [1.0, (2.5, 1.0, 1.0)])
def test_ellipsoid_diameters(spacing):
    """Ellipsoid with semi-axes 40 (x), 25 (y), 18 (z) mm: long 80, short 50 in the axial plane
    through its centre, 3D calipers 36 and 80 mm."""
    s = _structure(lambda x, y, z: (x / 40) ** 2 + (y / 25) ** 2 + (z / 18) ** 2 <= 1, spacing)
    d = diameters(s)
    voxel = max(np.atleast_1d(spacing))
    assert d.recist_long_mm == pytest.approx(80.0, abs=1.0)
    assert d.recist_short_mm == pytest.approx(50.0, abs=1.0)
    assert d.recist_slice_z_mm == pytest.approx(0.0, abs=voxel)
    assert d.min_caliper_mm == pytest.approx(36.0, abs=voxel)
    assert d.max_caliper_mm == pytest.approx(80.0, abs=1.0)


def test_rotated_ellipse_long_axis_found_in_plane():
    """Long axis at 30 degrees in the axial plane: the measure does not depend on the grid axes."""
    c, s_ = np.cos(np.radians(30)), np.sin(np.radians(30))

    def fn(x, y, z):
        u, v = c * x + s_ * y, -s_ * x + c * y
        return (u / 45) ** 2 + (v / 20) ** 2 + (z / 30) ** 2 <= 1

    d = diameters(_structure(fn, 1.0))
    assert d.recist_long_mm == pytest.approx(90.0, abs=1.0)
    assert d.recist_short_mm == pytest.approx(40.0, abs=1.0)
    assert d.min_caliper_mm == pytest.approx(40.0, abs=1.0)


def test_box_diameters():
    """Box 60 x 40 x 20 mm (x, y, z): axial long = in-plane diagonal, calipers 20 and the space diagonal.

    Voxel centres at half-millimetres, so the box is exactly 60 x 40 x 20 voxels."""
    s = _structure(
        lambda x, y, z: (np.abs(x) < 30) & (np.abs(y) < 20) & (np.abs(z) < 10), 1.0, lo=-59.5
    )
    d = diameters(s)
    assert d.recist_long_mm == pytest.approx(np.hypot(60, 40), abs=1.0)
    assert d.min_caliper_mm == pytest.approx(20.0, abs=1.0)
    assert d.max_caliper_mm == pytest.approx(np.sqrt(60**2 + 40**2 + 20**2), abs=1.0)
