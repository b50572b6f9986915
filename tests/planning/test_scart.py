"""The SCART builder on the built-in phantom.

Metrics with plain NumPy on the CT voxels of each structure (see test_sfrt.py
for the sampling and the TG-101 limits). The GTV edge is the outer 5 mm shell
of the GTV, drawn here independently: GTV voxels within 5 mm of a voxel
outside it (Euclidean distance transform on the CT spacing).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.prescription import prescription_from
from lattice_plan.planning.scart import ScartParameters, build_scart_plan
from tests.planning.conftest import check_tg101, ct_voxel_doses

RX_GY = 15.0
ITERATIONS = 40


@pytest.fixture(scope="module")
def scart(phantom):
    engine = DoseEngine(phantom.ct, phantom.structures.external(), dose_spacing_mm=2.5)
    calls = []
    plan = build_scart_plan(
        phantom,
        engine=engine,
        max_iterations=ITERATIONS,
        progress=lambda it, f: calls.append((it, f)),
    )
    return plan, calls


@pytest.mark.slow
def test_scart_plan_meets_its_goals(scart, phantom):
    plan, calls = scart
    assert plan.arm.value == "SCART"
    assert plan.prescription.target == "STV" and plan.prescription.method == "D95%"
    stv = ct_voxel_doses(plan, "STV")
    # D95: 95 % of the STV receives at least it; the builder normalised on the dose grid,
    # so allow 2 % for the CT-voxel resampling of a ~1 cc core.
    assert np.percentile(stv, 5.0) >= RX_GY * 0.98
    gtv = phantom.structures["GTV"]
    depth = ndimage.distance_transform_edt(gtv.mask, sampling=gtv.grid.spacing_mm)
    edge = gtv.with_mask(gtv.mask & (depth <= 5.0), "Edge5mm")
    dose = plan.dose
    ijk = dose.grid.continuous_ijk(edge.points_lps_mm())
    edge_dose = ndimage.map_coordinates(dose.array, ijk[:, ::-1].T, order=1, mode="nearest")
    # The built-in protocol's SCART arm keeps the GTV edge low: GTV D98% <= 5 Gy (a template
    # choice, one third of the 15 Gy core). The mean over the 5 mm edge shell sits above its
    # near-minimum, so the bound here is 35 % (5.25 Gy): a project bound, not a published value.
    assert edge_dose.mean() <= 0.35 * RX_GY
    check_tg101(plan, phantom.grid.voxel_volume_cc)
    history = [f for _, f in calls]
    assert all(b <= a for a, b in itertools.pairwise(history))
    info = plan.info
    assert info["modulation"] == pytest.approx(plan.total_mu / info["open_field_total_mu"])
    assert info["modulation"] > 1.0
    assert info["stv_method"] == "dose_ratio"
    # Dose-ratio STV: the GTV scaled by 3/15 per axis, analytically 0.2^3 = 0.8 % of its volume.
    # Bounds: half that (the analytic value cannot shrink on a grid) to 3.75 x (a ~1 cc core
    # drawn in 2.5 mm voxels gains up to a voxel layer on each side; a label of our own).
    assert 0.004 < info["stv_volume_cc"] / info["gtv_volume_cc"] < 0.03


def test_scart_bad_inputs(phantom):
    with pytest.raises(PlanningError, match="unknown SCART method"):
        ScartParameters(method="shrink")
    with pytest.raises(PlanningError, match="needs margin_mm"):
        build_scart_plan(phantom, core=ScartParameters(method="contract"))
    with pytest.raises(PlanningError, match="n_beams"):
        build_scart_plan(phantom, n_beams=0)
    with pytest.raises(PlanningError, match="arc"):
        build_scart_plan(phantom, n_beams=1, arc_deg=120.0)


def test_scart_core_follows_the_prescription(phantom):
    # With 24 Gy x 1 the dose-ratio core is the GTV scaled by 3/24: smaller than for 15 Gy.
    gtv = phantom.structures["GTV"]
    small = ScartParameters().core(gtv, prescription_from(24.0, 1, "STV"))
    default = ScartParameters().core(gtv, prescription_from(15.0, 1, "STV"))
    assert small.volume_cc < default.volume_cc
    contracted = ScartParameters(method="contract", margin_mm=15.0).core(
        gtv, prescription_from(15.0, 1, "STV")
    )
    assert contracted.volume_cc > default.volume_cc


@pytest.mark.slow
def test_point_prescription_normalises_to_the_point(phantom):
    # 8 Gy x 1 at the GTV centroid (coarse grid, few iterations: this checks the plumbing).
    point = phantom.structures["GTV"].centroid_lps_mm()
    rx = prescription_from(8.0, 1, "GTV", "point", point)
    plan = build_scart_plan(phantom, prescription=rx, dose_spacing_mm=5.0, max_iterations=3)
    ijk = plan.dose.grid.continuous_ijk(point)
    at_point = ndimage.map_coordinates(plan.dose.array, ijk[::-1].reshape(3, 1), order=1)[0]
    assert at_point == pytest.approx(8.0, rel=1e-6)
    assert plan.info["open_field_total_mu"] > 0 and np.isfinite(plan.info["modulation"])
