"""Grid affines, coordinates, crops and resampling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice_plan.errors import GeometryError
from lattice_plan.geometry import Grid, Volume

spacings = st.tuples(*(st.floats(0.3, 6.0) for _ in range(3)))
origins = st.tuples(*(st.floats(-500, 500) for _ in range(3)))
signs = st.tuples(*(st.sampled_from([-1.0, 1.0]) for _ in range(3)))
perms = st.permutations([0, 1, 2])


def _direction(sign, perm):
    d = np.zeros((3, 3))
    for col, row in enumerate(perm):
        d[row, col] = sign[col]
    return d


@settings(max_examples=200, deadline=None)
@given(
    spacings,
    origins,
    signs,
    perms,
    st.lists(st.tuples(*(st.floats(-50, 400) for _ in range(3))), min_size=1, max_size=20),
)
def test_affine_round_trip_anisotropic_and_flipped(spacing, origin, sign, perm, ijk):
    """ijk -> LPS -> ijk is the identity, and the two affines are inverse matrices."""
    g = Grid((10, 20, 30), spacing, origin, _direction(sign, perm))
    pts = np.asarray(ijk)
    back = g.continuous_ijk(g.points_lps_mm(pts))
    np.testing.assert_allclose(back, pts, atol=1e-8 * (1 + np.abs(pts).max()))
    np.testing.assert_allclose(g.ijk_from_lps @ g.lps_from_ijk, np.eye(4), atol=1e-10)


@settings(max_examples=100, deadline=None)
@given(spacings, origins, signs, perms)
def test_neighbour_voxels_are_one_pitch_apart(spacing, origin, sign, perm):
    """Stepping one index along i, j, k moves di, dj, dk mm (spacing_mm is in [k, j, i] order)."""
    g = Grid((4, 5, 6), spacing, origin, _direction(sign, perm))
    p0 = g.points_lps_mm([1.0, 1.0, 1.0])
    for axis, pitch in zip(range(3), g.spacing_ijk_mm, strict=True):
        step = np.zeros(3)
        step[axis] = 1
        assert np.linalg.norm(g.points_lps_mm(np.ones(3) + step) - p0) == pytest.approx(pitch)
    np.testing.assert_allclose(g.points_lps_mm([0, 0, 0]), origin)


def test_voxel_centres_match_axis_coords():
    g = Grid((3, 4, 5), (2.5, 1.0, 0.5), (-10.0, 20.0, 30.0), np.diag([1.0, -1.0, 1.0]))
    z, y, x = g.axis_coords_lps_mm()
    c = g.voxel_centers_lps_mm()
    np.testing.assert_allclose(c[2, 3, 4], [x[4], y[3], z[2]])
    assert y[1] - y[0] == pytest.approx(-1.0)  # flipped j axis runs towards anterior


def test_from_extent_and_crop():
    g = Grid.from_extent((-10, -20, -5), (10, 20, 5), (2.5, 2.0, 1.0))
    assert g.shape == (5, 21, 21)
    c = g.crop((1, 2, 3), (4, 10, 8))
    assert c.shape == (3, 8, 5)
    np.testing.assert_allclose(c.origin_lps_mm, g.points_lps_mm([3, 2, 1]))


def test_resample_linear_field_is_exact():
    """Trilinear interpolation reproduces a linear field exactly inside the source grid."""
    src = Grid.from_extent((-20, -20, -20), (20, 20, 20), 2.0)
    z, y, x = np.meshgrid(*src.axis_coords_lps_mm(), indexing="ij")
    vol = Volume(3 * x - 2 * y + 0.5 * z + 7, src, "1")
    dst = Grid.from_extent((-15.3, -12.1, -10.7), (14.0, 13.0, 12.0), (1.3, 0.7, 1.1))
    out = vol.resampled(dst)
    zd, yd, xd = np.meshgrid(*dst.axis_coords_lps_mm(), indexing="ij")
    np.testing.assert_allclose(out.array, 3 * xd - 2 * yd + 0.5 * zd + 7, atol=1e-9)


def test_resample_onto_flipped_grid_matches_positions():
    src = Grid.from_extent((0, 0, 0), (30, 30, 30), 1.5)
    z, y, x = np.meshgrid(*src.axis_coords_lps_mm(), indexing="ij")
    vol = Volume(x + 10 * y + 100 * z, src, "1")
    flipped = Grid(
        (10, 10, 10), (2.0, 2.0, 2.0), (28.0, 28.0, 2.0), np.diag([-1.0, -1.0, 1.0]), "HFP"
    )
    out = vol.resampled(flipped)
    c = flipped.voxel_centers_lps_mm()
    np.testing.assert_allclose(out.array, c[..., 0] + 10 * c[..., 1] + 100 * c[..., 2], atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (0, 2, 2), "spacing_mm": (1, 1, 1)}, "shape"),
        ({"shape": (2, 2, 2), "spacing_mm": (1, -1, 1)}, "positive"),
        (
            {
                "shape": (2, 2, 2),
                "spacing_mm": (1, 1, 1),
                "direction": [[1, 0.2, 0], [0, 1, 0], [0, 0, 1]],
            },
            "orthonormal",
        ),
        (
            {"shape": (2, 2, 2), "spacing_mm": (1, 1, 1), "patient_position": "XYZ"},
            "patient position",
        ),
    ],
)
def test_invalid_grids_are_refused(kwargs, match):
    with pytest.raises(GeometryError, match=match):
        Grid(**kwargs)


def test_volume_is_read_only_and_checks_shape():
    g = Grid((2, 3, 4), (1, 1, 1))
    a = np.zeros((2, 3, 4))
    v = Volume(a, g, "Gy")
    a[0, 0, 0] = 5  # the caller's array is not shared
    assert v.array[0, 0, 0] == 0
    with pytest.raises(ValueError):
        v.array[0, 0, 0] = 1
    with pytest.raises(GeometryError, match="does not match"):
        Volume(np.zeros((2, 3, 5)), g, "Gy")
    with pytest.raises(GeometryError, match="unit"):
        Volume(a, g, "rad")
