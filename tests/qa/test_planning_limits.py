"""A protocol arm's constraints as the CRT planner's dose limits (qa.planning_limits)."""

import pytest

from lattice_plan.qa import load_builtin_protocol
from lattice_plan.qa.planning_limits import planning_limits
from lattice_plan.workflow import crt_limits_for, resolve_spec

PROTOCOL = load_builtin_protocol()


def test_the_30gy_arm_on_the_phantom(phantom):
    limits = planning_limits(PROTOCOL, "CRT_30Gy_10fx", phantom.structures)
    assert limits.name == f"{PROTOCOL.name}: CRT_30Gy_10fx"
    by_label = {lim.label: lim for lim in limits.limits}
    # Matched as the protocol check matches: synonyms (Bowel) and unions (Kidneys).
    bowel = by_label["Bowel_Small [Bowel] EQD2:V15Gy[cc] < 120 cc"]
    assert (bowel.kind, bowel.unit, bowel.upper, bowel.strict) == (
        "volume_at_dose",
        "cc",
        True,
        True,
    )
    assert (bowel.dose, bowel.dose_unit, bowel.quantity, bowel.alpha_beta_gy) == (
        15.0,
        "Gy",
        "EQD2",
        10.0,
    )
    kidneys = by_label["Kidneys [Kidney_L + Kidney_R] EQD2:Dmean < 15 Gy"]
    assert kidneys.acceptable == 18.0 and kidneys.kind == "mean"
    left = phantom.structures["Kidney_L"].volume_cc + phantom.structures["Kidney_R"].volume_cc
    assert kidneys.structure.volume_cc == pytest.approx(left, rel=1e-6)
    cauda = by_label["CaudaEquina EQD2:D0.035cc <= 60 Gy"]
    assert (cauda.kind, cauda.volume, cauda.volume_unit) == ("dose_at_volume", 0.035, "cc")
    # The PTV does not exist before planning (the builder holds it to D95 = Rx and 107 %);
    # organs the phantom lacks are left out with the check's reason.
    left_out = dict(limits.left_out)
    assert set(left_out) == {
        "PTV D95%[%] >= 95 %",
        "PTV D2%[%] <= 107 %",
        "SpinalCord EQD2:D0.035cc <= 50 Gy",
        "Esophagus EQD2:Dmean < 34 Gy",
    }
    assert "no structure 'Esophagus'" in left_out["Esophagus EQD2:Dmean < 34 Gy"]


@pytest.mark.parametrize(
    ("schedule", "arm"),
    [(None, "CRT_30Gy_10fx"), ("20Gy/5", "CRT_20Gy_5fx"), ("8Gy/1", "CRT_8Gy_1fx")],
)
def test_each_schedule_is_planned_against_its_arm(phantom, schedule, arm):
    overrides = {} if schedule is None else {"crt.schedule": schedule}
    spec = resolve_spec("CRT", None, overrides)
    limits = crt_limits_for(phantom, spec, "builtin")
    assert limits.name.endswith(f": {arm}")
    assert len(limits.limits) == len(PROTOCOL.arm(arm).constraints) - len(limits.left_out)
    assert crt_limits_for(phantom, spec, None) is None  # no protocol, no limits
