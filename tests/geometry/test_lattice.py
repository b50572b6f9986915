"""Lattice vertex placement, its constraints and search, and the valley, void and ring volumes."""

import itertools
import math
import re

import numpy as np
import pytest

from lattice_plan.errors import GeometryError, StructureNotFoundError
from lattice_plan.geometry import Grid, Structure, StructureKind, contract, expand
from lattice_plan.geometry.lattice import (
    LatticeParameters,
    LatticePattern,
    evaluate_vertices,
    place_vertices,
    place_vertices_in,
    ring_structure,
    valley_structure,
    void_spheres,
)

PHANTOM_OARS = ("CaudaEquina", "SpinalCanal", "Kidney_L", "Kidney_R", "Bowel", "Liver", "Skin")


def ball(radius_mm, spacing_mm, center=(0.3, -0.2, 0.1), half_width_mm=None, name="GTV"):
    hw = half_width_mm or radius_mm + 6.0
    g = Grid.from_extent([-hw] * 3, [hw] * 3, spacing_mm)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    r2 = (x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2
    return Structure(name, r2 <= radius_mm**2, g, StructureKind.GTV)


def voxel_centres(structure, inside=True):
    mask = structure.mask if inside else ~structure.mask
    k, j, i = np.nonzero(mask)
    return structure.grid.points_lps_mm(np.stack([i, j, k], axis=-1).astype(float))


def plain_surface_distance(points, others, pitch_mm):
    """Brute force over every voxel centre on the other side, isotropic pitch (module docstring)."""
    out = []
    for c in points:
        out.append(np.sqrt(((others - c) ** 2).sum(axis=1)).min() - pitch_mm / 2)
    return np.array(out)


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("pattern", list(LatticePattern))
def test_ideal_lattices_have_the_spacing_as_nearest_neighbour_distance(pattern):
    """Geometry of HCP, FCC, simple and body-centred cubic: nearest neighbours one spacing apart."""
    p = LatticeParameters(pattern=pattern, spacing_mm=30.0)
    assert p.min_center_distance_mm == pytest.approx(30.0, abs=1e-9)


def test_si_spacing_and_lateral_factor_change_the_lattice():
    """Simple cubic with 1.5x lateral spacing and 40 mm layers: nearest neighbours at 40 mm."""
    p = LatticeParameters(
        pattern="sc", spacing_mm=30.0, lateral_spacing_factor=1.5, si_spacing_mm=40.0
    )
    assert p.min_center_distance_mm == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"spacing_mm": 12.0}, "smaller than the vertex diameter"),
        ({"diameter_mm": 25.0}, "10-20 mm"),
        ({"diameter_mm": 8.0}, "10-20 mm"),
        ({"pattern": "diamond"}, "unknown lattice pattern"),
        ({"pattern": "sc", "si_spacing_mm": 10.0}, "enlarge the spacing"),
        ({"z_rule_window_mm": 20.0}, "needs both"),
        ({"gtv_margin_mm": -1.0}, "non-negative"),
        ({"max_vertices": 0}, "max_vertices"),
    ],
)
def test_bad_parameters_are_refused(kwargs, words):
    with pytest.raises(GeometryError, match=words):
        LatticeParameters(**kwargs)


# ----------------------------------------------------------------------------- surface model
@pytest.mark.parametrize("spacing", [2.0, 1.5, (2.5, 1.0, 1.0)])
def test_sphere_surface_distance_against_analytic_sphere(spacing):
    """Analytic: inside a sphere of radius R the distance to its surface is R - |c - centre|.

    The model (outside voxel centres, minus half the pitch along the direction) can
    only err low by up to half the largest pitch, since every outside centre lies
    outside the true sphere; measured it errs high by at most 0.27 mm (1x1x2.5 mm).
    """
    c0 = np.array([0.3, -0.2, 0.1])
    gtv = ball(30.0, spacing, center=c0)
    rng = np.random.default_rng(1)
    pts = rng.uniform(-25, 25, (1500, 3))
    pts = pts[np.linalg.norm(pts - c0, axis=1) < 24.0]
    res = evaluate_vertices(pts, 10.0, gtv)
    truth = 30.0 - np.linalg.norm(res.centers_lps_mm - c0, axis=1) - 5.0
    err = res.gtv_clearance_mm - truth
    p_max = max(np.atleast_1d(spacing))
    assert err.min() >= -p_max / 2 - 1e-9
    assert err.max() <= 0.15 * p_max + 0.05


