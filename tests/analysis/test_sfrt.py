"""SFRT and SCART metrics on constructed doses with known answers."""

import itertools

import numpy as np
import pytest

from lattice_plan.analysis.sfrt import (
    evaluate_pvdr,
    neighbour_pairs,
    onion_layers,
    pvdr_d10_d90,
    pvdr_mean,
    pvdr_point,
    pvdr_profiles,
    scart_metrics,
    sfrt_metrics,
    vertex_count,
)
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry import Grid, Structure, StructureKind, Volume, expand, subtract, union

P, V = 20.0, 4.0
GRID = Grid.from_extent((-40, -40, -40), (40, 40, 40), 2.0)
Z, Y, X = np.meshgrid(*GRID.axis_coords_lps_mm(), indexing="ij")
CENTRES = np.array(list(itertools.product((-14.0, 14.0), repeat=3)))  # simple cubic, 28 mm pitch


def _dist_to(c):
    return np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2)


@pytest.fixture(scope="module")
def lattice():
    """GTV sphere r 34 mm, 8 vertices r 7.5 mm, valley = GTV minus vertices + 7 mm.

    Dose P within 11.5 mm of a centre (two voxels beyond each vertex, so trilinear
    sub-voxel samples of the vertices see only P) and V elsewhere (the valley lies
    more than a voxel from any P voxel, so it sees only V).
    """
    gtv = Structure("GTV", _dist_to((0, 0, 0)) <= 34.0, GRID, StructureKind.GTV)
    dmin = np.min([_dist_to(c) for c in CENTRES], axis=0)
    verts = [
        Structure(f"V{n}", _dist_to(c) <= 7.5, GRID, StructureKind.VERTEX)
        for n, c in enumerate(CENTRES)
    ]
    merged = union(*verts, name="Vertices")
    valley = subtract(gtv, expand(merged, 7.0), name="Valley", kind=StructureKind.VALLEY)
    dose = Volume(np.where(dmin <= 11.5, P, V), GRID, "Gy")
    return dose, gtv, verts, merged, valley


def test_every_pvdr_variant_is_p_over_v(lattice):
    """Analytic: with dose P in the vertices and V in the valley, every PVDR is P / V = 5.

    D10/D90 also gives P / V because the P region holds more than 10 % and the V region
    more than 10 % of the GTV.
    """
    dose, gtv, verts, merged, valley = lattice
    # D-values assume dose uniform within a 0.01 Gy bin: exact to 1e-3 relative here.
    assert pvdr_d10_d90(dose, gtv) == pytest.approx(P / V, rel=1e-3)
    for vertices in (verts, merged):
        assert pvdr_mean(dose, vertices, valley) == pytest.approx(P / V, rel=1e-9)
        assert pvdr_point(dose, vertices, valley) == pytest.approx(P / V, rel=1e-9)
    prof = pvdr_profiles(dose, CENTRES)
    assert len(prof.pairs) == 12  # the 12 edges of the cube of centres
    assert np.allclose(prof.pvdr, P / V)
    assert evaluate_pvdr(dose, "PVDR[profile]", vertex_centers_lps_mm=CENTRES) == pytest.approx(5)
    assert evaluate_pvdr(dose, "PVDR", gtv=gtv) == pytest.approx(5, rel=1e-3)
    # EQD2 at a/b 10 in one fraction: (20 * 30 / 12) / (4 * 14 / 12) = 50 / 4.667.
    eq = evaluate_pvdr(dose, "EQD2:PVDR[mean]", vertices=merged, valley=valley, n_fractions=1)
    assert eq == pytest.approx((20 * 30 / 12) / (4 * 14 / 12), rel=1e-9)
    with pytest.raises(AnalysisError, match="valley"):
        evaluate_pvdr(dose, "PVDR[point]", vertices=merged)
    with pytest.raises(AnalysisError, match="not a PVDR"):
        evaluate_pvdr(dose, "Dmax", gtv=gtv)


