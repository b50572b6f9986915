"""Physics invariants of the dose engine, its adjoint, heterogeneity and input checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lattice_plan.dose.beam import MLC, Beam, FluenceMap, Jaws
from lattice_plan.dose.commission import read_mcc
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.hu import HUDensityTable
from lattice_plan.dose.model import BeamModel
from lattice_plan.dose.water import pdd
from lattice_plan.errors import DoseError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import Structure
from lattice_plan.geometry.volume import Volume
from tests.conftest import reference_path

SPACING = 2.5


def _phantom(shape_fn, half_mm=80.0, position="HFS", spacing=SPACING, hu_inside=0.0):
    """A CT of water (HU 0) where shape_fn(x, y, z) holds, air elsewhere; centred on the origin."""
    n = round(2 * half_mm / spacing) + 1
    grid = Grid((n, n, n), (spacing,) * 3, (-half_mm,) * 3, patient_position=position)
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    inside = shape_fn(x, y, z)
    hu = np.where(inside, hu_inside, -1000.0).astype(np.int16)
    return Volume(hu, grid, "HU"), Structure("Body", inside, grid, "EXTERNAL")


def _beam(gantry=0.0, couch=0.0, field=(60.0, 60.0), mu=100.0, **kw):
    return Beam("b", gantry, (0.0, 0.0, 0.0), Jaws.symmetric(*field), mu=mu, couch_deg=couch, **kw)


@pytest.fixture(scope="module")
def sphere_engine():
    ct, body = _phantom(lambda x, y, z: x**2 + y**2 + z**2 <= 75.0**2)
    return DoseEngine(ct, body, dose_spacing_mm=SPACING)


# ---------------------------------------------------------------------------- invariants


def test_dose_is_linear_in_mu_and_beams_superpose(sphere_engine):
    b1 = _beam(0.0, mu=100.0)
    b2 = _beam(70.0, mu=40.0, field=(40.0, 80.0), collimator_deg=30.0)
    d1 = sphere_engine.compute([b1]).array
    d1_half = sphere_engine.compute([b1.with_mu(50.0)]).array
    d2 = sphere_engine.compute([b2]).array
    both = sphere_engine.compute([b1, b2]).array
    scale = d1.max()
    # linearity and superposition are exact properties of the engine (to rounding)
    assert np.abs(d1 - 2.0 * d1_half).max() <= 1e-6 * scale
    assert np.abs(both - (d1 + d2)).max() <= 1e-6 * scale
    assert d1.max() > 0 and d2.max() > 0


def _rotation_error(engine, beam_a, beam_b, rotate):
    da = engine.compute([beam_a]).array
    db = engine.compute([beam_b]).array
    inside = engine.active_mask & rotate(engine.active_mask)
    return np.abs(rotate(da) - db)[inside].max() / da.max()


def test_gantry_rotation_of_a_water_sphere_rotates_the_dose(sphere_engine):
    # HFS: gantry 0 enters from anterior (-y), gantry 90 from the patient's left (+x).
    # Rotating the gantry-0 dose by +90 degrees about z (y -> x: x' = -y, y' = x) gives
    # the gantry-90 dose. On this grid the rotation maps voxel centres onto voxel centres.
    def rot(a):
        # a[k, j, i] with x = i, y = j: new[k, j', i'] = a[k, j, i] with i' = n-1-j, j' = i
        return np.transpose(a, (0, 2, 1))[:, :, ::-1]

    err = _rotation_error(sphere_engine, _beam(0.0), _beam(90.0), rot)
    # the two beams' divergent ray grids sample the sphere differently: a few per cent of
    # the maximum at most, in the steepest penumbra voxels
    assert err < 0.03


def test_couch_rotation_of_a_water_sphere_rotates_the_dose(sphere_engine):
    # Gantry 90 enters from +x (left) at couch 0. At couch 90 the patient is turned
    # counter-clockwise seen from above, so the beam enters from the patient's feet
    # (-z, HFS). A rotation about y taking +x to -z maps the first dose onto the second.
    def rot(a):
        # new(x', z') = old(x, z) with x' = ... ; +x -> -z and +z -> +x: z' = -x, x' = z
        return np.transpose(a, (2, 1, 0))[::-1, :, :]

    err = _rotation_error(sphere_engine, _beam(90.0, 0.0), _beam(90.0, 90.0), rot)
    assert err < 0.03


def test_inverse_square_two_ssds_follow_the_mayneord_factor():
    # The same large field (30 x 30 cm at the isocentre: head scatter and phantom scatter
    # are then saturated, so the field's growth with SSD hardly matters) at SSD 1000 and 1200:
    # at d_max the doses per MU scale as the inverse square of the source distances, and at
    # 100 mm the PDDs differ by the Mayneord F factor (Khan, The Physics of Radiation Therapy,
    # ch. 9: F = [(SSD2 + dm)(SSD1 + d) / ((SSD1 + dm)(SSD2 + d))]^2).
    ssd1, ssd2, dmax, d = 1000.0, 1200.0, 15.0, 100.0
    field = (300.0, 300.0)
    dose1 = pdd(field, ssd1, [dmax, d])
    dose2 = pdd(field, ssd2, [dmax, d])
    isq = ((ssd1 + dmax) / (ssd2 + dmax)) ** 2
    assert dose2[0] / dose1[0] == pytest.approx(isq, rel=0.005)
    mayneord = (((ssd2 + dmax) * (ssd1 + d)) / ((ssd1 + dmax) * (ssd2 + d))) ** 2
    assert (dose2[1] / dose2[0]) / (dose1[1] / dose1[0]) == pytest.approx(mayneord, rel=0.01)


def test_patient_position_decides_where_gantry_zero_enters():
    half = 60.0
    for position, entry_sign in (("HFS", -1), ("HFP", +1)):
        ct, body = _phantom(lambda x, y, z: np.abs(y) <= 50.0, half_mm=half, position=position)
        eng = DoseEngine(ct, body)
        dose = eng.point_dose([_beam(0.0)], [[0.0, -40.0, 0.0], [0.0, 40.0, 0.0]])
        # supine: anterior (-y) is up, so the entrance side (higher dose) is anterior;
        # prone: posterior (+y) is up
        entrance, exit_ = (dose[0], dose[1]) if entry_sign < 0 else (dose[1], dose[0])
        assert entrance > 1.2 * exit_


# ---------------------------------------------------------------------------- the operator


@pytest.fixture(scope="module")
def operator_setup():
    """The operator on an engine whose model has no MLC leaf transmission.

    ``compute`` adds the leaf transmission of a sliding-window delivery of the
    maps, which the (linear) operator leaves out; without it the two must agree
    exactly (tests/dose/test_leaf_transmission.py tests the transmission).
    """
    ct, body = _phantom(lambda x, y, z: x**2 + y**2 + z**2 <= 75.0**2)
    model = replace(BeamModel.load_default(), mlc_transmission=0.0)
    engine = DoseEngine(ct, body, model=model, dose_spacing_mm=SPACING)
    beams = [_beam(0.0, field=(40.0, 30.0)), _beam(100.0, field=(30.0, 40.0), collimator_deg=15.0)]
    op = engine.operator(beams, beamlet_mm=5.0)
    return engine, op


def test_adjoint_identity_holds_to_1e8(operator_setup):
    engine, op = operator_setup
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, op.n_beamlets)
    y = rng.normal(size=engine.dose_grid.shape)
    lhs = float(np.vdot(op.forward(x), y))
    rhs = float(np.vdot(x, op.adjoint(y)))
    assert abs(lhs - rhs) <= 1e-8 * max(abs(lhs), abs(rhs))
    # and on a voxel subset given as flat indices (what the optimiser passes)
    sub = rng.choice(engine.dose_grid.n_voxels, 5000, replace=False)
    y_sub = rng.normal(size=len(sub))
    lhs = float(np.vdot(op.forward(x, sub), y_sub))
    rhs = float(np.vdot(x, op.adjoint(y_sub, sub)))
    assert abs(lhs - rhs) <= 1e-8 * max(abs(lhs), abs(rhs))


def test_operator_equals_compute_of_the_beams_it_returns(operator_setup):
    engine, op = operator_setup
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 50, op.n_beamlets)
    beams = op.beams_from_x(x)
    direct = engine.compute(beams).array
    via_op = op.forward(x)
    assert np.abs(direct - via_op).max() <= 1e-6 * direct.max()
    mask = direct > 0.5 * direct.max()
    np.testing.assert_allclose(op.forward(x, mask), direct[mask], rtol=1e-9)


def test_voxel_operator_equals_the_operator_on_its_voxels(operator_setup):
    # Reference: the operator's own forward/adjoint with the voxels passed on each call; the
    # float32 maps may differ by float32 rounding (eps 6e-8) summed over a few kernels.
    engine, op = operator_setup
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 50, op.n_beamlets)
    sub = np.sort(rng.choice(engine.dose_grid.n_voxels, 5000, replace=False))
    g = rng.normal(size=len(sub))
    ref_dose, ref_grad = op.forward(x, sub), op.adjoint(g, sub)
    exact = op.on_voxels(sub)
    np.testing.assert_allclose(exact.forward(x), ref_dose, rtol=0, atol=1e-12 * ref_dose.max())
    np.testing.assert_allclose(exact.adjoint(g), ref_grad, rtol=0, atol=1e-12 * abs(ref_grad).max())
    single = op.on_voxels(sub, single_precision=True)
    assert np.abs(single.forward(x) - ref_dose).max() <= 1e-5 * ref_dose.max()
    assert np.abs(single.adjoint(g) - ref_grad).max() <= 1e-5 * np.abs(ref_grad).max()
    assert exact.n_voxels == len(sub) and exact.n_beamlets == op.n_beamlets
    # rows(r): the same operator on some of its voxels (the optimiser's active set)
    rows = np.sort(rng.choice(len(sub), 700, replace=False))
    part = single.rows(rows)
    assert part.n_voxels == 700
    whole = single.forward(x)
    np.testing.assert_allclose(part.forward(x), whole[rows], rtol=0, atol=1e-12 * whole.max())
    g_rows = np.zeros(len(sub))
    g_rows[rows] = g[rows]
    back = single.adjoint(g_rows)
    np.testing.assert_allclose(part.adjoint(g[rows]), back, rtol=0, atol=1e-6 * np.abs(back).max())


def test_beamlet_size_2p5_mm_is_supported(sphere_engine):
    op = sphere_engine.operator([_beam(0.0, field=(20.0, 20.0))], beamlet_mm=2.5)
    assert op.n_beamlets == 64
    assert op.split(op.x_open())[0].shape == (8, 8)


# ---------------------------------------------------------------------------- heterogeneity

# HU table for the slab tests: HU -500 -> RED 0.25 (lung), HU 800 -> RED 1.8 (bone)
SLAB_TABLE = HUDensityTable.from_pairs(
    [(-1000, 0.0), (-500, 0.25), (0, 1.0), (800, 1.8), (3000, 1.8)]
)


def _measured_tmr(depth_mm, ssd_mm=1000.0):
    """Measured 10 x 10 PDD (reference scan) with the inverse square removed: a TMR-like curve."""
    scan = read_mcc(reference_path("beam-data", "varian-unique-6x-10x10PDD.mcc"))[0]
    p = np.interp(depth_mm, scan.positions_mm, scan.normalised())
    return p * ((ssd_mm + np.asarray(depth_mm)) / ssd_mm) ** 2


@pytest.mark.parametrize(
    ("slab_hu", "slab_red", "slab_from", "slab_to"),
    [(-500, 0.25, 30.0, 80.0), (800, 1.8, 30.0, 60.0)],
    ids=["lung", "bone"],
)
def test_slab_heterogeneity_scales_dose_by_radiological_depth(
    slab_hu, slab_red, slab_from, slab_to
):
    # water box, surface at y = -100 mm (SSD 900 for an isocentre at the origin), 10 x 10 cm
    half = 150.0
    spacing = 2.5
    n = int(2 * half / spacing) + 1
    grid = Grid((41, n, 41), (spacing,) * 3, (-50.0, -half, -50.0))
    _, y, _ = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    depth = y + 100.0
    hu_water = np.where(depth >= 0, 0, -1000).astype(np.int16)
    hu_slab = hu_water.copy()
    hu_slab[(depth >= slab_from) & (depth < slab_to)] = slab_hu
    beam = Beam("b", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(100.0, 100.0), mu=100.0)
    depths = np.arange(0.0, 191.0, 2.5)
    pts = np.stack([0 * depths, depths - 100.0, 0 * depths], axis=1)
    doses = []
    for hu in (hu_water, hu_slab):
        eng = DoseEngine(Volume(hu, grid, "HU"), None, dose_spacing_mm=spacing, hu_table=SLAB_TABLE)
        doses.append(eng.point_dose([beam], pts))
    water, slab = doses
    assert np.all(slab >= 0) and np.all(np.isfinite(slab))
    # continuity beyond the build-up, across both interfaces: no step between neighbouring
    # points (2.5 mm apart) larger than 3 % of the maximum
    beyond = depths[1:] > 20.0
    assert np.abs(np.diff(slab))[beyond].max() < 0.03 * slab.max()
    # beyond the slab the radiological depth is d - thickness * (1 - RED)
    thickness = slab_to - slab_from
    for d in (100.0, 150.0):
        d_rad = d - thickness * (1.0 - slab_red)
        expected = float(_measured_tmr(d_rad) / _measured_tmr(d))
        got = float(np.interp(d, depths, slab) / np.interp(d, depths, water))
        # lung 50 mm: expected about 1.10-1.12; bone 30 mm: about 0.92
        assert got == pytest.approx(expected, abs=0.02), (d, expected, got)
        assert (got - 1.0) * (1.0 - slab_red) > 0  # lung raises, bone lowers the dose beyond


# ---------------------------------------------------------------------------- bad input


def test_isocentre_outside_the_ct_is_refused(sphere_engine):
    beam = Beam("far", 0.0, (0.0, 0.0, 500.0), Jaws.symmetric(50, 50))
    with pytest.raises(DoseError, match=r"isocentre .* outside the CT"):
        sphere_engine.compute([beam])


def test_empty_apertures_are_refused(sphere_engine):
    with pytest.raises(DoseError, match="empty aperture"):
        Jaws(10.0, 10.0, -20.0, 20.0)
    with pytest.raises(DoseError, match="empty aperture"):
        Beam("b", 0.0, (0, 0, 0), Jaws.symmetric(50, 50), mlc=MLC.closed())
    with pytest.raises(DoseError, match="empty aperture"):
        Beam(
            "b",
            0.0,
            (0, 0, 0),
            Jaws.symmetric(50, 50),
            fluence=FluenceMap(np.zeros((3, 3)), 5.0, (0, 0)),
        )
    outside = FluenceMap(np.ones((2, 2)), 5.0, (100.0, 100.0))
    with pytest.raises(DoseError, match="empty aperture"):
        sphere_engine.compute([Beam("b", 0.0, (0, 0, 0), Jaws.symmetric(50, 50), fluence=outside)])


def test_negative_mu_is_refused():
    with pytest.raises(DoseError, match="MU must be >= 0"):
        _beam(mu=-1.0)


def test_dose_grid_finer_than_the_ct_is_refused():
    ct, body = _phantom(lambda x, y, z: x**2 + y**2 <= 50.0**2, half_mm=60.0, spacing=3.0)
    with pytest.raises(DoseError, match="finer than the CT"):
        DoseEngine(ct, body, dose_spacing_mm=2.0)


def test_non_monotonic_hu_table_is_refused():
    with pytest.raises(DoseError, match="not monotonic"):
        HUDensityTable.from_pairs([(-1000, 0.0), (0, 1.0), (500, 0.9), (1000, 1.5)])
    with pytest.raises(DoseError, match="increase strictly"):
        HUDensityTable.from_pairs([(-1000, 0.0), (0, 1.0), (0, 1.1)])


def test_default_hu_table_maps_water_and_air():
    # the calibration's anchor points: water (0 HU) is RED 1, air (-1000 HU) about 0
    t = HUDensityTable.default()
    assert t.density([0.0])[0] == pytest.approx(1.0)
    assert t.density([-1000.0])[0] == pytest.approx(0.001, abs=1e-6)


def test_scatter_kernel_distances_bracket_the_points_and_stay_positive():
    """The two scatter-kernel distances (s / SAD) snap outward to a 0.02 grid, bracket every
    point, and stay at least 0.02 even for points right at the source (no zero width scale)."""
    from lattice_plan.dose.point_geometry import scatter_planes

    s = np.array([850.3, 1000.0, 1107.9])
    scales, blend = scatter_planes(s, 1000.0)
    assert scales == (0.84, 1.12)
    np.testing.assert_allclose(blend, (s / 1000.0 - 0.84) / 0.28, atol=1e-6)
    near, _ = scatter_planes(np.array([3.0, 900.0]), 1000.0)
    assert near[0] == pytest.approx(0.02)
