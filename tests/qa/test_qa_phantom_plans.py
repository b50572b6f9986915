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
    # SCART's GTV edge (D98%) is held between the template's 3 Gy floor and 5 Gy ceiling. Since
    # the optimiser's curvature-scaled variables (issue 18) the fast demo's 12 iterations give a
    # less modulated plan (about 5,000 MU per fraction instead of 12,600), so the leaf
    # transmission of the sliding-window delivery no longer lifts the edge over 5 Gy (it was
    # 5.36 Gy, a minor deviation; now 3.43 Gy): every SCART row is per protocol.
    scart = qa["SCART"]["rows"]
    edges = [r for r in scart if (r["structure"], r["metric"]) == ("GTV", "D98%")]
    assert {r["limit"] for r in edges} == {"3 Gy", "5 Gy"}
    assert all(3.0 <= r["value"] <= 5.0 for r in edges)
    assert {r["outcome"] for r in scart} <= {"per protocol", "not evaluated"}
    assert qa["SCART"]["verdict"] == "per protocol"
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