# ----------------------------------------------------------------------------- known counts
def analytic_best_counts(pattern, allowed_radii_mm, spacing_mm=30.0, step_mm=1.0):
    """Most lattice points within each allowed radius of the centre, over a fine offset grid."""
    s = spacing_mm
    n = 5
    pts = []
    if pattern == "sc":
        pts = np.array(list(itertools.product(range(-n, n + 1), repeat=3)), float) * s
        cell = (s, s, s)
    else:  # HCP: triangular layers, B layers over the triangle centres, layer pitch s*sqrt(2/3)
        h = s * math.sqrt(2 / 3)
        for k, i, j in itertools.product(range(-n, n + 1), repeat=3):
            x = i * s + j * s / 2 + (s / 2 if k % 2 else 0.0)
            y = j * s * math.sqrt(3) / 2 + (s / (2 * math.sqrt(3)) if k % 2 else 0.0)
            pts.append((x, y, k * h))
        pts = np.array(pts)
        cell = (s, s * math.sqrt(3) / 2, 2 * h)
    pts = pts[np.linalg.norm(pts, axis=1) <= max(allowed_radii_mm) + np.linalg.norm(cell)]
    grids = [np.arange(0, c, step_mm) for c in cell]
    best = dict.fromkeys(allowed_radii_mm, 0)
    for ox in grids[0]:
        o = np.stack(np.meshgrid([ox], grids[1], grids[2], indexing="ij"), -1).reshape(-1, 3)
        d = np.linalg.norm(pts[None] + o[:, None], axis=-1)
        for rad in allowed_radii_mm:
            best[rad] = max(best[rad], int((d <= rad).sum(axis=1).max()))
    return [best[rad] for rad in allowed_radii_mm]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["hcp", "sc"])
def test_known_counts_in_a_60_mm_sphere(pattern):
    """GTV radius 60 mm, 15 mm spheres, 5 mm margin, 30 mm spacing: centres within 47.5 mm.

    Reference: brute-force count over a 1 mm offset grid of the analytic lattice
    (HCP 29, simple cubic 20). The count does not change for allowed radii from
    46.7 to 47.6 mm, so the surface model's error at 1.5 mm voxels (at most 0.75 mm
    low, 0.3 mm high, test above) cannot change it.
    """
    ref, low, high = analytic_best_counts(pattern, (47.5, 47.5 - 0.8, 47.5 + 0.1))
    assert low == ref == high
    gtv = ball(60.0, 1.5, center=(0.0, 0.0, 0.0), half_width_mm=64.0)
    res = place_vertices(gtv, (), LatticeParameters(pattern=pattern))
    assert res.n_vertices == ref
    assert res.violations() == []


