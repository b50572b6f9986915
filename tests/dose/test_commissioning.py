"""The shipped beam model is what commissioning on the reference scans gives."""

from __future__ import annotations

import numpy as np
import pytest

from lattice_plan.cli import main
from lattice_plan.dose.commission import PARAMETER_NAMES, commission, read_mcc
from lattice_plan.dose.model import BeamModel
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
