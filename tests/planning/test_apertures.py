"""Beam's-eye-view projection and conformal MLC/jaw apertures against analytic geometry.

References: a sphere of radius r whose centre lies on the beam axis at distance
D from the source is seen under the half-angle asin(r / D), so it projects onto
the isocentre plane (distance SAD from the source) as a disc of radius
r * SAD / sqrt(D^2 - r^2). A voxelised sphere (voxel centres within r) is the
union of its voxel boxes, which holds every point within r - h of the centre
and none beyond r + h (h = half a voxel diagonal); its projection is bracketed
by the projections of those two spheres. The raster adds at most half a pixel diagonal.
"""

import numpy as np
import pytest

from lattice_plan.errors import GeometryError, PlanningError
from lattice_plan.geometry import Grid, Structure, StructureKind
from lattice_plan.geometry.iec import T_bld_from_lps
from lattice_plan.planning.apertures import (
    BevProjection,
    aperture_from_projection,
    conformal_aperture,
    conformal_beam,
    project_structure,
    project_to_isocentre_plane,
)

SAD = 1000.0
VOXEL = 1.0
PIXEL = 0.5
HALF_DIAG_VOXEL = VOXEL * np.sqrt(3) / 2
HALF_DIAG_PIXEL = PIXEL * np.sqrt(2) / 2


def _disc_radius(r_mm, distance_from_source_mm):
    return r_mm * SAD / np.sqrt(distance_from_source_mm**2 - r_mm**2)


def _sphere(centre, r_mm, grid=None, name="S"):
    grid = grid or Grid.from_extent((-60, -260, -60), (60, 60, 60), VOXEL)
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    c = np.asarray(centre, dtype=float)
    mask = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= r_mm**2
    return Structure(name, mask, grid, StructureKind.PTV)


def _pixel_radii(proj: BevProjection, centre_xy=(0.0, 0.0)):
    X, Y = np.meshgrid(proj.x_centers_mm(), proj.y_centers_mm())
    return np.hypot(X - centre_xy[0], Y - centre_xy[1])


def _assert_bracketed(proj, r_in_mm, r_out_mm, centre_xy=(0.0, 0.0)):
    rad = _pixel_radii(proj, centre_xy)
    inside = rad < r_in_mm - HALF_DIAG_PIXEL
    outside = rad > r_out_mm + HALF_DIAG_PIXEL
    assert inside.any()
    assert proj.mask[inside].all(), "pixels well inside the analytic disc must be projected"
    assert not proj.mask[outside].any(), "pixels well outside the analytic disc must be empty"


@pytest.mark.parametrize("gantry", [0.0, 37.0, 90.0, 180.0, 270.0])
def test_sphere_at_isocentre_projects_to_the_analytic_disc(gantry):
    r = 20.0
    proj = project_structure(_sphere((0, 0, 0), r), (0.0, 0.0, 0.0), gantry, pixel_mm=PIXEL)
    _assert_bracketed(
        proj, _disc_radius(r - HALF_DIAG_VOXEL, SAD), _disc_radius(r + HALF_DIAG_VOXEL, SAD)
    )
    # Area: pi * rho^2 for the continuous sphere; the voxel union adds up to ~half a voxel of radius.
    # Area: pi * rho^2 for the continuous sphere; voxelisation moves the edge by well under
    # half a voxel on average.
    rho = _disc_radius(r, SAD)
    assert proj.area_mm2 == pytest.approx(np.pi * rho**2, rel=VOXEL / rho)


def test_divergence_magnifies_a_sphere_near_the_source():
    """HFS gantry 0: the source is anterior (-y); a sphere 200 mm anterior is 800 mm from it."""
    r = 20.0
    proj = project_structure(_sphere((0, -200, 0), r), (0.0, 0.0, 0.0), 0.0, pixel_mm=PIXEL)
    _assert_bracketed(
        proj, _disc_radius(r - HALF_DIAG_VOXEL, 800.0), _disc_radius(r + HALF_DIAG_VOXEL, 800.0)
    )
    # Magnification 1000/800 = 1.25: the 40 mm sphere spans 50 mm at the isocentre plane.
    x_min, x_max, y_min, y_max = proj.extent_mm()
    assert y_max - y_min == pytest.approx(x_max - x_min, abs=PIXEL)
    assert x_max - x_min == pytest.approx(50.0, abs=2 * (1.25 * HALF_DIAG_VOXEL + PIXEL))


