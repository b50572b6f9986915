"""BED, EQD2, alpha/beta per structure, gEUD and cell-survival EUD."""

import numpy as np
import pytest

from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.radiobiology import (
    alpha_beta_map_gy,
    bed_gy,
    default_alpha_beta_gy,
    eqd2_gy,
    eqd2_volume,
    eud_gy,
    geud_gy,
)
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry import Grid, Structure, StructureKind, Volume


def test_eqd2_published_examples():
    """EQD2 = D (d + a/b) / (2 + a/b), d = D / n (LQ model, Joiner & van der Kogel).

    8 Gy x1 at a/b 10: 8 (8 + 10) / 12 = 12.0 Gy. 30 Gy/10 at a/b 2: 30 (3 + 2) / 4 = 37.5 Gy.
    """
    assert eqd2_gy(8.0, 1, 10.0) == pytest.approx(12.0)
    assert eqd2_gy(30.0, 10, 2.0) == pytest.approx(37.5)
    # 2 Gy fractions are their own EQD2 for any a/b.
    assert eqd2_gy(60.0, 30, 3.0) == pytest.approx(60.0)
    # BED of 20 Gy x1 at a/b 10: 20 (1 + 20 / 10) = 60 Gy.
    assert bed_gy(20.0, 1, 10.0) == pytest.approx(60.0)


def test_bad_fractionation():
    with pytest.raises(AnalysisError, match="n_fractions"):
        eqd2_gy(8.0, 0, 10.0)
    with pytest.raises(AnalysisError, match="n_fractions"):
        eqd2_gy(8.0, 2.5, 10.0)
    with pytest.raises(AnalysisError, match="alpha/beta"):
        bed_gy(8.0, 1, -3.0)


def _grid():
    return Grid((10, 10, 10), (2.0, 2.0, 2.0))


def test_alpha_beta_defaults_and_overlap_order():
    g = _grid()
    body = np.ones(g.shape, bool)
    cord = np.zeros(g.shape, bool)
    cord[:, 4:6, 4:6] = True
    gtv = np.zeros(g.shape, bool)
    gtv[2:5, 0:3, 0:3] = True
    s_body = Structure("Body", body, g, StructureKind.EXTERNAL)
    s_cord = Structure("SpinalCord", cord, g, StructureKind.OAR)
    s_gtv = Structure("GTV", gtv, g, StructureKind.GTV)
    assert default_alpha_beta_gy(s_gtv) == 10.0
    assert default_alpha_beta_gy(s_cord) == 2.0
    assert default_alpha_beta_gy(s_body) == 3.0
    ab = alpha_beta_map_gy(g, [s_body, s_cord, s_gtv])
    assert np.all(ab[cord] == 2.0) and np.all(ab[gtv] == 10.0)
    assert np.all(ab[~cord & ~gtv] == 3.0)
    ab2 = alpha_beta_map_gy(g, [s_body, s_gtv], alpha_beta_gy={"gtv": 5.0})
    assert np.all(ab2[gtv] == 5.0)
    with pytest.raises(AnalysisError, match="Lung"):
        alpha_beta_map_gy(g, [s_body], alpha_beta_gy={"Lung": 4.0})


def test_eqd2_volume_per_voxel():
    g = _grid()
    gtv = np.zeros(g.shape, bool)
    gtv[:5] = True
    dose = Volume(np.full(g.shape, 8.0), g, "Gy")
    eq = eqd2_volume(dose, 1, [Structure("GTV", gtv, g, StructureKind.GTV)])
    assert np.allclose(eq.array[gtv], 12.0)  # a/b 10
    assert np.allclose(eq.array[~gtv], 8 * (8 + 3) / 5)  # background a/b 3: 17.6 Gy


def test_geud_a1_is_mean_and_limits():
    rng = np.random.default_rng(3)
    d = rng.uniform(5.0, 25.0, 20000)
    dvh = DVH.from_samples("S", d, 0.001)
    # Analytic: gEUD with a = 1 is the mean dose (Niemierko 1999).
    assert geud_gy(dvh, 1.0) == pytest.approx(d.mean(), rel=1e-9)
    # Other a: the defining formula on the samples (bins of 0.01 Gy change it by < 1e-4).
    for a in (8.0, -10.0):
        assert geud_gy(dvh, a) == pytest.approx(np.mean(d**a) ** (1 / a), rel=1e-4)
    # Uniform on [5, 25]: gEUD_a = ((25^(a+1) - 5^(a+1)) / ((a+1) 20))^(1/a) -> 24.37 Gy at a=200.
    a = 200.0
    analytic = ((25.0 ** (a + 1) - 5.0 ** (a + 1)) / ((a + 1) * 20.0)) ** (1 / a)
    assert geud_gy(dvh, a) == pytest.approx(analytic, rel=0.005)
    with pytest.raises(AnalysisError, match="non-zero"):
        geud_gy(dvh, 0.0)


def test_eud_uniform_and_two_compartments():
    """A uniform dose is its own EUD; two halves at D1, D2 give the LQ-survival solution.

    Reference: mean survival S = (exp(-E(D1)) + exp(-E(D2))) / 2 with
    E(D) = alpha D + beta D^2 / n; the EUD solves E(EUD) = -ln S (Niemierko 1997).
    """
    dvh = DVH.from_samples("U", np.full(100, 12.0), 0.01)
    assert eud_gy(dvh, 1) == pytest.approx(12.0, abs=1e-9)
    two = DVH.from_samples("T", np.r_[np.full(100, 10.0), np.full(100, 20.0)], 0.01)
    alpha, ab, n = 0.3, 10.0, 1

    def effect(x):
        return alpha * x + alpha / ab * x * x / n

    s = 0.5 * (np.exp(-effect(10.0)) + np.exp(-effect(20.0)))
    eud = eud_gy(two, n, alpha, ab)
    assert effect(eud) == pytest.approx(-np.log(s), rel=1e-9)
    assert 10.0 < eud < 12.0  # dominated by the cold half
