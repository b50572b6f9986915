"""3D scene: surfaces in the right place (LPS mm) on any grid, isodose surfaces, beams, rendering, export."""

from __future__ import annotations

import numpy as np
import pytest
import pyvista as pv  # a hard dependency: a broken VTK must fail these tests, not skip them

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.errors import GeometryError, VisualizationError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.viz import scene3d

CENTER = np.array([12.3, -7.4, 5.1])


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


GRIDS = {
    "identity": np.eye(3),
    "flipped_x_y": np.diag([-1.0, -1.0, 1.0]),
    "oblique_30deg": _rot_z(30.0),
    "reversed_slices": np.diag([1.0, 1.0, -1.0]),  # k runs inferior: a mirroring (det -1) affine
}


def _grid(direction: np.ndarray, spacing=(1.0, 1.0, 1.0), n=48) -> Grid:
    # Choose the origin so the grid centre sits near CENTER whatever the direction.
    half = (n - 1) / 2 * np.array(spacing[::-1])
    origin = CENTER - direction @ half + np.array([0.21, -0.13, 0.07])
    return Grid((n, n, n), spacing, tuple(origin), direction)


def _ball(grid: Grid, radius_mm: float, center=CENTER) -> Structure:
    r = np.linalg.norm(grid.voxel_centers_lps_mm() - center, axis=-1)
    return Structure("Ball", r <= radius_mm, grid, StructureKind.VERTEX)


@pytest.mark.parametrize("name", list(GRIDS))
def test_structure_surface_is_where_the_mask_is(name):
    grid = _grid(GRIDS[name])
    ball = _ball(grid, 15.0)
    mesh = scene3d.structure_surface(ball)
    # Analytic sphere volume 4/3 pi r^3 = 14137 mm^3; marching cubes on a 1 mm mask of a 15 mm
    # sphere is within ~2 % (staircase + Taubin smoothing), and it encloses the mask's volume.
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 15.0**3, rel=0.02)
    assert mesh.volume == pytest.approx(ball.volume_cc * 1000, rel=0.02)
    # Centre of the surface = sphere centre in LPS (a misplaced or mirrored grid moves it by mm).
    assert np.allclose(np.asarray(mesh.points).mean(axis=0), CENTER, atol=0.2)
    radii = np.linalg.norm(np.asarray(mesh.points) - CENTER, axis=1)
    assert radii.mean() == pytest.approx(15.0, abs=0.4)
    assert mesh.is_manifold  # closed surface
    # Normals point outwards (shading and VTK readers rely on it), also on mirroring grids.
    outward = np.sum(np.asarray(mesh.point_normals) * (np.asarray(mesh.points) - CENTER), axis=1)
    assert (outward > 0).mean() > 0.99


def test_structure_surface_closes_at_the_grid_edge():
    grid = _grid(np.eye(3), n=32)
    mask = np.zeros(grid.shape, dtype=bool)
    mask[:, 8:24, 8:24] = True  # a bar running through the whole grid along k
    mesh = scene3d.structure_surface(Structure("Bar", mask, grid), smoothing_iterations=0)
    assert mesh.is_manifold
    # Contour at 0.5 between the 16 voxel-wide bar and zero padding: cross-section 16 x 16 mm^2
    # (half a voxel outside each edge voxel centre) over a length of 32 mm; flying edges bevels the
    # 12 edges of the box by a right triangle of legs 0.5 mm (area 0.125 mm^2 each).
    exact = 16 * 16 * 32 - 4 * 0.125 * 32 - 8 * 0.125 * 16 + 8 * (0.5**3) / 6
    assert mesh.volume == pytest.approx(exact, rel=2e-3)


@pytest.mark.parametrize("name", ["identity", "oblique_30deg", "reversed_slices"])
def test_isodose_surface_at_analytic_radius(name):
    grid = _grid(GRIDS[name], spacing=(1.5, 1.5, 1.5), n=40)
    r = np.linalg.norm(grid.voxel_centers_lps_mm() - CENTER, axis=-1)
    dose = Volume(np.clip(20.0 * (1.0 - r / 24.0), 0.0, None), grid, "Gy")
    mesh = scene3d.isodose_surface(dose, 10.0)
    # D(r) = 20 (1 - r / 24) Gy is linear in r, so 10 Gy lies at r = 12 mm; trilinear
    # interpolation of a cone-shaped field errs by well under a voxel.
    radii = np.linalg.norm(np.asarray(mesh.points) - CENTER, axis=1)
    assert radii.mean() == pytest.approx(12.0, abs=0.15)
    assert radii.max() - radii.min() < 1.0
    outward = np.sum(np.asarray(mesh.point_normals) * (np.asarray(mesh.points) - CENTER), axis=1)
    assert (outward > 0).mean() > 0.99
    assert scene3d.isodose_surface(dose, 25.0).n_points == 0  # never reached
    with pytest.raises(GeometryError, match="positive dose"):
        scene3d.isodose_surface(dose, -1.0)


def test_beam_line_runs_from_the_source_side_to_the_isocentre():
    iso = (10.0, 20.0, 30.0)
    beam = Beam("AP", 0.0, iso, Jaws.symmetric(100, 100))
    mesh = scene3d.beam_line(beam, "HFS", length_mm=300.0)
    pts = np.asarray(mesh.points)
    far = pts[np.argmax(np.linalg.norm(pts - iso, axis=1))]
    # IEC 61217: gantry 0 on a head-first-supine patient enters anteriorly, i.e. from -y (LPS).
    assert np.allclose(far, np.add(iso, (0.0, -300.0, 0.0)), atol=1e-6)
    # Gantry 90: source at the patient's left (+x) for HFS.
    lateral = scene3d.beam_line(Beam("LL", 90.0, iso, Jaws.symmetric(50, 50)), "HFS", None)
    pts = np.asarray(lateral.points)
    far = pts[np.argmax(np.linalg.norm(pts - iso, axis=1))]
    assert np.allclose(far, np.add(iso, (1000.0, 0.0, 0.0)), atol=1e-6)
    # The arrow head touches the isocentre.
    assert np.min(np.linalg.norm(pts - iso, axis=1)) < 1e-6


