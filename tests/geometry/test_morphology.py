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
