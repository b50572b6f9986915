"""Issue 8: the built-in protocol on the built-in phantom's three plans (the fast demo)."""

import pytest

# Organs the protocol lists that the lumbar phantom does not have (no spinal cord at the
# level of the cauda equina, no oesophagus in the abdomen): the only rows allowed to be
# "not evaluated".
ABSENT_FROM_PHANTOM = {"SpinalCord", "Esophagus"}


@pytest.mark.slow
def test_every_arm_is_evaluated_on_the_phantom_plans(demo_metrics):
    qa = demo_metrics["qa"]
    assert {name: result["arm"] for name, result in qa.items()} == {
        "SFRT": "SFRT",
        "SCART": "SCART",
        "CRT": "CRT_30Gy_10fx",
    }
    for name, result in qa.items():
        rows = result["rows"]
        not_evaluated = {r["structure"] for r in rows if r["outcome"] == "not evaluated"}
        assert not_evaluated <= ABSENT_FROM_PHANTOM, (name, not_evaluated)
        evaluated = [r for r in rows if r["outcome"] != "not evaluated"]
        assert len(evaluated) >= 5, name
        assert all(r["value"] is not None for r in evaluated)
    # The lattice and SCART plans are built to meet their arms: per protocol. The CRT's
    # opposed fields cross the small bowel, and 30 Gy in 10 fractions gives it an EQD2 V15Gy near
    # the QUANTEC limit of 120 cc (Kavanagh et al., IJROBP 76 (2010) S101; the demo gives 136 cc,
    # a regression value): every other CRT row is per protocol, and the verdict follows that row.
    assert qa["SFRT"]["verdict"] == "per protocol"
    # SCART's GTV edge (D98%) is planned under the template's 5 Gy on the ideal fluence; the
    # deliverable sliding-window dose adds leaf transmission (1.5 % of about 12,600 MU on the
    # fast demo) and lands between the limit and the acceptable 6 Gy: a minor deviation
    # (regression value 5.36 Gy), every other SCART row per protocol.
    scart = qa["SCART"]["rows"]
    (edge,) = [
        r for r in scart if (r["structure"], r["metric"], r["limit"]) == ("GTV", "D98%", "5 Gy")
    ]
    assert 5.0 < edge["value"] <= 6.0 and edge["outcome"] == "minor deviation"
    others = {r["outcome"] for r in scart if r is not edge}
    assert others <= {"per protocol", "not evaluated"}
    assert qa["SCART"]["verdict"] == "minor deviation"
    crt = {(r["structure"], r["metric"]): r for r in qa["CRT"]["rows"]}
    bowel = crt.pop(("Bowel_Small", "EQD2:V15Gy[cc]"))
    assert {r["outcome"] for r in crt.values()} <= {"per protocol", "not evaluated"}
    bowel_ok = bowel["value"] < 120.0
    assert bowel["outcome"] == ("per protocol" if bowel_ok else "major deviation")
    assert qa["CRT"]["verdict"] == ("per protocol" if bowel_ok else "major deviation")
    # The targets are judged on the structures the planners made for them.
    judged = {
        (n, r["structure"])
        for n, res in qa.items()
        for r in res["rows"]
        if r["outcome"] != "not evaluated"
    }
    assert {("SFRT", "Vertices"), ("SFRT", "Valley"), ("SCART", "STV"), ("CRT", "PTV")} <= judged