@pytest.fixture(scope="module")
def phantom_scene(phantom):
    grid = phantom.grid
    gtv = phantom.structures["GTV"]
    c = gtv.centroid_lps_mm()
    r = np.linalg.norm(grid.voxel_centers_lps_mm() - c, axis=-1)
    dose = Volume(20.0 * np.exp(-((r / 35.0) ** 2)), grid, "Gy")
    beams = [Beam(f"B{g:.0f}", g, tuple(c), Jaws.symmetric(80, 80)) for g in (0.0, 120.0, 240.0)]
    return scene3d.build_scene(
        phantom.structures, dose, beams, reference_dose_gy=20.0, title="test"
    )


def test_build_scene_on_the_phantom(phantom, phantom_scene):
    names = phantom_scene.names
    assert "External" in names and "GTV" in names
    assert "Skin" not in names  # shell left out by default
    assert sum(i.kind == "beam" for i in phantom_scene.items) == 3
    iso = [i for i in phantom_scene.items if i.kind == "isodose"]
    assert [i.name for i in iso] == ["50% isodose (10 Gy)", "90% isodose (18 Gy)"]
    assert phantom_scene.get("External").opacity < 0.3  # body translucent
    # The GTV surface encloses the GTV mask volume (phantom voxels 2.5 mm: within 3 %).
    gtv = phantom.structures["GTV"]
    assert phantom_scene.get("GTV").mesh.volume / 1000 == pytest.approx(gtv.volume_cc, rel=0.03)
    # 90 % of 20 Gy for D = 20 exp(-(r/35)^2) lies at r = 35 sqrt(ln(1/0.9)) = 11.35 mm.
    pts = np.asarray(iso[1].mesh.points)
    radii = np.linalg.norm(pts - gtv.centroid_lps_mm(), axis=1)
    assert radii.mean() == pytest.approx(35 * np.sqrt(np.log(1 / 0.9)), abs=0.4)


def test_render_off_screen_is_not_blank(phantom_scene, tmp_path):
    image = scene3d.render_scene(phantom_scene, window_size=(480, 360))
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8
    # White background; the scene must cover a good part of the window with varied colours.
    not_white = np.any(image < 240, axis=2).mean()
    assert not_white > 0.10
    assert image.std() > 20
    colours = {tuple(c) for c in (image[::4, ::4] // 32).reshape(-1, 3)}
    assert len(colours) > 15
    out = scene3d.save_scene_png(
        phantom_scene, tmp_path / "scene.png", view="anterior", window_size=(320, 240)
    )
    from matplotlib.image import imread

    png = imread(out)
    assert png.shape[:2] == (240, 320) and png[..., :3].std() > 0.05


def test_render_rejects_unknown_view_and_empty_scene(phantom_scene):
    with pytest.raises(VisualizationError, match="unknown view"):
        scene3d.render_scene(phantom_scene, view="sideways", window_size=(64, 64))
    with pytest.raises(VisualizationError, match="empty"):
        scene3d.render_scene(scene3d.Scene(()), window_size=(64, 64))


def test_show_scene_without_display_says_what_to_do(phantom_scene, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(scene3d.sys, "platform", "linux")
    with pytest.raises(VisualizationError, match="screenshot"):
        scene3d.show_scene(phantom_scene)


@pytest.mark.parametrize("name", list(GRIDS))
def test_export_vtk_reads_back_in_lps(name, tmp_path):
    grid = _grid(GRIDS[name], spacing=(2.0, 1.5, 1.0), n=24)
    lps = grid.voxel_centers_lps_mm()
    dose = Volume(1.0 + 0.1 * lps[..., 0] + 0.2 * lps[..., 1] + 0.3 * lps[..., 2], grid, "Gy")
    ball = _ball(grid, 6.0)
    scene = scene3d.build_scene(
        StructureSet((ball,), grid), dose, isodose_fractions=(), title="export"
    )
    ct = Volume(np.full(grid.shape, 40, dtype=np.int16), grid, "HU")
    paths = scene3d.export_scene_vtk(scene, tmp_path / "vtk", ct=ct)
    assert sorted(p.name for p in paths) == ["ct.vti", "dose.vti", "structure_Ball.vtp"]
    image = pv.read(tmp_path / "vtk" / "dose.vti")
    # Each exported point carries the dose of the same LPS position: the linear field is
    # 1 + 0.1 x + 0.2 y + 0.3 z Gy, so the file is right only if its geometry is in LPS.
    pts = np.asarray(image.points)
    expected = 1.0 + pts @ np.array([0.1, 0.2, 0.3])
    assert np.allclose(np.asarray(image.point_data["dose_gy"]), expected, atol=1e-6)
    mesh = pv.read(tmp_path / "vtk" / "structure_Ball.vtp")
    assert np.allclose(np.asarray(mesh.points).mean(axis=0), CENTER, atol=0.3)
    assert list(mesh.field_data["SPACE"]) == ["LPS"]
    assert np.asarray(pv.read(tmp_path / "vtk" / "ct.vti").point_data["ct_hu"]).min() == 40