# ----------------------------------------------------------------------------- search
def plain_search(gtv, oar, params, search):
    """Exhaustive search written plainly: every offset of the reported grid, brute-force distances."""
    s = params.spacing_mm
    r = params.radius_mm
    outside = voxel_centres(gtv, inside=False)
    # Only the first shell of outside centres can be nearest to a point inside the 24 mm ball.
    outside = outside[np.linalg.norm(outside - gtv.centroid_lps_mm(), axis=1) < 30.0]
    oar_pts = voxel_centres(oar)
    pitch = gtv.grid.spacing_mm[0]
    anchor = gtv.centroid_lps_mm()
    n = 4
    if params.pattern is LatticePattern.SIMPLE_CUBIC:
        base = np.array(list(itertools.product(range(-n, n + 1), repeat=3)), float) * s
    else:
        h = s * math.sqrt(2 / 3)
        rows = []
        for i, j, k in itertools.product(
            range(-2 * n, 2 * n + 1), range(-n, n + 1), range(-n, n + 1)
        ):
            odd = k % 2
            rows.append(
                (
                    i * s + j * s / 2 + odd * s / 2,
                    j * s * math.sqrt(3) / 2 + odd * s / (2 * math.sqrt(3)),
                    k * h,
                )
            )
        base = np.array(rows)
    base = base[np.linalg.norm(base, axis=1) < 70.0]
    nx, ny, nz = search.offset_counts
    dx, dy, dz = search.offset_steps_mm
    best = None
    for a, b, c in itertools.product(range(nx), range(ny), range(nz)):
        pts = anchor + base + np.array([a * dx, b * dy, c * dz])
        near = np.linalg.norm(pts - anchor, axis=1) < 26.0  # the GTV is a ball of radius 24 mm
        pts = pts[near]
        ok = (plain_surface_distance(pts, outside, pitch) - r >= params.gtv_margin_mm - 1e-9) & (
            plain_surface_distance(pts, oar_pts, pitch) - r >= params.oar_clearance_mm - 1e-9
        )
        count = int(ok.sum())
        mean = float(np.linalg.norm(pts[ok] - anchor, axis=1).mean()) if count else math.inf
        key = (count, -round(mean, 6))
        if best is None or key > best[0]:
            best = (key, (a * dx, b * dy, c * dz), pts[ok])
        if (a, b, c) == (0, 0, 0):
            unshifted = count
    return best, unshifted


@pytest.mark.parametrize("pattern", ["sc", "hcp"])
def test_search_equals_a_plain_exhaustive_search(pattern):
    """Small case (24 mm GTV, 10 mm spheres, 16 mm spacing, an OAR nearby): same best placement."""
    gtv = ball(24.0, 2.0, half_width_mm=40.0)
    g = gtv.grid
    _z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    oar = Structure("Cord", (x - 36.0) ** 2 + y**2 <= 6.0**2, g, StructureKind.OAR)
    params = LatticeParameters(
        pattern=pattern,
        diameter_mm=10.0,
        spacing_mm=16.0,
        gtv_margin_mm=2.0,
        oar_clearance_mm=6.0,
        offset_step_mm=4.0,
    )
    res = place_vertices(gtv, [oar], params)
    (key, offset, centres), unshifted = plain_search(gtv, oar, params, res.search)
    assert res.n_vertices == key[0] > 0
    assert res.search.best_offset_mm == pytest.approx(offset, abs=1e-9)
    assert res.search.unshifted_count == unshifted
    assert res.n_vertices >= unshifted
    got = res.centers_lps_mm[np.lexsort(res.centers_lps_mm.T)]
    want = centres[np.lexsort(centres.T)]
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert res.violations() == []


def test_rotation_search_never_loses_vertices():
    """Angle 0 is part of the rotation search, so the count cannot drop; the report lists the angles."""
    gtv = ball(40.0, 2.5)
    plain = place_vertices(gtv, (), LatticeParameters(pattern="sc", offset_step_mm=3.0))
    rotated = place_vertices(
        gtv, (), LatticeParameters(pattern="sc", offset_step_mm=3.0, rotation_step_deg=15.0)
    )
    assert rotated.search.angles_deg == (0.0, 15.0, 30.0, 45.0, 60.0, 75.0)
    assert rotated.n_vertices >= plain.n_vertices >= plain.search.unshifted_count
    assert rotated.violations() == []


def test_placement_is_deterministic():
    gtv = ball(35.0, 2.5)
    a = place_vertices(gtv)
    b = place_vertices(gtv)
    np.testing.assert_array_equal(a.centers_lps_mm, b.centers_lps_mm)


# ----------------------------------------------------------------------------- phantom
@pytest.fixture(scope="module")
def phantom_lattice(phantom):
    return place_vertices_in(phantom.structures, "GTV", PHANTOM_OARS)


