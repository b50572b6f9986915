"""DVHs against analytic dose distributions, and metric evaluation."""

import warnings

import numpy as np
import pytest
from scipy.optimize import brentq

from lattice_plan.analysis.dvh import DVH, evaluate_metric
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry import Grid, Structure, StructureKind, Volume
from lattice_plan.geometry.sampling import sample_dose
from lattice_plan.io.ct import read_ct
from lattice_plan.io.dicom_common import DicomWarning
from lattice_plan.io.rtstruct import read_rtstruct
from tests.conftest import reference_path


def _grid(half_mm, spacing_mm, center=(0.0, 0.0, 0.0)):
    c = np.asarray(center)
    return Grid.from_extent(c - half_mm, c + half_mm, spacing_mm)


def _xyz(grid):
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    return x, y, z


def _sphere(grid, radius_mm, center=(0.0, 0.0, 0.0), name="Sphere"):
    x, y, z = _xyz(grid)
    r2 = (x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2
    return Structure(name, r2 <= radius_mm**2, grid, StructureKind.GTV)


def _cylinder(grid, radius_mm, height_mm, name="Cylinder"):
    x, y, z = _xyz(grid)
    return Structure(
        name, (x**2 + y**2 <= radius_mm**2) & (np.abs(z) <= height_mm / 2), grid, StructureKind.OAR
    )


def _linear_dose(grid, d0=10.0, gz=0.5):
    _, _, z = _xyz(grid)
    return Volume(d0 + gz * z, grid, "Gy")


def _sphere_cap_dose(fraction, radius=12.0, d0=10.0, gz=0.5):
    """Analytic: dose above which ``fraction`` of a sphere lies, for dose d0 + gz z.

    Volume fraction of a sphere above height h: (R - h)^2 (2R + h) / (4 R^3) (spherical cap).
    """
    h = brentq(
        lambda h: (radius - h) ** 2 * (2 * radius + h) / (4 * radius**3) - fraction, -radius, radius
    )
    return d0 + gz * h


R = 12.0
SPHERE_CC = 4.0 / 3.0 * np.pi * R**3 / 1000.0  # 7.238 cc
CYL_CC = np.pi * R**2 * 24.0 / 1000.0  # 10.857 cc


@pytest.mark.parametrize("subdivisions", [None, 2, 3])
def test_sphere_linear_gradient_1mm(subdivisions):
    """Sphere r = 12 mm, dose 10 + 0.5 z Gy, 1 mm voxels: volume and D95/D50/D5 within 2 %."""
    g = _grid(16.0, 1.0, center=(0.3, -0.2, 0.1))
    s = _sphere(g, R)
    dvh = DVH.from_dose(_linear_dose(g), s, subdivisions=subdivisions)
    assert dvh.volume_cc == pytest.approx(SPHERE_CC, rel=0.02)
    for pct in (95, 50, 5):
        assert dvh.metric(f"D{pct}%") == pytest.approx(_sphere_cap_dose(pct / 100), rel=0.02)
    # Dmean of a symmetric sphere in a linear field is the centre dose (analytic).
    assert dvh.metric("Dmean") == pytest.approx(10.0, abs=0.05)


def test_cylinder_linear_gradient_1mm():
    """Cylinder r 12 mm, height 24 mm along z, dose 10 + 0.5 z: D_x% = 10 + 0.5 (12 - 0.24 x)."""
    g = Grid.from_extent((-15.5, -15.5, -15.5), (15.5, 15.5, 15.5), 1.0)  # slice bounds at +-12
    s = _cylinder(g, R, 24.0)
    dvh = DVH.from_dose(_linear_dose(g), s)
    assert dvh.volume_cc == pytest.approx(CYL_CC, rel=0.02)
    for pct in (95, 50, 5):
        assert dvh.metric(f"D{pct}%") == pytest.approx(10.0 + 0.5 * (12 - 0.24 * pct), rel=0.02)
    # V at dose is linear in dose for a cylinder along the gradient: V(11 Gy) = (12 - 2) / 24.
    assert dvh.metric("V11Gy") == pytest.approx(100 * 10 / 24, abs=1.0)
    assert dvh.metric("V11Gy[cc]") + dvh.metric("CV11Gy") == pytest.approx(dvh.volume_cc, rel=1e-9)


def test_structure_on_finer_grid_than_dose():
    """Structure on a 0.5 mm grid, dose on a 2.5 mm grid: trilinear is exact for a linear dose."""
    fine = _grid(15.0, 0.5)
    coarse = _grid(20.0, 2.5)
    s = _sphere(fine, R)
    dvh = DVH.from_dose(_linear_dose(coarse), s)
    assert dvh.volume_cc == pytest.approx(s.volume_cc, rel=1e-12)
    assert dvh.volume_cc == pytest.approx(SPHERE_CC, rel=0.01)
    for pct in (95, 50, 5):
        assert dvh.metric(f"D{pct}%") == pytest.approx(_sphere_cap_dose(pct / 100), rel=0.01)


def test_small_vertex_on_coarse_dose_grid_is_resolved():
    """A 15 mm vertex on a 1 mm CT grid in a steep dose (2 Gy/mm) on a 2.5 mm dose grid.

    Reference, exact for this mask: within each 1 mm mask voxel at height z_c the dose
    20 + 2 z is uniform on [20 + 2 (z_c - 0.5), 20 + 2 (z_c + 0.5)], so the volume above
    dose D is sum_voxels clip(z_c + 0.5 - (D - 20) / 2, 0, 1) voxels. A nearest-dose-voxel
    DVH would be off by up to half a dose voxel (2.5 Gy); ours agrees within 0.5 %.
    """
    ct = _grid(12.0, 1.0, center=(0.4, 0.0, 0.0))
    dose_grid = Grid.from_extent((-20, -20, -20), (20, 20, 20), 2.5)
    vertex = _sphere(ct, 7.5, center=(0.4, 0.0, 0.7), name="Vertex1")
    dose = _linear_dose(dose_grid, d0=20.0, gz=2.0)
    dvh = DVH.from_dose(dose, vertex)
    assert dvh.volume_cc == pytest.approx(4 / 3 * np.pi * 7.5**3 / 1000, rel=0.03)
    _, _, z = _xyz(ct)
    zc = z[vertex.mask]

    def fraction_above(d):
        return np.clip(zc + 0.5 - (d - 20.0) / 2.0, 0.0, 1.0).mean()

    for pct in (95, 50, 5):
        ref = brentq(lambda d, p=pct: fraction_above(d) - p / 100, 0.0, 60.0)
        assert dvh.metric(f"D{pct}%") == pytest.approx(ref, rel=0.005)
    assert dvh.metric("D50%") == pytest.approx(20.0 + 2.0 * 0.7, rel=0.01)


def test_uniform_dose_gives_step_dvh():
    """Uniform 8 Gy: cumulative is 100 % up to 8 Gy and 0 beyond; every D-value is 8 Gy."""
    g = _grid(16.0, 1.0)
    s = _sphere(g, R)
    dvh = DVH.from_dose(Volume(np.full(g.shape, 8.0), g, "Gy"), s)
    below = dvh.dose_edges_gy <= 8.0
    assert np.allclose(dvh.cumulative_percent[below], 100.0)
    assert np.allclose(dvh.cumulative_percent[dvh.dose_edges_gy > 8.0 + 0.01], 0.0)
    assert dvh.differential_cc.sum() == pytest.approx(dvh.volume_cc)
    assert dvh.differential_percent.sum() == pytest.approx(100.0)
    for m in ("Dmin", "Dmax", "Dmean", "D95%", "D5%", "D0.03cc", "D2cc"):
        assert dvh.metric(m) == pytest.approx(8.0, abs=1e-9)
    assert dvh.metric("V7.99Gy") == pytest.approx(100.0)
    assert dvh.metric("V8.02Gy[cc]") == 0.0
    assert dvh.metric("CV8.02Gy[cc]") == pytest.approx(dvh.volume_cc)
    assert dvh.metric("V95%", prescription_gy=8.0) == pytest.approx(100.0)
    assert dvh.metric("V105%", prescription_gy=8.0) == 0.0
    assert dvh.metric("Dmax[%]", prescription_gy=10.0) == pytest.approx(80.0)
    assert dvh.metric("Dmax[cGy]") == pytest.approx(800.0)


def test_eqd2_metrics():
    """EQD2 = D (d + a/b) / (2 + a/b): 8 Gy x1 at a/b 10 is 8 (8 + 10) / 12 = 12.0 Gy."""
    g = _grid(16.0, 1.0)
    dvh = DVH.from_dose(Volume(np.full(g.shape, 8.0), g, "Gy"), _sphere(g, R))
    assert dvh.metric("EQD2:Dmean", n_fractions=1, alpha_beta_gy=10.0) == pytest.approx(12.0)
    assert dvh.metric("BED:D95%", n_fractions=1, alpha_beta_gy=10.0) == pytest.approx(14.4)
    assert dvh.to_eqd2(1, 10.0).quantity == "EQD2"
    # A % threshold in EQD2 refers to the prescription in EQD2: 100 % of 8 Gy x1 covers all.
    assert dvh.metric("EQD2:V99%", prescription_gy=8.0, n_fractions=1, alpha_beta_gy=10.0) == (
        pytest.approx(100.0)
    )
    with pytest.raises(AnalysisError, match="n_fractions"):
        dvh.metric("EQD2:Dmean")


def test_d_values_are_interpolated_not_snapped():
    """Two equal halves at 10 and 20 Gy with 1 Gy bins: D50% lies inside the 10 Gy bin.

    With dose uniform within a bin, the cumulative falls linearly from 100 % at 10 Gy
    to 50 % at 11 Gy, so D75% = 10.5 Gy (not 10 or 11).
    """
    dvh = DVH.from_samples(
        "two", np.r_[np.full(100, 10.2), np.full(100, 20.7)], 0.01, bin_width_gy=1.0
    )
    assert dvh.metric("D75%") == pytest.approx(10.5)
    assert dvh.metric("D25%") == pytest.approx(20.5)
    assert dvh.metric("Dmean") == pytest.approx(15.45)
    assert dvh.metric("V15Gy") == pytest.approx(50.0)


def test_from_cumulative_round_trip():
    g = _grid(16.0, 1.0)
    a = DVH.from_dose(_linear_dose(g), _sphere(g, R))
    b = DVH.from_cumulative("copy", a.dose_edges_gy, a.cumulative_cc)
    assert b.volume_cc == pytest.approx(a.volume_cc)
    for m in ("D95%", "D50%", "D2cc", "V12Gy"):
        assert b.metric(m) == pytest.approx(a.metric(m), rel=1e-3)
    assert b.mean_gy == pytest.approx(a.mean_gy, abs=0.005)  # bin centres vs exact samples
    with pytest.raises(AnalysisError, match="must not increase"):
        DVH.from_cumulative("bad", [0, 1, 2], [1.0, 2.0, 0.0])


@pytest.mark.parametrize(
    ("name", "height_mm", "radius_mm", "volume_cc"),
    [("Sphere", None, 12.0, 7.238), ("Cylinder", 24.0, 12.0, 10.857), ("Cone", 24.0, 12.0, 3.619)],
)
def test_dvh_phantom_shapes_volumes(name, height_mm, radius_mm, volume_cc):
    """Nelms et al., Med Phys 42 (2015) 4435: sphere, cylinder and cone of radius 12 mm.

    Exact volumes from the paper (7.238, 10.857, 3.619 cc). Masks drawn on the
    phantom CT's 0.6 x 0.6 mm pixels and 2 mm slices (slab boundaries at the end
    faces); the dose on a 2.5 mm grid. The DVH volume must match within 3 %.
    """
    ct = Grid((16, 50, 50), (2.0, 0.6, 0.6), (-14.7, -14.7, -15.0))
    x, y, z = _xyz(ct)
    if name == "Sphere":
        mask = x**2 + y**2 + z**2 <= radius_mm**2
    elif name == "Cylinder":
        mask = (x**2 + y**2 <= radius_mm**2) & (np.abs(z) < height_mm / 2)
    else:  # apex at z = +12, base radius 12 at z = -12
        r_at_z = radius_mm * (height_mm / 2 - z) / height_mm
        mask = (x**2 + y**2 <= r_at_z**2) & (np.abs(z) < height_mm / 2)
    s = Structure(name, mask, ct)
    dose = _linear_dose(_grid(25.0, 2.5))
    assert DVH.from_dose(dose, s).volume_cc == pytest.approx(volume_cc, rel=0.03)


def test_structure_outside_dose_grid_reports_overlap():
    ct = _grid(30.0, 1.0)
    dose_grid = Grid.from_extent((-30, -30, -30), (30, 30, 0), 2.0)  # covers z <= 1 mm
    s = _sphere(ct, R)
    dose = _linear_dose(dose_grid)
    with pytest.raises(AnalysisError) as exc:
        DVH.from_dose(dose, s)
    msg = str(exc.value)
    assert "'Sphere'" in msg and "outside the dose grid" in msg and "allow_partial" in msg
    partial = DVH.from_dose(dose, s, allow_partial=True)
    # Analytic: the covered part is the half sphere below z = 1 mm, i.e. the cap above 1 mm is missing.
    covered = 1 - (R - 1) ** 2 * (2 * R + 1) / (4 * R**3)
    assert partial.covered_fraction == pytest.approx(covered, abs=0.02)
    assert partial.volume_cc == pytest.approx(covered * SPHERE_CC, rel=0.03)
    far = Structure("Far", s.mask, Grid(ct.shape, ct.spacing_mm, (500.0, 0.0, 0.0)))
    with pytest.raises(AnalysisError, match="does not overlap"):
        DVH.from_dose(dose, far, allow_partial=True)


def test_bad_inputs():
    g = _grid(10.0, 1.0)
    empty = Structure("Empty", np.zeros(g.shape, bool), g)
    dose = Volume(np.ones(g.shape), g, "Gy")
    with pytest.raises(AnalysisError, match="'Empty' is empty"):
        DVH.from_dose(dose, empty)
    s = _sphere(g, 5.0)
    with pytest.raises(AnalysisError, match="unit 'HU'"):
        DVH.from_dose(Volume(np.ones(g.shape), g, "HU"), s)
    dvh = DVH.from_dose(dose, s)
    with pytest.raises(AnalysisError, match="prescription_gy"):
        evaluate_metric(dvh, "V95%")
    with pytest.raises(AnalysisError, match="D105%"):
        dvh.metric("D105%")
    with pytest.raises(AnalysisError, match="evaluate_pvdr"):
        dvh.metric("PVDR")
    neg = Volume(np.full(g.shape, -1.0), g, "Gy")
    with pytest.raises(AnalysisError, match="negative dose"):
        DVH.from_dose(neg, s)


def test_samples_of_same_grid_are_voxel_doses():
    g = _grid(5.0, 1.0)
    rng = np.random.default_rng(1)
    arr = rng.uniform(0, 5, g.shape)
    s = _sphere(g, 3.0)
    samples = sample_dose(Volume(arr, g, "Gy"), s, subdivisions=1)
    assert np.array_equal(np.sort(samples.dose_gy), np.sort(arr[s.mask]))
    assert samples.covered_fraction == 1.0


@pytest.mark.parametrize(
    ("file", "end_cap", "volume_cc"),
    [
        # Exact sphere, r 12 mm: 4/3 pi 12^3 = 7.238 cc (Nelms et al. 2015, Table 1).
        ("Sphere_20_0.dcm", "half-slice", 7.238),
        # Cylinder r 12 mm, h 24 mm (exact 10.857 cc) contoured every 2 mm from z = -12 to 12:
        # each contour stands for a 2 mm slab, so the end caps add half a slice at each end:
        # pi 12^2 (24 + 2) = 11.762 cc.
        ("Cylinder_20_0.dcm", "half-slice", np.pi * 144 * 26 / 1000),
        # Cone r 12 mm, h 24 mm (exact 3.619 cc): contours of radius 12 - n mm, n = 0..11, each a
        # 2 mm slab: 2 pi sum(m^2, m = 1..12) = 2 pi 650 mm^3 = 4.084 cc.
        ("Cone_20_0.dcm", "half-slice", 2 * np.pi * 650 / 1000),
        # Without end caps the stacks stop at their end planes: the cylinder is its exact
        # 10.857 cc (pi 12^2 24 mm), the cone the trapezoid rule over its sections,
        # 2 pi (650 - 144 / 2) mm^3 = 3.632 cc (exact cone 3.619 cc).
        ("Cylinder_20_0.dcm", "none", 10.857),
        ("Cone_20_0.dcm", "none", 2 * np.pi * (650 - 72) / 1000),
    ],
)
def test_dvh_phantom_rtstructs(file, end_cap, volume_cc):
    """Nelms et al., Med Phys 42 (2015) 4435: the RTSTRUCTs read onto their 0.6 x 0.6 x 2 mm CT,
    the dose on a 2.4 x 2.4 x 2 mm grid: DVH volumes within 3 % of the analytic volumes of the
    contour stacks under each end-cap convention."""
    base = reference_path("dicom", "dvh-phantom")
    ct = read_ct(base / "ct-2mm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)  # the POINT ROI without contours
        (structure,) = read_rtstruct(base / "structures" / file, ct, end_cap=end_cap)
    g = structure.grid
    lo, hi = structure.bounding_box_lps_mm()
    dose = _linear_dose(Grid.from_extent(lo - 5, hi + 5, (g.spacing_mm[0], 2.4, 2.4)))
    dvh = DVH.from_dose(dose, structure)
    assert dvh.volume_cc == pytest.approx(volume_cc, rel=0.03)
    assert dvh.volume_cc == pytest.approx(structure.volume_cc, rel=1e-9)
    if file.startswith("Cylinder"):
        # Dose 10 + 0.5 z along the cylinder's axis: uniform over its length, from the first
        # to the last contour plane (the outermost voxel centres) plus the end caps, so
        # Dp% = d(top) - p % of the dose range (analytic; 0.1 Gy = 0.2 mm, a tenth of a slice,
        # for the polygon sections of the phantom), and no sample lies beyond the caps.
        cap_mm = 1.0 if end_cap == "half-slice" else 0.0
        d_lo, d_hi = 10.0 + 0.5 * (lo[2] - cap_mm), 10.0 + 0.5 * (hi[2] + cap_mm)
        assert d_lo - 1e-9 <= dvh.min_gy < d_lo + 0.1
        assert d_hi - 0.1 < dvh.max_gy <= d_hi + 1e-9
        for pct in (95, 50, 5):
            expected = d_hi - pct / 100 * (d_hi - d_lo)
            assert dvh.metric(f"D{pct}%") == pytest.approx(expected, abs=0.1)


def test_partly_filled_slices_on_the_dose_grid_sample_like_the_general_path(monkeypatch):
    """One sample per voxel on the dose's own grid: the shortcut for structures with partly
    filled slices (dose at the middle of the filled part, weighted by it) gives exactly the
    general sub-voxel sampler's samples (reference: the same call with the grids treated as
    different)."""
    rng = np.random.default_rng(1)
    g = Grid((8, 6, 6), (3.0, 1.0, 1.0))
    mask = np.zeros(g.shape, bool)
    mask[1:7, 1:5, 1:5] = True
    span = np.tile([-0.5, 0.5], (8, 1))
    span[1] = (0.0, 0.5)
    span[6] = (-0.5, -0.1)
    s = Structure("S", mask, g, slice_span=span)
    dose = Volume(rng.uniform(0, 5, g.shape), g, "Gy")
    fast = sample_dose(dose, s, subdivisions=1)
    monkeypatch.setattr(Grid, "same_as", lambda self, other, tol_mm=1e-3: False)
    general = sample_dose(dose, s, subdivisions=1)
    np.testing.assert_allclose(np.sort(fast.dose_gy), np.sort(general.dose_gy), atol=1e-12)
    assert fast.weights_cc.sum() == pytest.approx(general.weights_cc.sum(), rel=1e-12)
    assert fast.weights_cc.sum() == pytest.approx(s.volume_cc, rel=1e-12)