def test_off_axis_sphere_lands_where_the_tangent_rays_cross_the_plane():
    """A sphere at lateral offset a and distance D from the source: its extreme rays in the
    plane through the axis make angles atan(a/D) +/- asin(r / sqrt(a^2 + D^2)) with the axis
    and cross the isocentre plane at SAD * tan(angle)."""
    r, a, height = 15.0, 30.0, 100.0  # 30 mm to the patient's left, 100 mm anterior
    proj = project_structure(_sphere((a, -height, 0), r), (0.0, 0.0, 0.0), 0.0, pixel_mm=PIXEL)
    D = SAD - height
    centre_angle = np.arctan2(a, D)

    def crossing(radius):
        half = np.arcsin(radius / np.hypot(a, D))
        return SAD * np.tan(centre_angle - half), SAD * np.tan(centre_angle + half)

    lo_in, hi_in = crossing(r - HALF_DIAG_VOXEL)
    lo_out, hi_out = crossing(r + HALF_DIAG_VOXEL)
    x_min, x_max, y_min, y_max = proj.extent_mm()
    assert lo_out - PIXEL / 2 <= x_min <= lo_in + PIXEL / 2
    assert hi_in - PIXEL / 2 <= x_max <= hi_out + PIXEL / 2
    # Patient left is +X_b at gantry 0 (HFS); the projection is symmetric about Y_b = 0.
    assert (x_min + x_max) / 2 == pytest.approx(a * SAD / D, abs=0.5)
    assert (y_min + y_max) / 2 == pytest.approx(0.0, abs=PIXEL)


def test_projection_directions_follow_the_iec_frames():
    """HFS: superior is +Y_b at gantry 0; at gantry 90 (source at the patient's left),
    X_g = -Z_f, so a posterior point (away from the ceiling) appears at +X_b."""
    sup = project_structure(_sphere((0, 0, 30), 8), (0, 0, 0), 0.0)
    x0, x1, y0, y1 = sup.extent_mm()
    assert (y0 + y1) / 2 == pytest.approx(30.0, abs=0.5) and abs(x0 + x1) / 2 < 0.5
    post = project_structure(_sphere((0, 30, 0), 8), (0, 0, 0), 90.0)
    x0, x1, y0, y1 = post.extent_mm()
    assert (x0 + x1) / 2 == pytest.approx(30.0, abs=0.5) and abs(y0 + y1) / 2 < 0.5
    # Cross-check the same point through the frame transform itself.
    T = T_bld_from_lps((0, 0, 0), 90.0)
    xy = project_to_isocentre_plane((T @ [0, 30, 0, 1])[:3])
    np.testing.assert_allclose(xy, [30.0, 0.0], atol=1e-9)


def test_collimator_rotation_turns_the_projection():
    """An ellipsoid-like pair of spheres along z: along Y_b at collimator 0, along X_b at 90."""
    g = Grid.from_extent((-40, -40, -60), (40, 40, 60), 1.0)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    mask = (x**2 + y**2 + (z - 25) ** 2 <= 100) | (x**2 + y**2 + (z + 25) ** 2 <= 100)
    s = Structure("pair", mask, g, StructureKind.PTV)
    a = project_structure(s, (0, 0, 0), 0.0).extent_mm()
    b = project_structure(s, (0, 0, 0), 0.0, collimator_deg=90.0).extent_mm()
    assert (a[3] - a[2]) == pytest.approx(71.0, abs=1.5)  # 2 * (25 + 10) + a voxel
    assert (b[1] - b[0]) == pytest.approx(a[3] - a[2], abs=PIXEL)
    assert (b[3] - b[2]) == pytest.approx(a[1] - a[0], abs=PIXEL)


def test_margin_grows_the_disc_by_the_margin():
    r, m = 20.0, 7.0
    proj = project_structure(_sphere((0, 0, 0), r), (0, 0, 0), 0.0, pixel_mm=PIXEL)
    grown = proj.expanded(m)
    assert grown.margin_mm == m
    _assert_bracketed(
        grown,
        _disc_radius(r - HALF_DIAG_VOXEL, SAD) + m,
        _disc_radius(r + HALF_DIAG_VOXEL, SAD) + m,
    )
    assert proj.expanded(0.0) is proj
    with pytest.raises(PlanningError, match="non-negative"):
        proj.expanded(-1.0)