def test_phantom_default_lattice_keeps_every_constraint(phantom, phantom_lattice):
    """Default HCP lattice on the built-in patient: >= 3 vertices; constraints checked by brute force."""
    res = phantom_lattice
    ss = phantom.structures
    gtv = ss["GTV"]
    pitch = gtv.grid.spacing_mm[0]  # 2.5 mm isotropic
    r = res.radius_mm
    assert r == 7.5
    assert res.n_vertices >= 3
    assert res.violations() == []
    c = res.centers_lps_mm
    gtv_gap = plain_surface_distance(c, voxel_centres(gtv, inside=False), pitch) - r
    np.testing.assert_allclose(res.gtv_clearance_mm, gtv_gap, atol=1e-9)
    assert gtv_gap.min() >= 5.0
    for name in PHANTOM_OARS:
        gap = plain_surface_distance(c, voxel_centres(ss[name]), pitch) - r
        np.testing.assert_allclose(res.oar_clearance_mm[name], gap, atol=1e-9)
        assert gap.min() >= 10.0, name
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    assert d[np.triu_indices(len(c), 1)].min() >= 30.0 - 1e-9
    # Masks: every vertex voxel is a GTV voxel and no vertex voxel is within 10 mm of an OAR.
    assert not (res.vertices.mask & ~gtv.mask).any()
    for name in PHANTOM_OARS:
        assert not (res.vertices.mask & expand(ss[name], 10.0).mask).any()


def test_phantom_figures(phantom, phantom_lattice):
    """Vertex density and volume share; analytic sphere volume 4/3 pi r^3 within voxelisation (8 %)."""
    res = phantom_lattice
    gtv = phantom.structures["GTV"]
    assert res.vertices_per_100cc == pytest.approx(100 * res.n_vertices / gtv.volume_cc)
    sphere_cc = 4 / 3 * math.pi * 7.5**3 / 1000
    assert res.vertex_volume_percent == pytest.approx(
        100 * res.n_vertices * sphere_cc / gtv.volume_cc, rel=0.08
    )
    parts = res.vertex_structures()
    assert len(parts) == res.n_vertices
    assert all(p.kind is StructureKind.VERTEX for p in parts)
    assert sum(p.n_voxels for p in parts) == res.vertices.n_voxels  # disjoint, union = Vertices
    assert res.vertices.name == "Vertices" and res.vertices.kind is StructureKind.VERTEX


# ----------------------------------------------------------------------------- rules
def test_z_rule_and_cap():
    """MLC rule: centres within 20 mm in z at least 45 mm apart laterally; cap keeps the central ones."""
    gtv = ball(60.0, 2.5)
    free = place_vertices(gtv, (), LatticeParameters(pattern="sc", offset_step_mm=5.0))
    ruled = place_vertices(
        gtv,
        (),
        LatticeParameters(
            pattern="sc", offset_step_mm=5.0, z_rule_window_mm=20.0, z_rule_lateral_mm=45.0
        ),
    )
    c = ruled.centers_lps_mm
    for a, b in itertools.combinations(range(len(c)), 2):
        if abs(c[a, 2] - c[b, 2]) < 20.0:
            assert np.hypot(*(c[a, :2] - c[b, :2])) >= 45.0
    assert 0 < ruled.n_vertices < free.n_vertices
    assert ruled.violations() == []
    capped = place_vertices(
        gtv, (), LatticeParameters(pattern="sc", offset_step_mm=5.0, max_vertices=5)
    )
    assert capped.n_vertices == 5
    centroid = gtv.centroid_lps_mm()
    assert np.linalg.norm(capped.centers_lps_mm - centroid, axis=1).max() <= 30.0 + 1e-6


def test_cropped_spheres_allowed():
    """With cropping, centres only need the margin: at least as many vertices, masks cropped."""
    gtv = ball(30.0, 2.0)
    whole = place_vertices(gtv, (), LatticeParameters(pattern="sc", offset_step_mm=3.0))
    cropped = place_vertices(
        gtv, (), LatticeParameters(pattern="sc", offset_step_mm=3.0, whole_spheres_only=False)
    )
    assert cropped.n_vertices > whole.n_vertices
    assert cropped.violations() == []
    assert not (cropped.vertices.mask & ~contract(gtv, 5.0).mask).any()


