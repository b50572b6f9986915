"""The shipped beam model is what commissioning on the reference scans gives; commissioning
with measured output factors matches them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lattice_plan.cli import main
from lattice_plan.dose import water
from lattice_plan.dose.commission import (
    PARAMETER_NAMES,
    OutputFactor,
    commission,
    read_mcc,
    read_output_factors,
)
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DoseError
from tests.conftest import reference_path


@pytest.mark.slow
def test_shipped_model_is_a_converged_fit_of_the_reference_scans():
    shipped = BeamModel.load_default()
    fit = shipped.provenance["fit"]
    start = [fit["parameters"][name] for name in PARAMETER_NAMES]
    scans = read_mcc(reference_path("beam-data", "varian-unique-6x-10x10PDD.mcc")) + read_mcc(
        reference_path("beam-data", "varian-unique-6x-10x10xy.mcc")
    )
    model, report = commission(scans, initial=start, max_nfev=2)
    # restarting the fit from the shipped parameters does not improve it: it had converged,
    # and the same data give the same residual and calibration
    assert report["rms_residual"] == pytest.approx(fit["rms_residual"], rel=1e-3)
    assert report["rms_residual"] < 0.01  # the fit reproduces the scans to 1 % RMS
    assert model.gy_per_mu == pytest.approx(shipped.gy_per_mu, rel=1e-3)
    got = np.array([report["parameters"][n] for n in PARAMETER_NAMES])
    np.testing.assert_allclose(got, start, rtol=0.02, atol=1e-6)


def test_commission_command_refuses_a_non_mcc_file(tmp_path, capsys):
    scan = tmp_path / "pdd.csv"
    scan.write_text("0,1\n1,2\n")
    code = main(["commission", str(scan), "--out", str(tmp_path / "m.json")])
    assert code == 2
    assert ".mcc" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_output_factor_csv_reader(tmp_path):
    f = tmp_path / "of.csv"
    f.write_text("side_mm,output_factor\n20,0.80\n100,1.000\n40,0.88\n")
    factors = read_output_factors(f, ssd_mm=1000.0, depth_mm=50.0)
    # the 10 x 10 cm reference row is checked and dropped: it carries no information
    assert [(of.field_mm, of.value) for of in factors] == [
        ((20.0, 20.0), 0.80),
        ((40.0, 40.0), 0.88),
    ]
    assert {(of.ssd_mm, of.depth_mm) for of in factors} == {(1000.0, 50.0)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("20,0.80\n100,0.95\n", "normalise the output factors to 10 x 10 cm"),
        ("20,79.0\n", "not in cGy/MU"),
        ("2,0.5\n", "5-400 mm"),
        ("20,0.8\n30,abc\n", "line 2"),
        ("100,1.0\n", "only the 10 x 10 cm reference"),
        ("20,0.80\n20,0.81\n", "twice"),
    ],
)
def test_bad_output_factor_files_are_refused(tmp_path, text, message):
    f = tmp_path / "of.csv"
    f.write_text(text)
    with pytest.raises(DoseError, match=message):
        read_output_factors(f)


def test_commission_command_names_a_bad_output_factor_file(tmp_path, capsys):
    bad = tmp_path / "of.csv"
    bad.write_text("20,0.8\n100,0.9\n")
    scans = [reference_path("beam-data", n) for n in ("varian-unique-6x-10x10PDD.mcc",)]
    out = tmp_path / "m.json"
    code = main(["commission", *map(str, scans), "--output-factors", str(bad), "--out", str(out)])
    assert code == 2
    assert "10 x 10 cm" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def reference_scans():
    return read_mcc(reference_path("beam-data", "varian-unique-6x-10x10PDD.mcc")) + read_mcc(
        reference_path("beam-data", "varian-unique-6x-10x10xy.mcc")
    )


@pytest.fixture(scope="module")
def shipped_start():
    fit = BeamModel.load_default().provenance["fit"]
    return [fit["parameters"][name] for name in PARAMETER_NAMES]


def _machine_output_factors() -> list[OutputFactor]:
    """Output factors of a machine with more head scatter than the shipped model's literature
    values (11 % extra-focal fluence, 15 mm wide, vs 8 % and 35 mm): its 2 x 2 cm output
    factor is 3 % lower."""
    machine = replace(BeamModel.load_default(), extrafocal_weight=0.11, extrafocal_sigma_mm=15.0)
    return [
        OutputFactor((s, s), water.output_factor((s, s), 900.0, 100.0, model=machine))
        for s in (20.0, 30.0, 40.0, 60.0)
    ]


def _relative_errors(model: BeamModel, factors: list[OutputFactor]) -> np.ndarray:
    return np.array(
        [
            water.output_factor(of.field_mm, 900.0, 100.0, model=model) / of.value - 1
            for of in factors
        ]
    )


@pytest.mark.slow
def test_fit_with_output_factors_recovers_the_head_scatter(reference_scans, shipped_start):
    factors = _machine_output_factors()
    before = _relative_errors(BeamModel.load_default(), factors)
    assert np.abs(before).max() > 0.025  # the literature head scatter misses this machine
    model, report = commission(
        reference_scans, initial=shipped_start, output_factors=factors, max_nfev=10
    )
    # stage 1 is the scan-only fit: the kernels are the scans' (as checked against Nyholm et
    # al. for the shipped model), not bent to the output factors
    _, scan_only = commission(reference_scans, initial=shipped_start, max_nfev=10)
    for name in PARAMETER_NAMES:
        assert report["parameters"][name] == pytest.approx(scan_only["parameters"][name], rel=1e-9)
    # stage 2 converges on the head scatter alone: 0.0997 / 16.0 mm for the machine's 0.11 /
    # 15 mm (regression values of this fit, 2026-12: trusted because they recover the machine's
    # known values within the tolerances below; the real scans, made with their own head
    # scatter, pull a little)
    assert "termination condition is satisfied" in report["head_scatter_fit"]["status"]
    assert report["parameters"]["extrafocal_weight"] == pytest.approx(0.11, abs=0.015)
    assert report["parameters"]["extrafocal_sigma_mm"] == pytest.approx(15.0, abs=2.5)
    # its output factors within 1 % (regression values +0.6 / +0.2 / -0.1 / -0.2 %), and the
    # 1 x 1 cm field, not in the fit, within 2 % of the machine's (regression 0.706 vs 0.699);
    # the machine is this test's own construction, so see the IROC test below for real data
    after = _relative_errors(model, factors)
    assert np.abs(after).max() < 0.01
    machine = replace(BeamModel.load_default(), extrafocal_weight=0.11, extrafocal_sigma_mm=15.0)
    assert water.output_factor((10.0, 10.0), 900.0, 100.0, model=model) == pytest.approx(
        water.output_factor((10.0, 10.0), 900.0, 100.0, model=machine), rel=0.02
    )
    # scans: 1.00 % RMS (0.80 % with the literature source): regression values, the bound
    # says the second stage does not spoil the scan fit
    assert report["rms_residual"] < 0.0105
    listed = [of["model"] / of["measured"] - 1 for of in report["output_factors"]]
    np.testing.assert_allclose(listed, after, atol=2e-4)  # the report shows what the model gives


# IROC/RPC total scatter factors, 6 MV, 10 cm depth, SSD 90 cm, relative to 10 x 10 cm
# (Followill/Kerns et al., tabulated in PMC5718235 Table 2; ../shared/reference/README.md):
# measurements this code did not make.
IROC_OUTPUT_FACTORS = {60.0: 0.930, 40.0: 0.878, 30.0: 0.842, 20.0: 0.790}


@pytest.mark.slow
def test_fit_to_the_iroc_output_factors(reference_scans, shipped_start):
    """Commissioning on the real scans plus the IROC output factors. The shipped model (literature
    head scatter) is +3.7 % from IROC at 2 x 2 cm (tests/dose/test_beam_data.py); fitted, every
    IROC value is met within 1 % (regression values +0.3 / -0.1 / -0.2 / +0.9 %, head scatter
    0.106 / 15.2 mm). The 2 x 2 cm value must be in the fit: without it the three larger fields
    leave the head scatter free and 2 x 2 cm comes out +4 % (tried, 2026-12)."""
    factors = [OutputFactor((s, s), v) for s, v in IROC_OUTPUT_FACTORS.items()]
    before = water.output_factor((20.0, 20.0), 900.0, 100.0) / IROC_OUTPUT_FACTORS[20.0] - 1
    assert before > 0.03
    model, report = commission(
        reference_scans, initial=shipped_start, output_factors=factors, max_nfev=10
    )
    for side_mm, iroc in IROC_OUTPUT_FACTORS.items():
        ours = water.output_factor((side_mm, side_mm), 900.0, 100.0, model=model)
        assert ours == pytest.approx(iroc, rel=0.01), side_mm
    assert report["rms_residual"] < 0.0105  # the scans stay fitted (1.0 % RMS)


def test_initial_of_the_wrong_length_is_refused(reference_scans, shipped_start):
    with pytest.raises(DoseError, match="HEAD_SCATTER_NAMES"):
        commission(reference_scans, initial=shipped_start[:3])
    with pytest.raises(DoseError, match="got 17"):  # head-scatter values without output factors
        commission(reference_scans, initial=[*shipped_start, 0.08, 35.0])


def test_commission_command_with_output_factors_records_them(
    tmp_path, capsys, monkeypatch, reference_scans, shipped_start
):
    from lattice_plan.dose import commission as commission_module

    real = commission_module.commission

    def two_steps(scans, output_factors=()):
        return real(scans, initial=shipped_start, output_factors=output_factors, max_nfev=2)

    monkeypatch.setattr(commission_module, "commission", two_steps)
    csv = tmp_path / "output_factors.csv"
    csv.write_text("side_mm,output_factor\n20,0.80\n40,0.88\n100,1\n")
    out = tmp_path / "m.json"
    files = [
        str(reference_path("beam-data", n))
        for n in ("varian-unique-6x-10x10PDD.mcc", "varian-unique-6x-10x10xy.mcc")
    ]
    code = main(["commission", *files, "--output-factors", str(csv), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "output factor 20 x 20 mm: measured 0.800" in printed
    prov = BeamModel.from_json(out).provenance
    assert "--output-factors output_factors.csv --output-factor-ssd 900" in prov["command"]
    assert [f["file"] for f in prov["fitted_to"]][-1] == "output_factors.csv"
    assert "extrafocal_weight" not in prov["fixed_from_literature"]
    assert "extrafocal_weight" in prov["bounded_by_literature"]
    assert len(prov["fit"]["output_factors"]) == 2
    assert "IROC" in prov["not_used_in_fit"]  # a machine's own file is not the IROC set


def test_output_factor_set_up_options_need_the_file(tmp_path, capsys):
    scan = str(reference_path("beam-data", "varian-unique-6x-10x10PDD.mcc"))
    out = tmp_path / "m.json"
    code = main(["commission", scan, "--output-factor-ssd", "1000", "--out", str(out)])
    assert code == 2
    assert "--output-factors" in capsys.readouterr().err
    assert not out.exists()
