"""The shipped 6 MV model against measured scans (used in its fit) and published values (not used)."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.dose import water
from lattice_plan.dose.commission import Scan, read_csv, read_mcc
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DoseError
from tests.conftest import reference_path


@pytest.fixture(scope="module")
def scans():
    pdd_scan = read_mcc(reference_path("beam-data", "varian-unique-6x-10x10PDD.mcc"))
    profiles = read_mcc(reference_path("beam-data", "varian-unique-6x-10x10xy.mcc"))
    return {s.kind: s for s in pdd_scan + profiles}


def test_mcc_reader_gets_the_scan_setup_and_first_reading(scans):
    # values from the file headers and first data row (varian-unique-6x-10x10PDD.mcc:
    # depth 0.00, field 911.21E-03, reference 3.3246E+00)
    p = scans["pdd"]
    assert (p.ssd_mm, p.field_mm) == (1000.0, (100.0, 100.0))
    assert len(p.positions_mm) == 85 and p.positions_mm[0] == 0.0
    assert p.values[0] == pytest.approx(0.91121 / 3.3246, rel=1e-9)
    for kind in ("inplane", "crossplane"):
        s = scans[kind]
        assert (s.ssd_mm, s.depth_mm, s.field_mm) == (900.0, 100.0, (100.0, 100.0))
        assert s.positions_mm[0] == -80.0 and s.positions_mm[-1] == 80.0


def test_csv_reader_and_bad_files(tmp_path):
    f = tmp_path / "pdd.csv"
    f.write_text("depth_mm,dose\n0,50\n15,100\n100,67\n")
    s = read_csv(f, "pdd", 1000.0, (100.0, 100.0))
    assert s.normalised()[1] == 1.0 and s.positions_mm[-1] == 100.0
    bad = tmp_path / "bad.mcc"
    bad.write_text("not a scan file\n")
    with pytest.raises(DoseError, match="no BEGIN_SCAN"):
        read_mcc(bad)
    with pytest.raises(DoseError, match="scan kind"):
        Scan("depth", 1000.0, (100, 100), np.arange(3.0), np.ones(3))


def test_default_model_loads_and_round_trips(tmp_path):
    m = BeamModel.load_default()
    assert m.provenance["fitted_to"][0]["file"].startswith("varian-unique-6x")
    path = tmp_path / "model.json"
    m.to_json(path)
    again = BeamModel.from_json(path)
    assert again.to_dict() == m.to_dict()


def test_calibration_is_one_cgy_per_mu_at_dmax():
    # definition of the model's absolute dose (DESIGN.md section 4)
    depths = np.arange(5.0, 35.0, 0.5)
    dose = water.pdd((100.0, 100.0), 1000.0, depths)
    assert dose.max() == pytest.approx(0.01, rel=0.003)


# ---------------------------------------------------------------------------- measured scans


def test_pdd_matches_the_measured_10x10_scan(scans):
    # measured: varian-unique-6x-10x10PDD.mcc (10 x 10 cm, SSD 1000 mm, microDiamond)
    meas = scans["pdd"]
    depths = meas.positions_mm
    calc = water.pdd((100.0, 100.0), 1000.0, depths)
    fine = np.arange(5.0, 35.0, 0.25)
    calc_fine = water.pdd((100.0, 100.0), 1000.0, fine)
    dmax_calc = fine[np.argmax(calc_fine)]
    dmax_meas = depths[np.argmax(meas.values)]
    assert abs(dmax_calc - dmax_meas) <= 2.0
    rel_calc = calc / calc_fine.max()
    rel_meas = meas.normalised()
    beyond = (depths >= dmax_meas) & (depths <= 250.0)
    assert np.abs(rel_calc - rel_meas)[beyond].max() <= 0.02


def _edges(x, y, level):
    """Positions where a profile (normalised to its axis value) crosses ``level`` left and right."""
    out = []
    for side in (-1, 1):
        idx = np.flatnonzero(x * side > 0)
        idx = idx if side > 0 else idx[::-1]
        k = np.flatnonzero(y[idx] < level)[0]
        a, b = idx[k - 1], idx[k]
        out.append(x[a] + (level - y[a]) * (x[b] - x[a]) / (y[b] - y[a]))
    return np.array(out)


@pytest.mark.parametrize("axis", ["crossplane", "inplane"])
def test_profiles_match_the_measured_scans(scans, axis):
    # measured: varian-unique-6x-10x10xy.mcc (10 x 10 cm, SSD 900 mm, depth 100 mm). The tank
    # was set up off the beam axis by a fraction of a mm (the 50 % points are not symmetric);
    # the measured profile is centred on its 50 % points before comparison, as in commissioning.
    meas = scans[axis].centred()
    x = meas.positions_mm
    rel_meas = meas.normalised()
    xs = np.arange(-80.0, 80.01, 0.2)
    calc = water.profile((100.0, 100.0), 900.0, 100.0, xs, axis=axis)
    rel_calc = calc / float(np.interp(0.0, xs, calc))
    width_meas = np.diff(_edges(x, rel_meas, 0.5))[0]
    width_calc = np.diff(_edges(xs, rel_calc, 0.5))[0]
    assert abs(width_calc - width_meas) <= 1.0
    pen_meas = np.abs(_edges(x, rel_meas, 0.2) - _edges(x, rel_meas, 0.8))
    pen_calc = np.abs(_edges(xs, rel_calc, 0.2) - _edges(xs, rel_calc, 0.8))
    assert np.all(np.abs(pen_calc - pen_meas) <= 1.5)
    calc_at = np.interp(x, xs, rel_calc)
    in_field = np.abs(x) <= 0.8 * width_meas / 2
    assert np.abs(calc_at - rel_meas)[in_field].max() <= 0.02
    lo20, hi20 = _edges(x, rel_meas, 0.2)
    tail = (x < lo20) | (x > hi20)
    assert np.abs(calc_at - rel_meas)[tail].max() <= 0.02


# ---------------------------------------------------------------------------- published values


def test_pdd_matches_bjr_supplement_25():
    # British Journal of Radiology Supplement 25, 6 MV, 10 x 10 cm, SSD 100 cm:
    # PDD(10 cm) = 67.5 %, PDD(20 cm) = 39.3 %. Not used in the fit.
    fine = np.arange(5.0, 35.0, 0.25)
    dmax_dose = water.pdd((100.0, 100.0), 1000.0, fine).max()
    p10, p20 = 100.0 * water.pdd((100.0, 100.0), 1000.0, [100.0, 200.0]) / dmax_dose
    assert p10 == pytest.approx(67.5, abs=1.5)
    assert p20 == pytest.approx(39.3, abs=1.5)


@pytest.mark.parametrize(
    ("side_mm", "published"),
    [
        (60.0, 0.930),
        (40.0, 0.878),
        (30.0, 0.842),
        pytest.param(
            20.0,
            0.790,
            marks=pytest.mark.xfail(
                strict=True,
                reason=(
                    "known model limit: 0.819 (+3.7 %) for 2 x 2 cm. The phantom-scatter part "
                    "matches a published kernel (by beam quality) to 0.1 % (test below); the rest "
                    "is head scatter, held at generic literature values because 10 x 10 cm scans "
                    "cannot show it. Output factors of the commissioned machine would fix it "
                    "(lattice-plan commission --output-factors); the reference data hold none"
                ),
            ),
        ),
    ],
)
def test_output_factors_match_iroc(side_mm, published):
    # IROC/RPC total scatter factors at 10 cm depth relative to 10 x 10 (Elekta 6 MV,
    # Followill/Kerns et al., tabulated in PMC5718235 Table 2). Not used in the fit.
    of = water.output_factor((side_mm, side_mm), ssd_mm=900.0, depth_mm=100.0)
    assert of == pytest.approx(published, rel=0.03)


def _tpr20_10_from_pdd(pdd_scan: Scan) -> float:
    """Beam quality TPR20,10 from a 10 x 10 cm PDD at SSD 100 cm (IAEA TRS-398, section 6.3:
    TPR20,10 = 1.2661 PDD20,10 - 0.0595)."""
    rel = pdd_scan.normalised()
    ratio = np.interp(200.0, pdd_scan.positions_mm, rel) / np.interp(
        100.0, pdd_scan.positions_mm, rel
    )
    return 1.2661 * float(ratio) - 0.0595


def _nyholm_square_field_dose(side_cm: float) -> float:
    """Central-axis dose (relative) of a square field at 10 cm depth from the pencil kernel
    p(r) = (A exp(-a r) + B exp(-b r)) / r of Nyholm, Olofsson, Ahnesjo and Karlsson,
    Radiother Oncol 78 (2006) 347, evaluated at TPR20,10 = 0.667 and z = 10 cm:
    a = 4.891 /cm, b = 0.1285 /cm, A/a = 2.597e-3, B/b = 1.084e-3 (primary, scatter).
    The square's centre dose is 8 times the integral over the triangle 0 <= theta <= pi/4 of
    sum_k (A_k / a_k) (1 - exp(-a_k L / cos theta)), L the half side."""
    from scipy import integrate

    terms = ((4.891, 2.597e-3), (0.1285, 1.084e-3))
    half = side_cm / 2.0

    def radial(theta: float) -> float:
        return sum(w * (1.0 - np.exp(-k * half / np.cos(theta))) for k, w in terms)

    return 8.0 * integrate.quad(radial, 0.0, np.pi / 4.0)[0]


def test_phantom_scatter_part_of_output_factors_matches_published_kernel(scans):
    """The model's output factors without head scatter and focal-spot blur (the phantom-scatter
    part, Sp-like) against an independent, published 6 MV pencil kernel for this beam's
    quality (Nyholm et al. 2006, see ``_nyholm_square_field_dose``), not used in the fit.

    Measured (make test, 2026-11-27): 1 x 1 -0.5 %, 2 x 2 +0.1 %, 3 x 3 +0.1 %, 4 x 4 0.0 %,
    6 x 6 -0.3 %. With this part right, what is left of the 2 x 2 cm deviation from IROC is
    head scatter (in-air output ratio), which 10 x 10 cm scans cannot determine."""
    from dataclasses import replace

    tpr = _tpr20_10_from_pdd(scans["pdd"])
    assert tpr == pytest.approx(0.667, abs=0.003)  # the quality the kernel numbers are for
    phantom_only = replace(BeamModel.load_default(), extrafocal_weight=0.0, source_sigma_mm=(0, 0))
    reference = _nyholm_square_field_dose(10.0)
    for side_mm in (10.0, 20.0, 30.0, 40.0, 60.0):
        ours = water.output_factor((side_mm, side_mm), 900.0, 100.0, model=phantom_only)
        published = _nyholm_square_field_dose(side_mm / 10.0) / reference
        assert ours == pytest.approx(published, rel=0.01), side_mm


def test_one_cm_field_for_lattice_vertices():
    # Issue 3's acceptance band (a project requirement, not a measurement): a 1 x 1 cm field
    # has an output factor between 0.55 and 0.75 and an 80-20 % penumbra (relative to its own
    # axis dose) under 5 mm at 10 cm depth. The measured-data checks of small fields are
    # test_output_factors_match_iroc (IROC, 2 x 2 to 6 x 6 cm) and the phantom-scatter part at
    # 1 x 1 cm against Nyholm et al.'s published kernel (above); the 5 mm lies below the
    # 3.5-6 mm typical of larger 6 MV MLC fields (reference README), as a 1 cm field's penumbra
    # is narrowed by its missing lateral scatter.
    of = water.output_factor((10.0, 10.0), ssd_mm=900.0, depth_mm=100.0)
    assert 0.55 <= of <= 0.75
    xs = np.arange(-15.0, 15.01, 0.1)
    for axis in ("crossplane", "inplane"):
        prof = water.profile((10.0, 10.0), 900.0, 100.0, xs, axis=axis)
        rel = prof / float(np.interp(0.0, xs, prof))
        pen = np.abs(_edges(xs, rel, 0.2) - _edges(xs, rel, 0.8))
        assert np.all(pen < 5.0)
        assert np.all(pen > 1.0)  # a real penumbra, not a step


@pytest.mark.parametrize("side_mm", [20.0, 10.0])
def test_small_field_output_factor_is_converged_in_map_pitch(side_mm):
    """The output factor on the default fluence maps (1 mm fine, 2.5 mm coarse) is within 1 % of
    the one on 0.25/0.5 mm maps (numerical convergence: same model, finer discretisation). The
    short-range kernel (2.7 mm) must sit on the fine map for this: on the 2.5 mm coarse map the
    1 x 1 cm value was 3.4 % low."""
    from dataclasses import replace

    model = BeamModel.load_default()
    fine = replace(model, fine_mm=0.25, coarse_mm=0.5)
    default = water.output_factor((side_mm, side_mm), 900.0, 100.0, model=model)
    converged = water.output_factor((side_mm, side_mm), 900.0, 100.0, model=fine)
    assert default == pytest.approx(converged, rel=0.01)


def test_off_axis_field_centre_shifts_the_profile():
    # center_mm places the field off axis (asymmetric jaws): the 50 % points move with it,
    # magnified to the scan depth (SSD 900 + 100 mm = the isocentre plane, magnification 1)
    xs = np.arange(-60.0, 60.01, 0.2)
    prof = water.profile((40.0, 40.0), 900.0, 100.0, xs, center_mm=(20.0, 0.0))
    rel = prof / prof.max()
    left = xs[np.flatnonzero(rel >= 0.5)[0]]
    right = xs[np.flatnonzero(rel >= 0.5)[-1]]
    assert 0.5 * (left + right) == pytest.approx(20.0, abs=0.3)