# ----------------------------------------------------------------------------- bad input
def test_gtv_too_small_names_the_largest_sphere():
    """Sphere GTV r = 10 mm with a 5 mm margin: the largest sphere that fits has d ~ 2*(10-5) = 10 mm
    (minus up to half a 1 mm pitch per side for the conservative surface model)."""
    gtv = ball(10.0, 1.0, center=(0.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match="largest sphere that would fit") as info:
        place_vertices(gtv, (), LatticeParameters(diameter_mm=15.0))
    size = float(re.search(r"diameter ([0-9.]+) mm \(centre", str(info.value)).group(1))
    assert 9.0 <= size <= 10.0


def test_unknown_oar_lists_the_names(phantom):
    with pytest.raises(StructureNotFoundError, match="Kidney_L") as info:
        place_vertices_in(phantom.structures, "GTV", ["Kidney_X"])
    assert "Kidney_X" in str(info.value)


def test_oar_on_another_grid_is_refused():
    gtv = ball(30.0, 2.0)
    other = ball(5.0, 1.0, name="Cord")
    with pytest.raises(GeometryError, match="different grid"):
        place_vertices(gtv, [other])


def test_imported_vertices_report_violations():
    """A vertex list made elsewhere: one sphere pokes out of the GTV, two are too close."""
    gtv = ball(30.0, 2.0, center=(0, 0, 0))
    res = evaluate_vertices([[0, 0, 0], [10, 0, 0], [0, 0, 25]], 10.0, gtv)
    text = "\n".join(res.violations())
    assert "less than the margin" in text
    assert "less than the lattice spacing" in text
    assert res.min_gtv_clearance_mm == pytest.approx(30 - 25 - 5, abs=1.0)


# ----------------------------------------------------------------------------- complementary volumes
def test_valley_is_gtv_minus_expanded_vertices():
    """Valley = GTV - (vertices + 5 mm); disjoint spheres inside: V = V_gtv - n 4/3 pi 12.5^3 (3 %)."""
    gtv = ball(60.0, 2.0)
    res = place_vertices(gtv, (), LatticeParameters(pattern="sc", offset_step_mm=5.0))
    valley = valley_structure(gtv, res, margin_mm=5.0)
    grown = expand(res.vertices, 5.0)
    assert valley.kind is StructureKind.VALLEY and valley.name == "Valley"
    assert not (valley.mask & grown.mask).any()
    np.testing.assert_array_equal(valley.mask | (gtv.mask & grown.mask), gtv.mask)
    expected = gtv.volume_cc - res.n_vertices * 4 / 3 * math.pi * 12.5**3 / 1000
    assert valley.volume_cc == pytest.approx(expected, rel=0.03)


def test_void_spheres_sit_between_vertices():
    gtv = ball(60.0, 2.0)
    res = place_vertices(gtv, (), LatticeParameters(pattern="sc", offset_step_mm=5.0))
    voids = void_spheres(res)
    assert voids.radius_mm == pytest.approx((30.0 - 15.0) / 4)
    assert voids.structure.kind is StructureKind.VALLEY
    assert not (voids.structure.mask & res.vertices.mask).any()
    assert not (voids.structure.mask & ~gtv.mask).any()
    c, v = res.centers_lps_mm, voids.centers_lps_mm
    d = np.linalg.norm(v[:, None] - c[None], axis=-1)
    # Each void is a midpoint of two neighbours: its two nearest vertices are 15 mm away.
    np.testing.assert_allclose(np.sort(d, axis=1)[:, :2], 15.0, atol=1e-9)


def test_ring_volume_and_body_clip():
    """Shell 5-20 mm around a 30 mm sphere: 4/3 pi (50^3 - 35^3) (2 %); a body clip keeps it inside."""
    gtv = ball(30.0, 1.5, half_width_mm=55.0)
    r = ring_structure(gtv, 5.0, 20.0)
    assert r.kind is StructureKind.RING
    assert r.volume_cc == pytest.approx(4 / 3 * math.pi * (50**3 - 35**3) / 1000, rel=0.02)
    g = gtv.grid
    _z, _y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    body = Structure("Body", x < 40.0, g, StructureKind.EXTERNAL)
    clipped = ring_structure(gtv, 5.0, 20.0, body=body)
    assert not (clipped.mask & ~body.mask).any()
    assert clipped.n_voxels < r.n_voxels
