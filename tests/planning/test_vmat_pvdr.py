"""Issue 17's headline number at the default settings: on the demo phantom at 2.5 mm, the
deliverable two-arc SFRT VMAT plan reaches at least the peak-to-valley dose ratio (mean vertex /
mean valley) of the 9-beam ideal-fluence plan of the same arm, with the vertex mean dose at the
prescription. Measured by benchmarks/bench_vmat.py: 4.20 against 4.10 (102.4 %); the test
allows no loss, as the issue asks, so a change that costs the arcs their margin fails here."""

from __future__ import annotations

import pytest

from lattice_plan.analysis.delivery import delivery_metrics
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.phantoms import build_phantom
from lattice_plan.planning.deliverable import DeliverySpec
from lattice_plan.planning.sfrt import build_sfrt_plan
from lattice_plan.planning.vmat import build_vmat_plan


@pytest.mark.slow
def test_sfrt_vmat_keeps_the_nine_beam_ideal_pvdr_at_the_default_settings():
    patient = build_phantom()
    engine = DoseEngine(patient.ct, patient.structures.external(), dose_spacing_mm=2.5)
    nine = build_sfrt_plan(
        patient,
        engine=engine,
        dose_spacing_mm=2.5,
        max_iterations=100,
        delivery=DeliverySpec("ideal"),
    )
    arcs = build_vmat_plan(patient, nine, engine=engine)
    m_nine = delivery_metrics(nine.dose, nine.structures)
    m_arcs = delivery_metrics(arcs.dose, arcs.structures)
    assert m_arcs["pvdr_mean"] >= m_nine["pvdr_mean"]
    # Both plans are normalised to the vertex mean dose (15 Gy x 1, the demo's prescription).
    rx_gy = nine.prescription.dose_per_fraction_gy
    assert m_arcs["vertex_dmean_gy"] == pytest.approx(rx_gy, rel=0.01)
    assert m_nine["vertex_dmean_gy"] == pytest.approx(rx_gy, rel=0.01)
