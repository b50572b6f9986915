"""MLC leaf transmission of fluence-map beams delivered by a sliding window.

Model (lattice_plan.dose.fluence.delivered_map): a map row swept by one leaf
pair with beam-on time S_row (the sum of the row's rising steps from zero) is
delivered as v (1 - T) + T S_row, T = model.mlc_transmission.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lattice_plan.dose.beam import Beam, FluenceMap, Jaws
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.fluence import delivered_map, row_beam_on_time
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DoseError
from tests.dose.conftest import water_cube

BEAMLET_MM = 20.0
JAWS = Jaws.symmetric(3 * BEAMLET_MM, BEAMLET_MM)


def test_row_beam_on_time_sums_the_rising_steps():
    # Hand-computed: 0.5, 1, 0.2, 0.8 rises 0.5 + 0.5 + 0.6 = 1.6; 1, 0, 1 rises 2; zeros 0.
    v = np.array([[0.5, 1.0, 0.2, 0.8], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(row_beam_on_time(v), [1.6, 2.0, 0.0], rtol=1e-12)
    with pytest.raises(DoseError, match="2D"):
        row_beam_on_time(np.ones(3))


def test_delivered_map_adds_transmission_of_the_rest_of_the_row():
    t = 0.015
    fmap = FluenceMap(np.array([[1.0, 0.0, 1.0], [0.25, 1.0, 1.0]]), 5.0, (0.0, 0.0))
    got = delivered_map(fmap, t)
    # Closed beamlet: T S_row = 0.015 * 2; open ones: v + T (S_row - v) (S = 2 and 1).
    np.testing.assert_allclose(got[0], [1.0 + t, 2 * t, 1.0 + t], rtol=1e-12)
    np.testing.assert_allclose(got[1], [0.25 + 0.75 * t, 1.0, 1.0], rtol=1e-12)
    # An open row (one rise from 0 to 1) is delivered unchanged, and T = 0 is the map itself.
    open_map = FluenceMap(np.ones((2, 3)), 5.0, (0.0, 0.0))
    np.testing.assert_allclose(delivered_map(open_map, t), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(delivered_map(fmap, 0.0), fmap.values)


@pytest.fixture(scope="module")
def engines():
    """Engines with the shipped model and with its leaf transmission set to zero, on a water cube."""
    ct, body = water_cube(70.0, 2.5)
    model = BeamModel.load_default()
    no_leaf = replace(model, mlc_transmission=0.0)
    return DoseEngine(ct, body, model=model), DoseEngine(ct, body, model=no_leaf)


def _beam(values, mu=100.0):
    fmap = FluenceMap.covering(JAWS, BEAMLET_MM, np.asarray(values, dtype=float))
    return Beam("b", 0.0, (0.0, 0.0, 0.0), JAWS, mu=mu, fluence=fmap)


def test_closed_beamlet_gets_transmission_of_the_row_beam_on_time(engines):
    engine, no_leaf = engines
    t = engine.model.mlc_transmission
    assert t == pytest.approx(0.015)  # the shipped model (LoSasso et al. 1998)
    gap = _beam([[1.0, 0.0, 1.0]])  # S_row = 2
    with_t = engine.compute([gap]).array
    without = no_leaf.compute([gap]).array
    open_dose = no_leaf.compute([_beam([[1.0, 1.0, 1.0]])]).array
    # The engine is linear in the delivered map v (1 - T) + T S_row, on the same map grids
    # for the three maps (same extent), so this holds at every voxel to rounding (1e-9).
    np.testing.assert_allclose(
        with_t, (1 - t) * without + t * 2.0 * open_dose, rtol=0, atol=1e-9 * open_dose.max()
    )
    # At depth under the closed beamlet's centre (the isocentre, 70 mm deep), the dose the
    # leaves let through is T S_row = 0.03 of the open dose there (same 1e-9 rounding).
    iso = np.array([[0.0, 0.0, 0.0]])
    d_t = float(engine.point_dose([gap], iso)[0])
    d_0 = float(no_leaf.point_dose([gap], iso)[0])
    d_open = float(no_leaf.point_dose([_beam([[1.0, 1.0, 1.0]])], iso)[0])
    assert (d_t - (1 - t) * d_0) / d_open == pytest.approx(t * 2.0, rel=1e-9)
    # A valley: without transmission the 20 mm gap's centre gets only the penumbra and scatter
    # of the open beamlets (0.027 of the open dose with this model). The leaves add
    # T (S_row d_open - d_0), at least half of T S_row d_open as d_0 < d_open: about doubled.
    assert 0.0 < d_0 < 0.1 * d_open
    assert d_t - d_0 > 0.5 * t * 2.0 * d_open


def test_open_map_dose_does_not_change(engines):
    engine, no_leaf = engines
    # An open map rises once from 0 to 1 per row: the sliding window never covers it.
    open_beam = _beam([[1.0, 1.0, 1.0]])
    ref = no_leaf.compute([open_beam]).array
    np.testing.assert_allclose(
        engine.compute([open_beam]).array, ref, rtol=0, atol=1e-12 * ref.max()
    )
