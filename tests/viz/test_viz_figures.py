"""Matplotlib figures: orthogonal slices, DVH comparison, dose profiles, fluence maps."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.text import Text

from lattice_plan.dose.beam import MLC, Beam, FluenceMap, Jaws
from lattice_plan.errors import AnalysisError, DoseError, GeometryError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.volume import Volume
from lattice_plan.viz.dvh_plot import dvh_comparison
from lattice_plan.viz.fluence_plot import aperture_raster, fluence_maps
from lattice_plan.viz.profiles import dose_profiles, sample_line, segments_through_points
from lattice_plan.viz.slices import orthogonal_slices


def rendered(fig: Figure, dpi: int = 60) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return imread(io.BytesIO(buf.getvalue()))[..., :3]


def assert_not_blank(image: np.ndarray, min_inked: float = 0.05, min_std: float = 0.08) -> None:
    """A figure with content: enough non-white pixels and contrast (image values 0-1)."""
    inked = np.any(image < 0.9, axis=2).mean()
    assert inked > min_inked, f"only {inked:.1%} of the pixels are inked"
    assert image.std() > min_std


def texts(fig: Figure) -> str:
    return " ".join(t.get_text() for t in fig.findobj(Text))


# ------------------------------------------------------------------ slices


@pytest.fixture(scope="module")
def lattice_dose(phantom):
    """A synthetic SFRT-like dose on the phantom: Gaussian peaks at 5 vertices on a valley."""
    g = phantom.grid
    c = phantom.structures["GTV"].centroid_lps_mm()
    # Vertex centres on voxel centres (15 mm = 6 voxels of 2.5 mm), so the sampled peaks are exact.
    c = g.points_lps_mm(np.rint(g.continuous_ijk(c)))
    verts = np.array(
        [np.add(c, (dx, 0.0, dz)) for dx in (-15.0, 15.0) for dz in (-15.0, 15.0)] + [c]
    )
    X = g.voxel_centers_lps_mm()
    d = np.full(g.shape, 4.0)
    for v in verts:
        d += 16.0 * np.exp(-0.5 * (np.linalg.norm(X - v, axis=-1) / 4.0) ** 2)
    d *= np.linalg.norm(X - c, axis=-1) < 60
    return Volume(d, g, "Gy"), verts


def test_orthogonal_slices_with_dose_contours_and_markers(phantom, lattice_dose):
    dose, verts = lattice_dose
    gtv = phantom.structures["GTV"]
    fig = orthogonal_slices(
        phantom.ct, phantom.structures, gtv.centroid_lps_mm(), dose, (5.0, 15.0), verts, "SFRT"
    )
    assert_not_blank(rendered(fig))
    assert len(fig.axes) == 4  # three views and the dose colour bar
    labels = texts(fig)
    for needed in ("dose (Gy)", "GTV", "x (R → L), mm", "z (I → S), mm", "SFRT"):
        assert needed in labels
    # Vertex centres: bold in the slice that cuts them (within 5 mm), grey where projected.
    # The slices pass through the central vertex; the others are 15 mm off in x and z.
    bold = [
        sum(len(ln.get_xdata()) for ln in ax.lines if ln.get_color() == "yellow")
        for ax in fig.axes[:3]
    ]
    assert bold == [1, 5, 1]  # axial (z), coronal (y: all five share it), sagittal (x)
    # Adding the dose changes the picture (colour wash).
    plain = rendered(orthogonal_slices(phantom.ct, phantom.structures, gtv.centroid_lps_mm()))
    assert np.abs(rendered(fig)[: plain.shape[0], : plain.shape[1]] - plain).mean() > 0.01


def test_orthogonal_slices_default_point_is_the_gtv_centre(phantom):
    fig = orthogonal_slices(phantom.ct, phantom.structures)
    c = phantom.structures["GTV"].centroid_lps_mm()
    grid = phantom.grid
    at = grid.points_lps_mm(np.rint(grid.continuous_ijk(c)))  # nearest voxel centre
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        f"axial (z = {at[2]:.1f} mm)",
        f"coronal (y = {at[1]:.1f} mm)",
        f"sagittal (x = {at[0]:.1f} mm)",
    ]


def test_orthogonal_slices_refuses_dose_on_another_grid(phantom):
    other = Grid((4, 4, 4), (1.0, 1.0, 1.0))
    with pytest.raises(GeometryError, match="different grid"):
        orthogonal_slices(phantom.ct, dose=Volume(np.zeros((4, 4, 4)), other, "Gy"))


# ------------------------------------------------------------------ DVH


def _curves():
    d = np.linspace(0.0, 20.0, 81)
    return {
        "SFRT": {
            "GTV": (d, 100.0 / (1 + np.exp((d - 12.0) / 2.0))),
            "SpinalCanal": (d, 100.0 * np.exp(-d / 2.0)),
        },
        "CRT": {
            "GTV": (d, 100.0 / (1 + np.exp(d - 8.0))),
            "SpinalCanal": (d, 100.0 * np.exp(-d)),
        },
    }


def test_dvh_comparison_draws_every_curve_with_legends():
    curves = _curves()
    fig = dvh_comparison(curves, colors={"GTV": (255, 0, 0)}, title="DVH")
    ax = fig.axes[0]
    assert len(ax.lines) == 4
    # The reference plan is drawn first with solid lines; data passed through unchanged.
    first = ax.lines[0]
    assert first.get_linestyle() == "-"
    assert np.allclose(first.get_ydata(), curves["CRT"]["GTV"][1])
    assert np.allclose(first.get_color(), (1.0, 0.0, 0.0))
    assert ax.get_xlabel() == "dose (Gy)" and ax.get_ylabel() == "volume (%)"
    legend_text = texts(fig)
    for needed in ("CRT (reference)", "SFRT", "GTV", "SpinalCanal", "structure", "plan"):
        assert needed in legend_text
    assert_not_blank(rendered(fig), min_inked=0.03)


def test_dvh_comparison_selects_structures_and_names_the_dose_axis():
    fig = dvh_comparison(_curves(), structures=["SpinalCanal"], dose_label="EQD2 (Gy)")
    assert len(fig.axes[0].lines) == 2
    assert fig.axes[0].get_xlabel() == "EQD2 (Gy)"
    with pytest.raises(AnalysisError, match="Bowel"):
        dvh_comparison(_curves(), structures=["Bowel"])


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        (([0.0, 1.0, 2.0], [100.0, 50.0]), "same length"),
        (([0.0, 2.0, 1.0], [100.0, 50.0, 0.0]), "non-decreasing"),
        (([0.0, 1.0, 2.0], [50.0, 100.0, 0.0]), "cumulative"),
        (([0.0, 1.0, 2.0], [120.0, 50.0, 0.0]), "0-100"),
        (([0.0, np.nan, 2.0], [100.0, 50.0, 0.0]), "finite"),
    ],
)
def test_dvh_comparison_rejects_malformed_curves(curve, message):
    with pytest.raises(AnalysisError, match=message):
        dvh_comparison({"X": {"GTV": curve}})


# ------------------------------------------------------------------ profiles


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),
        np.diag([-1.0, -1.0, 1.0]),
        np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    ],
)
def test_sample_line_is_exact_for_linear_dose(direction):
    grid = Grid((20, 22, 24), (2.0, 1.5, 1.0), (3.0, -4.0, 5.0), direction)
    lps = grid.voxel_centers_lps_mm()
    coef = np.array([0.3, -0.2, 0.5])
    dose = Volume(10.0 + lps @ coef, grid, "Gy")
    lo, hi = grid.bounds_lps_mm()
    a = lo + 0.3 * (hi - lo)
    b = lo + 0.8 * (hi - lo)
    dist, pts, values = sample_line(dose, a, b, step_mm=0.7)
    # Trilinear interpolation reproduces a linear field exactly (analytic reference).
    assert np.allclose(values, 10.0 + pts @ coef, atol=1e-9)
    assert dist[0] == 0.0 and dist[-1] == pytest.approx(np.linalg.norm(b - a))
    assert np.all(np.diff(dist) <= 0.7 + 1e-12)
    # Beyond the grid the profile is NaN, not extrapolated.
    _, _, outside = sample_line(dose, lo - 5.0, hi + 5.0, step_mm=1.0)
    assert np.isnan(outside[0]) and np.isnan(outside[-1]) and np.isfinite(outside).any()


def test_segments_through_points_groups_rows():
    pts = np.array([[0, 0, 0], [20, 0.5, 0], [40, 0, -0.5], [10, 30, 0], [30, 30, 0], [5, 0, 40.0]])
    segs = segments_through_points(pts, axis="x", margin_mm=10.0, tol_mm=2.0)
    assert len(segs) == 3
    start, end = segs[0]  # the row with three points first
    assert start[0] == pytest.approx(-10.0) and end[0] == pytest.approx(50.0)
    assert start[1] == pytest.approx(0.5 / 3) and start[2] == pytest.approx(-0.5 / 3)
    assert segs[1][0][1] == pytest.approx(30.0) and segs[1][0][0] == pytest.approx(0.0)
    assert segs[2][0][1] == pytest.approx(0.0) and segs[2][0][2] == pytest.approx(40.0)
    with pytest.raises(GeometryError, match="axis"):
        segments_through_points(pts, axis="w")


def test_dose_profiles_show_peaks_at_vertices(lattice_dose):
    dose, verts = lattice_dose
    crt = Volume(np.where(dose.array > 0, 8.0, 0.0), dose.grid, "Gy")
    segs = segments_through_points(verts, "x", margin_mm=25.0)
    fig = dose_profiles({"SFRT": dose, "CRT": crt}, segs, markers_lps_mm=verts, title="profiles")
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == 3
    ax = axes[0]
    assert ax.get_xlabel() == "x (R → L), mm" and ax.get_ylabel() == "dose (Gy)"
    crt_line, sfrt_line = ax.lines[0], ax.lines[1]
    assert crt_line.get_label() == "CRT (reference)"
    x, y = sfrt_line.get_xdata(), sfrt_line.get_ydata()
    # Two vertices on the first row: peaks of ~20 Gy (16 Gy Gaussian on a 4 Gy valley) at their x.
    markers = [ln.get_xdata()[0] for ln in ax.lines[2:]]
    assert len(markers) == 2
    for xm in markers:
        assert np.interp(xm, x, y) == pytest.approx(20.0, abs=0.01)
    mid = np.mean(markers)  # valley between vertices 30 mm apart, sigma 4 mm
    assert np.interp(mid, x, y) == pytest.approx(
        4.0 + 2 * 16 * np.exp(-0.5 * (15 / 4) ** 2), abs=0.3
    )
    assert_not_blank(rendered(fig), min_inked=0.03)


# ------------------------------------------------------------------ fluence maps


def _mlc_beam(**kw) -> Beam:
    jaws = Jaws.symmetric(60, 40)
    closed = MLC.closed()
    centres = (closed.leaf_edges_mm[:-1] + closed.leaf_edges_mm[1:]) / 2
    open_pair = np.abs(centres) < 15  # six 5 mm leaves open: y in -15..15 mm
    mlc = MLC(closed.leaf_edges_mm, np.where(open_pair, -20.0, 0.0), np.where(open_pair, 25.0, 0.0))
    return Beam("MLC", 300.0, (0.0, 0.0, 0.0), jaws, mlc=mlc, **kw)


def test_aperture_raster_area_matches_the_opening():
    xs = np.arange(-49.75, 50.0, 0.5)  # 0.5 mm pixel centres
    ys = np.arange(-49.75, 50.0, 0.5)
    open_beam = Beam("open", 0.0, (0, 0, 0), Jaws.symmetric(60, 40))
    # Jaws 60 x 40 mm: 2400 mm^2 of 0.25 mm^2 pixels.
    assert aperture_raster(open_beam, xs, ys).sum() * 0.25 == pytest.approx(2400.0)
    # MLC: leaves open from -20 to +25 mm over y -15..15 mm: 45 x 30 = 1350 mm^2; closed pairs
    # (x1 == x2 == 0) let nothing through.
    assert aperture_raster(_mlc_beam(), xs, ys).sum() * 0.25 == pytest.approx(1350.0)


def test_fluence_maps_panels_titles_and_scale():
    jaws = Jaws.symmetric(60, 40)
    fl = FluenceMap.covering(jaws, 5.0)
    values = np.random.default_rng(1).uniform(0.0, 1.5, fl.shape)
    beams = [
        Beam("AP", 0.0, (0, 0, 0), jaws),
        _mlc_beam(fluence=fl.with_values(values), mu=250.0),
        Beam("PA", 180.0, (0, 0, 0), jaws, collimator_deg=15.0),
    ]
    fig = fluence_maps(beams, title="fluence")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 3
    im = panels[1].get_images()[0]
    assert np.allclose(im.get_array(), values)
    assert im.get_clim() == (0.0, pytest.approx(values.max()))  # common scale
    # Extent: beamlet edges at the jaws (row index along +Y_b, origin lower).
    assert im.get_extent() == pytest.approx([-30.0, 30.0, -20.0, 20.0])
    labels = texts(fig)
    for needed in (
        "AP (open aperture)",
        "MLC (fluence)",
        "G300°",
        "250 MU",
        "C15°",
        "relative fluence (1 = open)",
        "X_b at isocentre (mm)",
        "jaws",
        "MLC aperture",
    ):
        assert needed in labels
    assert_not_blank(rendered(fig))
    with pytest.raises(DoseError, match="at least one beam"):
        fluence_maps([])


def test_breast_boost_control_point_fluence_maps_are_drawn():
    # Issue 16: the control points of the shared breast-boost RTPLAN (4 DYNAMIC sliding-window
    # beams, Varian 120-leaf) are read and their delivered fluence maps drawn, one panel each.
    # The maps' values are checked against the leaf motion in
    # tests/io/test_rtplan_control_points.py; here: the panels show exactly those maps.
    from lattice_plan.dose.delivery import beams_for_dose
    from lattice_plan.io.rtplan import read_rtplan_delivery
    from tests.conftest import reference_path

    delivery = read_rtplan_delivery(reference_path("dicom", "breast-boost-plan", "rtplan.dcm"))
    beams = [
        b
        for cp, machine in zip(delivery.beams, delivery.machines, strict=True)
        for b in beams_for_dose(cp, machine)
    ]
    assert len(beams) == 4 and all(b.fluence.delivered for b in beams)
    fig = fluence_maps(beams, title="breast boost: delivered fluence")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 4
    for ax, beam in zip(panels, beams, strict=True):
        values = ax.get_images()[0].get_array()
        np.testing.assert_array_equal(values, beam.fluence.values)
        # modulated: inside the jaws the open fraction varies by far more than transmission
        j, f = beam.jaws, beam.fluence
        x, y = f.x_centers_mm(), f.y_centers_mm()
        inside = ((x > j.x1_mm + 5) & (x < j.x2_mm - 5))[None, :] & (
            (y > j.y1_mm + 5) & (y < j.y2_mm - 5)
        )[:, None]
        assert np.ptp(values[inside]) > 0.3
        assert beam.name in ax.get_title()
    assert_not_blank(rendered(fig))
