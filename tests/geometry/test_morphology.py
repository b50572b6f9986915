"""Margins and Boolean operations against analytic volumes."""

import numpy as np
import pytest

from lattice_plan.errors import GeometryError, StructureNotFoundError
from lattice_plan.geometry import (
    Grid,
    Structure,
    StructureKind,
    StructureSet,
    connected_components,
    contract,
    expand,
    intersection,
    ring,
    subtract,
    union,
)
from lattice_plan.geometry.structure import structure_on_grid


def sphere(radius_mm, spacing_mm, center=(0.3, -0.2, 0.1), half_width_mm=45.0, name="S"):
    g = Grid.from_extent([-half_width_mm] * 3, [half_width_mm] * 3, spacing_mm)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    r2 = (x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2
    return Structure(name, r2 <= radius_mm**2, g, StructureKind.GTV)


def ball_cc(r_mm):
    return 4.0 / 3.0 * np.pi * r_mm**3 / 1000.0


@pytest.mark.parametrize(("r", "m"), [(15.0, 5.0), (20.0, 10.0), (12.0, 3.0)])
def test_expand_sphere_volume_within_2_percent(r, m):
    """Analytic: a sphere of radius r expanded by m is a sphere of radius r+m (1 mm voxels)."""
    s = sphere(r, 1.0)
    assert expand(s, m).volume_cc == pytest.approx(ball_cc(r + m), rel=0.02)


@pytest.mark.parametrize(("r", "m"), [(25.0, 5.0), (30.0, 10.0), (20.0, 3.0)])
def test_contract_sphere_volume_within_2_percent(r, m):
    """Analytic: a sphere of radius r contracted by m is a sphere of radius r-m (1 mm voxels)."""
    s = sphere(r, 1.0)
    assert contract(s, m).volume_cc == pytest.approx(ball_cc(r - m), rel=0.02)


def test_anisotropic_spacing_gives_the_same_margins():
    """Margins use the true spacing: 1 x 1 x 2.5 mm voxels give the isotropic answer (to 2.5 %)."""
    iso = sphere(20.0, 1.0)
    aniso = sphere(20.0, (2.5, 1.0, 1.0))
    for op, m in ((expand, 8.0), (contract, 6.0)):
        assert op(aniso, m).volume_cc == pytest.approx(op(iso, m).volume_cc, rel=0.025)
        expected = ball_cc(20.0 + m if op is expand else 20.0 - m)
        assert op(aniso, m).volume_cc == pytest.approx(expected, rel=0.025)


def test_expansion_is_not_voxel_dilation():
    """On a 1 x 1 x 3 mm grid a 3 mm margin grows the sphere by about one slice in z, not three."""
    s = sphere(15.0, (3.0, 1.0, 1.0))
    grown = expand(s, 3.0)
    lo, hi = grown.bounding_box_lps_mm()
    slo, shi = s.bounding_box_lps_mm()
    assert (shi[2] - slo[2]) + 6.0 == pytest.approx(hi[2] - lo[2], abs=3.0)
    assert (shi[0] - slo[0]) + 6.0 == pytest.approx(hi[0] - lo[0], abs=1.0)


def test_ring_is_the_shell_between_margins():
    s = sphere(15.0, 1.0)
    r = ring(s, 2.0, 10.0)
    assert r.kind is StructureKind.RING
    assert not (r.mask & s.mask).any()
    assert r.volume_cc == pytest.approx(ball_cc(25.0) - ball_cc(17.0), rel=0.03)


def test_boolean_operations_and_components():
    a = sphere(10.0, 1.0, center=(-15, 0, 0), name="A")
    b = sphere(10.0, 1.0, center=(15, 0, 0), name="B")
    both = union(a, b, name="AB")
    assert both.volume_cc == pytest.approx(a.volume_cc + b.volume_cc)
    assert intersection(a, b, name="none").is_empty
    assert subtract(both, a, name="onlyB").volume_cc == pytest.approx(b.volume_cc)
    parts = connected_components(both)
    assert len(parts) == 2
    np.testing.assert_allclose(sorted(p.centroid_lps_mm()[0] for p in parts), [-15, 15], atol=0.05)


def test_structure_centroid_and_volume():
    s = sphere(12.0, 0.5, center=(3.0, -4.0, 5.0), half_width_mm=20)
    np.testing.assert_allclose(s.centroid_lps_mm(), [3.0, -4.0, 5.0], atol=0.01)
    assert s.volume_cc == pytest.approx(ball_cc(12.0), rel=0.01)


def test_bad_inputs_give_clear_errors():
    s = sphere(10.0, 1.0)
    other = sphere(10.0, 2.0, name="T")
    with pytest.raises(GeometryError, match="different grid"):
        union(s, other, name="U")
    with pytest.raises(GeometryError, match="non-negative"):
        expand(s, -2.0)
    with pytest.raises(GeometryError, match="outer margin"):
        ring(s, 5.0, 3.0)
    ss = StructureSet.from_structures([s])
    with pytest.raises(StructureNotFoundError, match="holds: S"):
        ss.get("Spinal_Cord")
    with pytest.raises(GeometryError, match="different grid"):
        ss.with_structures(other)
    with pytest.raises(GeometryError, match="unique"):
        StructureSet.from_structures([s, s.renamed("s")])


def test_structure_set_lookup_is_case_insensitive_and_immutable():
    s = sphere(10.0, 2.0, name="CaudaEquina")
    ss = StructureSet.from_structures([s])
    assert ss.get("caudaequina") is s
    assert "CAUDAEQUINA" in ss
    with pytest.raises(ValueError):
        s.mask[0, 0, 0] = True


def test_slice_span_sets_volume_and_survives_renaming_only():
    """A structure whose end slices are half filled (contour end caps, io.rtstruct): volume is
    (whole slices + 2 halves) x voxel volume; renaming keeps the spans, a new mask drops them,
    and resampling onto another grid counts the filled fraction before thresholding at 0.5."""
    g = Grid((6, 4, 4), (2.0, 1.0, 1.0))
    mask = np.zeros(g.shape, bool)
    mask[1:5] = True
    span = np.tile([-0.5, 0.5], (6, 1))
    span[1] = (0.0, 0.5)
    span[4] = (-0.5, 0.0)
    s = Structure("S", mask, g, slice_span=span)
    assert s.slice_fraction[[1, 2, 4]] == pytest.approx([0.5, 1.0, 0.5])
    assert s.volume_cc == pytest.approx(3 * 16 * 2.0 / 1000)  # 2 whole + 2 half slices
    assert s.renamed("T").volume_cc == pytest.approx(s.volume_cc)
    assert s.with_mask(mask).slice_span is None
    # Whole spans on every filled slice are the same as none.
    assert Structure("W", mask, g, slice_span=np.tile([-0.5, 0.5], (6, 1))).slice_span is None
    # Onto 1 mm slices: the fraction field is 0.5 at the end slices' centres (z = 2, 8 mm) and
    # 0.25 one slice beyond, so slices z = 2..8 mm are in (7); unweighted 0/1 interpolation
    # would give 0.5 at z = 1 and 9 mm and take 9 slices.
    fine = structure_on_grid(s, g.with_spacing((1.0, 1.0, 1.0)))
    assert np.count_nonzero(fine.mask.any(axis=(1, 2))) == 7


@pytest.mark.parametrize(
    ("span", "match"),
    [
        (np.zeros((5, 2)), r"shape \(6, 2\)"),
        (np.tile([0.2, -0.2], (6, 1)), "lo <= hi"),
        (np.tile([-0.7, 0.5], (6, 1)), "lo <= hi"),
    ],
)
def test_bad_slice_spans_are_refused(span, match):
    g = Grid((6, 4, 4), (2.0, 1.0, 1.0))
    with pytest.raises(GeometryError, match=match):
        Structure("S", np.ones(g.shape, bool), g, slice_span=span)


def test_derived_structures_keep_partly_filled_slices():
    """Union, intersection, subtraction and edge-like subsets of structures with half-filled end
    slices keep those spans, so volumes still add up: A (slices 1-4, slice 1 half) united with
    B (slices 3-5, slice 5 half) covers 0.5 + 3 + 0.5 slices; their overlap 2 whole slices."""
    g = Grid((7, 4, 4), (2.0, 1.0, 1.0))
    a_mask, b_mask = np.zeros(g.shape, bool), np.zeros(g.shape, bool)
    a_mask[1:5] = True
    b_mask[3:6] = True
    a_span, b_span = np.tile([-0.5, 0.5], (7, 1)), np.tile([-0.5, 0.5], (7, 1))
    a_span[1] = (0.0, 0.5)
    b_span[5] = (-0.5, 0.0)
    a = Structure("A", a_mask, g, slice_span=a_span)
    b = Structure("B", b_mask, g, slice_span=b_span)
    slice_cc = 16 * 2.0 / 1000.0
    assert union(a, b, name="U").volume_cc == pytest.approx(4.0 * slice_cc)
    assert intersection(a, b, name="I").volume_cc == pytest.approx(2.0 * slice_cc)
    assert subtract(a, b, name="S").volume_cc == pytest.approx(1.5 * slice_cc)
    edge = a.with_mask(a_mask & ~b_mask, keep_slice_span=True)
    assert edge.volume_cc == pytest.approx(1.5 * slice_cc)
    # a zero-width span on a filled slice would give samples of no volume: refused
    bad = a_span.copy()
    bad[2] = (0.1, 0.1)
    with pytest.raises(GeometryError, match="hi > lo on every filled slice"):
        Structure("Z", a_mask, g, slice_span=bad)
