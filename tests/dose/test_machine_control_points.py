"""Machine files and control-point beams: shipped values, validation and error messages."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from lattice_plan.dose.beam import Jaws
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.dose.machine import (
    default_machine,
    machine_from_mapping,
    read_machine,
    shipped_machines,
)
from lattice_plan.errors import DoseError, InputFileError, SpecError
from tests.conftest import reference_path


def test_varian_120_boundaries_match_a_real_varian_rtplan():
    # LeafPositionBoundaries of the MLCX device in the shared Varian plan (dicompyler-core)
    ds = pydicom.dcmread(reference_path("dicom", "breast-boost-plan", "rtplan.dcm"))
    dev = next(
        d
        for d in ds.BeamSequence[0].BeamLimitingDeviceSequence
        if d.RTBeamLimitingDeviceType == "MLCX"
    )
    m = default_machine("varian-120")
    np.testing.assert_allclose(m.mlc.leaf_edges_mm, [float(v) for v in dev.LeafPositionBoundaries])
    assert m.mlc.n_pairs == 60
    assert np.sum(m.mlc.leaf_widths_mm == 10.0) == 20 and np.sum(m.mlc.leaf_widths_mm == 5.0) == 40


def test_shipped_machines_and_values():
    assert shipped_machines() == ["mlc-80", "varian-120"]
    m80 = default_machine("mlc-80")
    assert m80.mlc.n_pairs == 80 and np.allclose(m80.mlc.leaf_widths_mm, 5.0)
    m = default_machine()
    assert m.name == "varian-120"
    assert m.leaf_transmission == pytest.approx(0.015)  # LoSasso et al. 1998
    assert m.max_leaf_speed_mm_s == pytest.approx(25.0)
    assert m.max_mu_per_s == pytest.approx(10.0)  # 600 MU/min


def test_unknown_machine_is_refused():
    with pytest.raises(DoseError, match=r"unknown machine 'elekta'.*varian-120"):
        default_machine("elekta")


def _table():
    return {
        "name": "m",
        "mlc": {"leaf_edges_mm": [-10.0, -5.0, 0.0, 5.0, 10.0]},
        "delivery": {
            "leaf_transmission": 0.015,
            "jaw_transmission": 0.001,
            "dosimetric_leaf_gap_mm": 1.6,
            "tongue_groove_mm": 1.0,
            "min_leaf_gap_mm": 0.5,
            "max_leaf_speed_mm_s": 25.0,
            "max_gantry_speed_deg_s": 6.0,
            "max_dose_rate_mu_min": 600.0,
        },
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t["delivery"].pop("max_leaf_speed_mm_s"),
            "missing key 'delivery.max_leaf_speed_mm_s'",
        ),
        (
            lambda t: t["delivery"].update(leaf_transmission="x"),
            "'delivery.leaf_transmission' must be a finite",
        ),
        (lambda t: t["delivery"].update(leaf_transmission=0.5), r"within \[0.0, 0.2\]"),
        (lambda t: t["delivery"].update(speed=1.0), r"unknown key\(s\) \['speed'\]"),
        (lambda t: t["mlc"].update(leaf_edges_mm=[0.0, -5.0]), "strictly ascending"),
        (lambda t: t.update(mlc_device="MLCY"), "MLCY is not supported"),
        (
            lambda t: t.update(mlc={"bands": [{"from_mm": 0.0, "to_mm": 7.0, "width_mm": 5.0}]}),
            "whole number",
        ),
    ],
)
def test_machine_file_errors_name_the_key(edit, message):
    t = _table()
    edit(t)
    with pytest.raises(SpecError, match=message):
        machine_from_mapping(t, "my.toml")


def test_read_machine_file(tmp_path):
    with pytest.raises(InputFileError):
        read_machine(tmp_path / "absent.toml")
    p = tmp_path / "m.toml"
    p.write_text(
        'name = "m"\n[mlc]\nbands = [{from_mm = -20.0, to_mm = 20.0, width_mm = 10.0}]\n'
        "[delivery]\nleaf_transmission = 0.01\njaw_transmission = 0.0\n"
        "dosimetric_leaf_gap_mm = 1.0\ntongue_groove_mm = 0.5\nmin_leaf_gap_mm = 0.5\n"
        "max_leaf_speed_mm_s = 20.0\nmax_gantry_speed_deg_s = 4.8\nmax_dose_rate_mu_min = 400.0\n"
    )
    m = read_machine(p)
    np.testing.assert_allclose(m.mlc.leaf_edges_mm, [-20, -10, 0, 10, 20])
    m2 = m.with_leaf_edges([-10.0, 0.0, 10.0])
    assert m2.mlc.n_pairs == 2 and m.mlc.n_pairs == 4


def _cp(w, x1, x2, gantry=0.0, direction="NONE"):
    return ControlPoint(
        w, gantry, 0.0, 0.0, Jaws.symmetric(40, 20), np.array(x1), np.array(x2), direction
    )


EDGES = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])


def test_control_point_beam_techniques():
    a = [-5.0] * 4
    b = [5.0] * 4
    static = ControlPointBeam("S", (0, 0, 0), 100.0, (_cp(0, a, b), _cp(1, a, b)), EDGES, "STATIC")
    assert static.technique == "static"
    sw = ControlPointBeam("D", (0, 0, 0), 100.0, (_cp(0, a, a), _cp(1, b, b)), EDGES, "DYNAMIC")
    assert sw.technique == "sliding_window"
    sas = ControlPointBeam(
        "SS",
        (0, 0, 0),
        100.0,
        (_cp(0, a, b), _cp(0.5, a, b), _cp(0.5, a, [0.0] * 4), _cp(1, a, [0.0] * 4)),
        EDGES,
        "STATIC",
    )
    assert sas.technique == "step_and_shoot"
    arc = ControlPointBeam(
        "A", (0, 0, 0), 100.0, (_cp(0, a, b, 350.0, "CW"), _cp(1, a, b, 10.0)), EDGES, "DYNAMIC"
    )
    assert arc.technique == "arc"
    np.testing.assert_allclose(arc.gantry_path_deg(), [350.0, 370.0])
    cc = ControlPointBeam(
        "C", (0, 0, 0), 100.0, (_cp(0, a, b, 10.0, "CC"), _cp(1, a, b, 350.0)), EDGES, "DYNAMIC"
    )
    np.testing.assert_allclose(cc.gantry_path_deg(), [10.0, -10.0])


@pytest.mark.parametrize(
    ("cps", "beam_type", "message"),
    [
        (
            [(0, -5, 5), (0.6, -5, 5), (0.4, -5, 5), (1, -5, 5)],
            "DYNAMIC",
            "control point 2: cumulative meterset weight 0.4",
        ),
        ([(0, -5, 5), (1, 5, -5)], "DYNAMIC", "control point 1, leaf pair 1: leaves cross"),
        ([(0.1, -5, 5), (1, -5, 5)], "DYNAMIC", "from 0"),
        ([(0, -5, 5), (1, -5, 0)], "STATIC", "control points 0->1: a STATIC beam"),
    ],
)
def test_control_point_beam_errors(cps, beam_type, message):
    points = tuple(_cp(w, [x1] * 4, [x2] * 4) for w, x1, x2 in cps)
    with pytest.raises(DoseError, match=f"beam 'B'.*{message}"):
        ControlPointBeam("B", (0, 0, 0), 100.0, points, EDGES, beam_type)


def test_missing_mlc_and_wrong_pair_count():
    a = [-5.0] * 4
    ok = _cp(0, a, a)
    nomlc = ControlPoint(1.0, 0, 0, 0, Jaws.symmetric(40, 20), None, None)
    with pytest.raises(DoseError, match="beam 'B', control point 1: MLC positions are missing"):
        ControlPointBeam("B", (0, 0, 0), 1.0, (ok, nomlc), EDGES, "DYNAMIC")
    with pytest.raises(DoseError, match="control point 0: 4 leaf pairs but the MLC has 2"):
        ControlPointBeam("B", (0, 0, 0), 1.0, (ok, _cp(1, a, a)), EDGES[:3], "DYNAMIC")