def test_leaf_pairs_open_over_the_projection_within_their_width():
    """Each 5 mm leaf pair opens to the half-chord of the expanded disc at the band's edge
    nearest the axis (the widest part of the disc under that leaf)."""
    r, m = 20.0, 7.0
    ap = conformal_aperture(_sphere((0, 0, 0), r), (0, 0, 0), 0.0, margin_mm=m, pixel_mm=PIXEL)
    rho_in = _disc_radius(r - HALF_DIAG_VOXEL, SAD) + m
    rho_out = _disc_radius(r + HALF_DIAG_VOXEL, SAD) + m
    edges = ap.mlc.leaf_edges_mm
    assert np.diff(edges) == pytest.approx(5.0)
    n_open = 0
    for n in range(ap.mlc.n_pairs):
        lo, hi = edges[n], edges[n + 1]
        y_near = 0.0 if lo < 0 < hi else min(abs(lo), abs(hi))
        x1, x2 = ap.mlc.bank_x1_mm[n], ap.mlc.bank_x2_mm[n]
        if y_near >= rho_out + PIXEL:
            assert x2 - x1 == 0.0, f"leaf pair {n} outside the disc must be closed"
            continue
        if y_near > rho_in - PIXEL:
            continue  # the disc boundary crosses this band's edge: either state is right
        n_open += 1
        half_in = np.sqrt(rho_in**2 - y_near**2)
        half_out = np.sqrt(rho_out**2 - y_near**2)
        assert -half_out - PIXEL <= x1 <= -half_in + PIXEL
        assert half_in - PIXEL <= x2 <= half_out + PIXEL
    assert n_open >= 10
    # Jaws: the extent of the expanded disc in both directions, symmetric about the axis.
    for v in (ap.jaws.x2_mm, -ap.jaws.x1_mm, ap.jaws.y2_mm, -ap.jaws.y1_mm):
        assert rho_in - PIXEL <= v <= rho_out + PIXEL
    # The open area exceeds the disc (leaves step outside it) but not its bounding square.
    assert np.pi * rho_in**2 < ap.open_area_mm2 < (2 * rho_out + 2 * PIXEL) ** 2


def test_beam_carries_the_aperture():
    s = _sphere((10, 0, -5), 15)
    beam = conformal_beam("PA", s, (10.0, 0.0, -5.0), 180.0, margin_mm=5.0, mu=123.0)
    assert beam.gantry_deg == 180.0 and beam.mu == 123.0
    assert beam.mlc is not None and not beam.mlc.is_closed
    assert beam.extra["aperture_margin_mm"] == 5.0
    assert beam.extra["aperture_target"] == "S"
    # Jaws no tighter than the open leaves; every open leaf lies within the jaws in X.
    open_ = beam.mlc.bank_x2_mm > beam.mlc.bank_x1_mm
    assert beam.jaws.x1_mm == pytest.approx(beam.mlc.bank_x1_mm[open_].min())
    assert beam.jaws.x2_mm == pytest.approx(beam.mlc.bank_x2_mm[open_].max())


def test_projection_that_exceeds_the_collimator_is_refused():
    g = Grid.from_extent((-260, -40, -40), (260, 40, 40), 4.0)
    slab = Structure("wide", np.ones(g.shape, dtype=bool), g, StructureKind.PTV)
    with pytest.raises(PlanningError, match="beyond the collimator"):
        conformal_aperture(slab, (0, 0, 0), 0.0, pixel_mm=2.0)


def test_bad_input():
    g = Grid.from_extent((-10, -10, -10), (10, 10, 10), 1.0)
    empty = Structure("E", np.zeros(g.shape, dtype=bool), g)
    with pytest.raises(GeometryError, match="empty"):
        project_structure(empty, (0, 0, 0), 0.0)
    with pytest.raises(PlanningError, match="beyond the source"):
        project_to_isocentre_plane([0.0, 0.0, 1000.0])
    with pytest.raises(PlanningError, match="reaches the source"):
        project_structure(_sphere((0, -200, 0), 5), (0, 0, 0), 0.0, sad_mm=150.0)
    with pytest.raises(PlanningError, match="empty"):
        aperture_from_projection(BevProjection(np.zeros((4, 4), bool), 1.0, (0, 0), "E"))
    with pytest.raises(PlanningError, match="pixel_mm"):
        project_structure(_sphere((0, 0, 0), 5), (0, 0, 0), 0.0, pixel_mm=0.0)


@pytest.mark.parametrize(
    ("gantry", "collimator", "couch", "position"),
    [
        (37.0, 20.0, 15.0, "HFS"),
        (300.0, 90.0, 350.0, "HFS"),
        (90.0, 0.0, 90.0, "HFS"),
        (45.0, 0.0, 0.0, "FFP"),
    ],
)
def test_projection_centre_follows_the_frames_for_any_angles(gantry, collimator, couch, position):
    """A small sphere away from the isocentre projects (nearly) symmetrically about the
    projection of its centre through T_bld_from_lps, for any gantry, collimator and couch."""
    g = Grid.from_extent((-60, -60, -60), (60, 60, 60), 1.0, patient_position=position)
    centre = np.array([25.0, -15.0, 30.0])
    s = _sphere(centre, 6.0, grid=g)
    proj = project_structure(
        s, (0, 0, 0), gantry, collimator_deg=collimator, couch_deg=couch, pixel_mm=PIXEL
    )
    T = T_bld_from_lps((0, 0, 0), gantry, collimator, couch, position)
    expected = project_to_isocentre_plane((T @ np.append(centre, 1.0))[:3])
    x0, x1, y0, y1 = proj.extent_mm()
    # Off-axis spheres project to slightly asymmetric ellipses: within a pixel here.
    np.testing.assert_allclose([(x0 + x1) / 2, (y0 + y1) / 2], expected, atol=1.0)
