"""A sequenced plan's outputs: the RTPLAN holds its control points, and recomputed from the
files alone (RTPLAN + CT + the RTSTRUCT's body) it reproduces the RTDOSE written beside it.

Issue 16 acceptance numbers: gamma 2 %/2 mm >= 99 % (10 % threshold) and median dose ratio
within 0.5 % where the dose is >= 50 % of its maximum. Coarse phantom (5 mm) for speed.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from lattice_plan.analysis.dose_agreement import dose_agreement
from lattice_plan.dose.beam import Beam, FluenceMap, Jaws
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.io.ct import read_ct
from lattice_plan.io.rtdose import load_rtdose
from lattice_plan.io.rtstruct import read_rtstruct
from lattice_plan.phantoms import build_phantom
from lattice_plan.planning.deliverable import DeliverySpec, make_deliverable
from lattice_plan.planning.plan import Plan
from lattice_plan.planning.prescription import prescription_from
from lattice_plan.workflow.recalc import recalculate


@pytest.fixture(scope="module")
def written_case(tmp_path_factory):
    from lattice_plan import workflow

    patient = build_phantom(spacing_mm=(5.0, 5.0, 5.0), length_mm=100.0)
    iso = tuple(patient.structures.get("GTV").centroid_lps_mm())
    engine = DoseEngine(patient.ct, patient.structures.external(), dose_spacing_mm=5.0)
    jaws = Jaws(-40.0, 40.0, -30.0, 30.0)
    y, x = np.mgrid[-30:30:5.0, -40:40:5.0] + 2.5
    beams = []
    for k, gantry in enumerate((0.0, 120.0, 240.0)):
        values = 0.3 + np.exp(-((x - 10 * np.sin(k)) ** 2 + y**2) / 600.0)
        fmap = FluenceMap.covering(jaws, 5.0, values)
        beams.append(Beam(f"B{gantry:g}", gantry, iso, jaws, mu=100.0, fluence=fmap))
    plan = Plan(
        "IMRT",
        "SFRT",
        prescription_from(8.0, 2, "GTV", "D95%"),
        tuple(beams),
        patient.structures,
        dose=engine.compute(beams),
    ).normalised()
    plans = [
        make_deliverable(plan, engine, DeliverySpec("sliding_window")),
        make_deliverable(
            Plan("SNS", "SFRT", plan.prescription, plan.beams, plan.structures, dose=plan.dose),
            engine,
            DeliverySpec("step_and_shoot", levels=5),
        ),
    ]
    out = tmp_path_factory.mktemp("case") / "out"
    metrics = workflow.evaluate_plans(patient, plans, protocol=None)
    paths = workflow.write_case_outputs(
        patient,
        plans,
        out,
        metrics=metrics,
        write_ct=True,
        figures=False,
        scene=False,
        report=False,
    )
    return paths, plans


@pytest.mark.slow
@pytest.mark.parametrize("name", ["IMRT", "SNS"])
def test_sequenced_plan_rtplan_recomputes_its_rtdose(written_case, name):
    paths, plans = written_case
    plan = next(p for p in plans if p.name == name)
    rp = paths[f"RTPLAN {name}"]
    ds = pydicom.dcmread(rp)
    want = "DYNAMIC" if name == "IMRT" else "STATIC"
    assert [b.BeamType for b in ds.BeamSequence] == [want] * 3
    assert [len(b.ControlPointSequence) for b in ds.BeamSequence] == [
        b.n_control_points for b in plan.delivery_beams
    ]
    assert {b.TreatmentMachineName for b in ds.BeamSequence} == {"varian-120"}
    # the optimised fluence maps still travel beside the plan
    assert sum(1 for k in paths if k.startswith(f"fluence {name} ")) == 3
    ct = read_ct(paths["CT"])
    body = read_rtstruct(paths["RTSTRUCT"], ct).external()
    reference = load_rtdose(paths[f"RTDOSE {name}"])
    result = recalculate(rp, ct, grid=reference.grid, body=body)
    a = dose_agreement(reference.volume, result.dose, dose_percent=2.0, dta_mm=2.0)
    assert a.gamma_global_pass_percent >= 99.0
    assert a.median_ratio_high_dose == pytest.approx(1.0, abs=0.005)