def test_sfrt_metrics_summary(lattice):
    dose, gtv, verts, merged, valley = lattice
    m = sfrt_metrics(dose, gtv, merged, valley, n_fractions=1, vertex_centers_lps_mm=CENTRES)
    assert m.vertex_count == 8 == vertex_count(verts)
    assert m.vertex_density_per_100cc == pytest.approx(800.0 / gtv.volume_cc)
    assert m.peak_mean_gy == pytest.approx(P) and m.peak_d50_gy == pytest.approx(P)
    assert m.valley_mean_gy == pytest.approx(V) and m.valley_d90_gy == pytest.approx(V)
    assert m.pvdr_profile == pytest.approx(5.0)
    # EUD lies between valley and peak, near the valley (cold volume dominates survival).
    assert V < m.gtv_eud_gy < 0.5 * (P + V)


def test_neighbour_pairs_hcp_like():
    """Centres on a line at 20 mm pitch plus one far away: only consecutive pairs are neighbours."""
    c = np.array([[0, 0, 0], [20, 0, 0], [40, 0, 0], [0, 0, 100.0]])
    pairs = neighbour_pairs(c)
    assert {tuple(p) for p in pairs} == {(0, 1), (1, 2)}
    with pytest.raises(AnalysisError, match="two vertex centres"):
        neighbour_pairs(c[:1])


def test_onion_layers_radial_dose():
    """Sphere r 30 mm, dose 10 + 0.5 x depth (Gy): 5 shells 6 mm thick.

    Analytic shell volumes 4/3 pi (ro^3 - ri^3) with ro = 30 - 6i, ri = ro - 6, and mean
    depth 30 - 3/4 (ro^4 - ri^4) / (ro^3 - ri^3) (volume-weighted mean radius of a shell).
    """
    g = Grid.from_extent((-36, -36, -36), (36, 36, 36), 1.5)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    gtv = Structure("GTV", r <= 30.0, g, StructureKind.GTV)
    dose = Volume(10 + 0.5 * np.clip(30 - r, 0, None), g, "Gy")
    layers = onion_layers(dose, gtv, 5)
    assert [layer.index for layer in layers] == list(range(5))
    for i, layer in enumerate(layers):
        ro, ri = 30.0 - 6 * i, 24.0 - 6 * i
        analytic = 4 / 3 * np.pi * (ro**3 - ri**3) / 1000
        assert layer.volume_cc == pytest.approx(analytic, rel=0.08, abs=0.3)
        depth = 30 - 0.75 * (ro**4 - ri**4) / (ro**3 - ri**3)
        assert layer.mean_gy == pytest.approx(10 + 0.5 * depth, abs=0.3)  # 0.6 mm of depth
        assert layer.d10_gy >= layer.mean_gy >= layer.d90_gy
    assert sum(layer.volume_cc for layer in layers) == pytest.approx(gtv.volume_cc, rel=1e-9)
    with pytest.raises(AnalysisError, match="fewer layers"):
        onion_layers(dose, gtv.with_mask(r <= 3.0), 5)


def test_scart_metrics():
    """STV r 10 mm in GTV r 30 mm; 20 Gy out to 14 mm, 4 Gy beyond 22 mm, linear between.

    (Both plateaus reach more than a sub-voxel sample plus one voxel beyond the structures.)

    Analytic: STV D95 = D50 = 20 Gy, the 3 mm GTV edge gets 4 Gy, core/edge = 5.
    """
    r = _dist_to((0, 0, 0))
    dose = Volume(np.interp(r, [0, 14, 22, 100], [P, P, V, V]), GRID, "Gy")
    stv = Structure("STV", r <= 10.0, GRID, StructureKind.CORE)
    gtv = Structure("GTV", r <= 30.0, GRID, StructureKind.GTV)
    m = scart_metrics(dose, stv, gtv, 3.0)
    assert m.stv_d95_gy == pytest.approx(P) and m.stv_d50_gy == pytest.approx(P)
    assert m.gtv_edge_mean_gy == pytest.approx(V)
    assert m.core_to_edge_ratio == pytest.approx(P / V)
