"""The one loader of exported plans behind ``lattice-plan evaluate`` and ``lattice-plan qa``.

Reference: the dicompyler-core breast-boost example plan (../shared/reference/dicom/
breast-boost-plan), whose RTPLAN plans 7 fractions and whose RTDOSE is a PLAN dose.
"""

import pytest

from lattice_plan.errors import AnalysisError, ExportedPlanError, ProtocolError
from lattice_plan.io.exported_plan import load_exported_plan
from lattice_plan.io.rtdose import load_rtdose
from lattice_plan.workflow import evaluate_dicom
from tests.conftest import reference_path


def test_fractions_and_plan_dose_come_from_the_rtplan():
    folder = reference_path("dicom", "breast-boost-plan")
    plan = load_exported_plan(folder / "rtdose.dcm", folder / "rtplan.dcm")
    assert plan.fractions == 7 and plan.summation_type == "PLAN"
    # A PLAN dose is the course's dose as stored: not multiplied.
    stored = load_rtdose(folder / "rtdose.dcm").volume.array
    assert float(plan.dose.array.max()) == pytest.approx(float(stored.max()), rel=1e-12)


def test_qa_refuses_contradicting_fractions_and_evaluate_overrides_them():
    """A protocol judges the planned schedule, so the check refuses 5 fractions against the
    RTPLAN's 7; the evaluation takes them as a what-if override (``evaluate --fractions``)."""
    folder = reference_path("dicom", "breast-boost-plan")
    with pytest.raises(ExportedPlanError, match="contradicts the 7 fractions planned") as info:
        load_exported_plan(folder / "rtdose.dcm", folder / "rtplan.dcm", fractions=5)
    # One class that callers of the evaluation and of the protocol check both catch.
    assert isinstance(info.value, AnalysisError) and isinstance(info.value, ProtocolError)
    result = evaluate_dicom(
        folder / "rtdose.dcm",
        folder / "rtss.dcm",
        rtplan_path=folder / "rtplan.dcm",
        fractions=5,
        metrics=("Dmean",),
    )
    assert result["fractions"] == 5
