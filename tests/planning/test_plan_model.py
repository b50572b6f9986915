"""Prescription and Plan: normalisation, scaling, per-fraction dose, bad input."""

import numpy as np
import pytest
from scipy.optimize import brentq

from lattice_plan.analysis.dvh import DVH
from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.errors import PlanningError
from lattice_plan.geometry import Grid, Structure, StructureKind, StructureSet, Volume
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.prescription import Prescription, prescription_from


@pytest.fixture
def setup():
    g = Grid.from_extent((-20, -20, -20), (20, 20, 20), 2.0)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    target = Structure("PTV", (x**2 + y**2 + z**2) <= 15**2, g, StructureKind.PTV)
    ss = StructureSet.from_structures([target])
    # Dose rising linearly along x from 10 to 50 Gy: percentiles over the target are analytic.
    dose = Volume(30.0 + x, g, "Gy")
    beam = Beam("AP", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(100, 100), mu=200.0)
    return ss, dose, beam


def test_normalisation_hits_the_prescription(setup):
    ss, dose, beam = setup
    rx = prescription_from(30.0, 10, "PTV", "D95%")
    assert rx.dose_per_fraction_gy == pytest.approx(3.0)
    plan = Plan("CRT", "crt", rx, (beam,), ss, dose)
    before = plan.achieved_prescription_gy()
    # Analytic: dose 30 + x (Gy, x in mm) over a ball of radius 15 mm; D95% is the dose at
    # the plane x = t that cuts off 5 % of the ball: cap volume h^2 (3R - h) / (4 R^3) = 0.05.
    R = 15.0
    t = brentq(lambda t: (t + R) ** 2 * (3 * R - (t + R)) / (4 * R**3) - 0.05, -R, R)
    assert before == pytest.approx(30.0 + t, abs=0.3)  # 2 mm voxels: about a tenth of a voxel
    # The plan is normalised on the analysis module's own sampling: the DVH agrees exactly.
    assert before == pytest.approx(DVH.from_dose(dose, ss["PTV"]).metric("D95%"), abs=0.02)
    norm = plan.normalised()
    assert norm.achieved_prescription_gy() == pytest.approx(30.0, rel=1e-12)
    assert norm.beams[0].mu == pytest.approx(200.0 * 30.0 / before)
    assert norm.info["normalisation_factor"] == pytest.approx(30.0 / before)
    assert norm.dose_per_fraction().array.max() == pytest.approx(norm.dose.array.max() / 10)
    assert plan.arm is Arm.CRT


def test_mean_and_point_prescriptions(setup):
    ss, dose, beam = setup
    mean_plan = Plan("m", Arm.SFRT, Prescription(15.0, 1, "PTV", "Dmean"), (beam,), ss, dose)
    assert mean_plan.achieved_prescription_gy() == pytest.approx(30.0, abs=0.05)  # symmetric target
    point_plan = Plan(
        "p", Arm.CRT, Prescription(8.0, 1, "PTV", "point", (5.0, 0.0, 0.0)), (beam,), ss, dose
    )
    assert point_plan.achieved_prescription_gy() == pytest.approx(35.0)  # linear dose: exact


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 1, "PTV"), "positive"),
        ((3.0, 0, "PTV"), "positive integer"),
        ((3.0, 10, "PTV", "D105%"), "not understood"),
        ((3.0, 10, "PTV", "point"), "reference_point"),
    ],
)
def test_bad_prescriptions(args, match):
    with pytest.raises(PlanningError, match=match):
        Prescription(*args)


def test_bad_plans(setup):
    ss, _, beam = setup
    rx = Prescription(3.0, 10, "PTV")
    with pytest.raises(PlanningError, match="no beams"):
        Plan("x", "CRT", rx, (), ss)
    with pytest.raises(PlanningError, match="not among the structures"):
        Plan("x", "CRT", Prescription(3.0, 10, "GTV"), (beam,), ss)
    with pytest.raises(PlanningError, match="unknown arm"):
        Plan("x", "IMRT", rx, (beam,), ss)
    with pytest.raises(PlanningError, match="no dose"):
        Plan("x", "CRT", rx, (beam,), ss).normalised()


def test_partly_filled_slices_weigh_their_filled_part_in_normalisation():
    """A target whose first slice is half filled (a contour end cap): the prescription metric
    weighs that slice's samples by half, as its DVH does. Dose 10 + z (Gy, z in mm) on 1 mm
    slices; the target fills slices z = 1..5 mm of a 10 x 10 box, the first on [1, 1.5] mm
    only, so it spans z = 1..5.5 mm: analytic mean 10 + 3.25 Gy, D90% (coldest 10 % of
    4.5 mm) 10 + 1.45 Gy."""
    g = Grid((7, 10, 10), (1.0, 1.0, 1.0))
    mask = np.zeros(g.shape, bool)
    mask[1:6] = True
    span = np.tile([-0.5, 0.5], (7, 1))
    span[1] = (0.0, 0.5)
    target = Structure("PTV", mask, g, StructureKind.PTV, slice_span=span)
    ss = StructureSet.from_structures([target])
    z, _, _ = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    dose = Volume(10.0 + z, g, "Gy")
    beam = Beam("AP", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(100, 100), mu=100.0)
    mean_rx = Prescription(12.0, 1, "PTV", "Dmean")
    assert Plan("m", Arm.SFRT, mean_rx, (beam,), ss, dose).achieved_prescription_gy() == (
        pytest.approx(13.25, abs=1e-9)
    )
    assert DVH.from_dose(dose, target).mean_gy == pytest.approx(13.25, abs=1e-9)
    d90_rx = Prescription(12.0, 1, "PTV", "D90%")
    d90 = Plan("d", Arm.CRT, d90_rx, (beam,), ss, dose).achieved_prescription_gy()
    assert d90 == pytest.approx(11.45, abs=0.02)  # 64 sample levels per 0.5 mm slice


def test_weighted_percentile_equals_repeated_samples():
    """Prescription.achieved_gy with per-sample volumes equals the same samples repeated in
    proportion to their volumes (definition of a volume-weighted empirical CDF)."""
    rx = Prescription(10.0, 1, "PTV", "D95%")
    rng = np.random.default_rng(3)
    dose = rng.uniform(5, 15, 200)
    reps = rng.integers(1, 4, 200)
    weighted = rx.achieved_gy(target_dose_gy=dose, target_weight_cc=reps * 0.01)
    assert weighted == rx.achieved_gy(target_dose_gy=np.repeat(dose, reps))
