"""Protocol TOML: reading, validation messages (file, key, line, expectation), built-in protocol."""

import math

import pytest

from lattice_plan.errors import InputFileError, ProtocolError, SpecError
from lattice_plan.qa.builtin import (
    STUDY_PROTOCOL,
    builtin_protocol_text,
    list_builtin_protocols,
    load_builtin_protocol,
)
from lattice_plan.qa.protocol import (
    Comparison,
    Outcome,
    Quantity,
    load_protocol,
    parse_protocol,
)

GOOD = """\
[protocol]
name = "Test protocol"
version = "2.1"

[structures.SpinalCord]
synonyms = ["Spinal Cord", "Cord"]

[arms.SFRT]
fractions = 1
prescriptions = [{ target = "Vertices", dose = "15 Gy" }]

[[arms.SFRT.constraints]]
structure = "SpinalCord"
metric = "D0.035cc"
comparison = "<="
limit = "14 Gy"
acceptable = "1500 cGy"
source = "TG-101"

[[arms.SFRT.constraints]]
structure = "SpinalCord"
metric = "V10Gy[cc]"
comparison = "<"
limit = "0.35 cc"

[arms.CRT]
fractions = 10
prescriptions = [{ target = "PTV", dose = "30 Gy" }]

[[arms.CRT.constraints]]
structure = "SpinalCord"
metric = "EQD2:Dmax"
alpha_beta = "2 Gy"
comparison = "<="
limit = "50 Gy"
required = false
"""


def _bad(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


def test_quantity_units():
    assert Quantity.parse("14 Gy") == Quantity(14.0, "Gy")
    assert Quantity.parse("1400 cGy") == Quantity(14.0, "Gy")
    assert Quantity.parse("0.35cc") == Quantity(0.35, "cc")
    assert Quantity.parse("5 cm3") == Quantity(5.0, "cc")
    assert Quantity.parse("95 %") == Quantity(95.0, "%")
    assert Quantity.parse("3.5") == Quantity(3.5, "")
    assert Quantity.parse(3) == Quantity(3.0, "")
    assert str(Quantity(14.0, "Gy")) == "14 Gy"
    with pytest.raises(ProtocolError, match="unknown unit 'mGy'"):
        Quantity.parse("14 mGy")
    with pytest.raises(ProtocolError, match="cannot read"):
        Quantity.parse("fourteen Gy")


def test_comparison_at_the_limit():
    assert Comparison.LE.holds(14.0, 14.0) and not Comparison.LT.holds(14.0, 14.0)
    assert Comparison.GE.holds(14.0, 14.0) and not Comparison.GT.holds(14.0, 14.0)
    # floating-point noise of a voxel sum counts as "at the limit"
    assert Comparison.LE.holds(0.1 + 0.2, 0.3)
    assert not Comparison.LE.holds(14.0 + 1e-6, 14.0)


def test_good_protocol_reads():
    p = parse_protocol(GOOD, "good.toml")
    assert (p.name, p.version, p.arm_names) == ("Test protocol", "2.1", ["SFRT", "CRT"])
    sfrt = p.arm("sfrt")  # case-insensitive
    assert sfrt.fractions == 1
    assert sfrt.prescription().dose_gy == 15.0
    c0, c1 = sfrt.constraints
    assert c0.limit == Quantity(14.0, "Gy") and c0.acceptable == Quantity(15.0, "Gy")
    assert c0.comparison is Comparison.LE and c0.source == "TG-101" and c0.required
    assert c1.result_unit == "cc" and c1.acceptable is None
    crt = p.arm("CRT").constraints[0]
    assert crt.alpha_beta_gy == 2.0 and not crt.required
    assert p.structure("Heart").synonyms == ()  # undefined names give a bare definition
    assert p.structure("spinalcord").synonyms == ("Spinal Cord", "Cord")


def test_outcome_per_protocol_minor_major():
    c = parse_protocol(GOOD).arm("SFRT").constraints[0]  # <= 14 Gy, acceptable 15 Gy
    assert c.outcome(13.99) is Outcome.PER_PROTOCOL
    assert c.outcome(14.0) is Outcome.PER_PROTOCOL
    assert c.outcome(14.01) is Outcome.MINOR_DEVIATION
    assert c.outcome(15.0) is Outcome.MINOR_DEVIATION
    assert c.outcome(15.01) is Outcome.MAJOR_DEVIATION
    assert c.outcome(math.nan) is Outcome.MAJOR_DEVIATION
    strict = parse_protocol(GOOD).arm("SFRT").constraints[1]  # < 0.35 cc, no acceptable
    assert strict.outcome(0.3499) is Outcome.PER_PROTOCOL
    assert strict.outcome(0.35) is Outcome.MAJOR_DEVIATION


def test_unknown_arm_lists_the_arms():
    with pytest.raises(ProtocolError, match=r"no arm 'SCART'; its arms are SFRT, CRT"):
        parse_protocol(GOOD).arm("SCART")


def test_unknown_metric_names_file_key_line_and_forms():
    text = _bad('metric = "V10Gy[cc]"', 'metric = "Vabc"')
    with pytest.raises(SpecError) as err:
        parse_protocol(text, "bad.toml")
    msg = str(err.value)
    assert msg.startswith("bad.toml: arms.SFRT.constraints #2.metric (line 22): ")
    assert "'Vabc'" in msg and "accepted forms: Dmax" in msg


def test_limit_without_unit():
    text = _bad('limit = "14 Gy"', 'limit = "14"')
    with pytest.raises(SpecError) as err:
        parse_protocol(text, "bad.toml")
    msg = str(err.value)
    assert "arms.SFRT.constraints #1.limit (line 16)" in msg
    assert "'14' has no unit" in msg and '(write "14 Gy" if that is what is meant)' in msg
    assert msg.endswith("expected a number with unit Gy (what D0.035cc gives)")


def test_limit_with_wrong_unit_for_metric():
    text = _bad('limit = "0.35 cc"', 'limit = "0.35 Gy"')
    with pytest.raises(SpecError, match=r"is in Gy; expected a number with unit cc"):
        parse_protocol(text, "bad.toml")


def test_acceptable_must_be_looser_than_limit():
    text = _bad('acceptable = "1500 cGy"', 'acceptable = "13 Gy"')
    with pytest.raises(SpecError, match=r"constraints #1.acceptable.*must be looser"):
        parse_protocol(text, "bad.toml")


def test_eqd2_needs_alpha_beta_and_physical_refuses_it():
    text = _bad('alpha_beta = "2 Gy"\n', "")
    with pytest.raises(SpecError, match=r"arms.CRT.constraints #1.alpha_beta.*is missing"):
        parse_protocol(text, "bad.toml")
    text = _bad('metric = "EQD2:Dmax"', 'metric = "Dmax"')
    with pytest.raises(SpecError, match="is a physical-dose metric"):
        parse_protocol(text, "bad.toml")


def test_unknown_key_is_a_typo_error():
    text = _bad('comparison = "<"', 'comparision = "<"')
    with pytest.raises(SpecError, match=r"unknown key 'comparision'; expected one of"):
        parse_protocol(text, "bad.toml")


def test_bad_comparison_and_fractions():
    with pytest.raises(SpecError, match=r"comparison \(line 15\): is '=<'"):
        parse_protocol(_bad('comparison = "<="', 'comparison = "=<"'), "bad.toml")
    with pytest.raises(SpecError, match=r"arms.SFRT.fractions \(line 9\): is 0"):
        parse_protocol(_bad("fractions = 1", "fractions = 0"), "bad.toml")


def test_arm_without_constraints_is_refused():
    text = GOOD[: GOOD.index("[[arms.CRT.constraints]]")]
    with pytest.raises(SpecError, match=r"arms.CRT.constraints \(line 26\): is missing or empty"):
        parse_protocol(text, "bad.toml")


def test_prescription_dose_needs_unit():
    text = _bad('dose = "15 Gy"', "dose = 15")
    with pytest.raises(SpecError, match=r"arms.SFRT.prescriptions.*15 has no unit"):
        parse_protocol(text, "bad.toml")


def test_synonym_shared_by_two_structures_is_refused():
    text = _bad("[arms.SFRT]", '[structures.CaudaEquina]\nsynonyms = ["cord"]\n\n[arms.SFRT]')
    with pytest.raises(SpecError, match=r"'cord' also names structure 'SpinalCord'"):
        parse_protocol(text, "bad.toml")


def test_toml_syntax_error_names_file_and_line():
    with pytest.raises(SpecError, match=r"bad.toml: not valid TOML: .*line 3"):
        parse_protocol('[protocol]\nname = "x"\nversion = \n', "bad.toml")


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_protocol(tmp_path / "nope.toml")


def test_load_from_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(GOOD)
    p = load_protocol(path)
    assert p.source == str(path) and p.arm("CRT").fractions == 10


# ------------------------------------------------------------------ the built-in protocol


def test_builtin_protocol_loads_and_is_a_template():
    assert STUDY_PROTOCOL in list_builtin_protocols()
    assert "EDITABLE TEMPLATE" in builtin_protocol_text()
    p = load_builtin_protocol()
    assert p.template
    assert p.arm_names == ["SFRT", "SCART", "CRT_30Gy_10fx", "CRT_20Gy_5fx", "CRT_8Gy_1fx"]
    assert [p.arm(a).fractions for a in p.arm_names] == [1, 1, 10, 5, 1]
    assert p.arm("CRT_30Gy_10fx").prescription().dose_gy == 30.0
    assert p.arm("CRT_20Gy_5fx").prescription().dose_gy == 20.0
    assert p.arm("CRT_8Gy_1fx").prescription().dose_gy == 8.0
    for arm in p.arms:
        for c in arm.constraints:
            assert c.source, f"{c.where} has no source"
            if not c.source.startswith("template choice"):
                assert any(ref in c.source for ref in ("TG-101", "QUANTEC", "Emami", "ICRU"))


def _limit(arm, structure, metric):
    (c,) = [c for c in arm.constraints if c.structure == structure and c.metric == metric]
    return c.comparison.value, c.limit.value, c.limit.unit


def test_builtin_single_fraction_limits_are_tg101_table3():
    # AAPM TG-101 (Benedict et al., Med Phys 37 (2010) 4078), Table 3, one fraction.
    p = load_builtin_protocol()
    for arm_name in ("SFRT", "SCART"):
        arm = p.arm(arm_name)
        assert _limit(arm, "SpinalCord", "D0.035cc") == ("<=", 14.0, "Gy")
        assert _limit(arm, "SpinalCord", "V10Gy[cc]") == ("<", 0.35, "cc")
        assert _limit(arm, "SpinalCord", "V7Gy[cc]") == ("<", 1.2, "cc")
        assert _limit(arm, "CaudaEquina", "D0.035cc") == ("<=", 16.0, "Gy")
        assert _limit(arm, "CaudaEquina", "V14Gy[cc]") == ("<", 5.0, "cc")
        assert _limit(arm, "Esophagus", "D0.035cc") == ("<=", 15.4, "Gy")
        assert _limit(arm, "Esophagus", "V11.9Gy[cc]") == ("<", 5.0, "cc")
        assert _limit(arm, "Bowel_Small", "V11.9Gy[cc]") == ("<", 5.0, "cc")
        assert _limit(arm, "Kidneys", "CV8.4Gy[cc]") == (">=", 200.0, "cc")
        assert _limit(arm, "Skin", "D0.035cc") == ("<=", 26.0, "Gy")
        assert _limit(arm, "Skin", "V23Gy[cc]") == ("<", 10.0, "cc")


@pytest.mark.parametrize("name", ["CRT_30Gy_10fx", "CRT_20Gy_5fx"])
def test_builtin_conventional_crt_uses_quantec_in_eqd2(name):
    # QUANTEC (Marks et al., IJROBP 76 (2010) S10, Table 1): cord Dmax 50 Gy; oesophagus
    # mean < 34 Gy; small bowel V15 < 120 cc; kidneys mean < 15-18 Gy, V20 < 32 %.
    arm = load_builtin_protocol().arm(name)
    assert _limit(arm, "SpinalCord", "EQD2:D0.035cc") == ("<=", 50.0, "Gy")
    assert _limit(arm, "Esophagus", "EQD2:Dmean") == ("<", 34.0, "Gy")
    assert _limit(arm, "Bowel_Small", "EQD2:V15Gy[cc]") == ("<", 120.0, "cc")
    assert _limit(arm, "Kidneys", "EQD2:V20Gy[%]") == ("<", 32.0, "%")
    (kid,) = [c for c in arm.constraints if c.metric == "EQD2:Dmean" and c.structure == "Kidneys"]
    assert (kid.limit.value, kid.acceptable.value, kid.alpha_beta_gy) == (15.0, 18.0, 3.0)
    (cord,) = [c for c in arm.constraints if c.structure == "SpinalCord"]
    assert cord.alpha_beta_gy == 2.0


def test_builtin_structures_cover_the_phantom_names():
    p = load_builtin_protocol()
    assert p.structure("Kidneys").union_of == ("Kidney_L", "Kidney_R")
    assert "Bowel" in p.structure("Bowel_Small").synonyms
    assert "Oesophagus" in p.structure("Esophagus").synonyms


PVDR = """\
[protocol]
name = "P"
version = "1"

[arms.SFRT]
fractions = 1
prescriptions = [{ target = "Vertices", dose = "15 Gy" }]

[[arms.SFRT.constraints]]
structure = "Vertices"
metric = "PVDR[mean]"
valley = "Valley"
comparison = ">="
limit = "3"
"""


def test_pvdr_constraints_validate_their_structures_and_ratio_limits():
    c = parse_protocol(PVDR).arm("SFRT").constraints[0]
    assert (c.valley, c.result_unit, c.limit) == ("Valley", "", Quantity(3.0, ""))
    # a missing key points at its table's header line
    with pytest.raises(SpecError, match=r"constraints #1.valley \(line 9\): is missing: PVDR"):
        parse_protocol(PVDR.replace('valley = "Valley"\n', ""), "p.toml")
    with pytest.raises(SpecError, match=r"valley .*does not use a valley structure"):
        parse_protocol(PVDR.replace("PVDR[mean]", "PVDR"), "p.toml")
    with pytest.raises(SpecError, match=r"valley .*does not use a valley structure"):
        parse_protocol(PVDR.replace("PVDR[mean]", "PVDR[profile]"), "p.toml")
    profile = parse_protocol(PVDR.replace('PVDR[mean]"\nvalley = "Valley"', 'PVDR[profile]"'))
    assert profile.arm("SFRT").constraints[0].valley is None
    with pytest.raises(SpecError, match=r"'3 %' is in %; expected a plain number"):
        parse_protocol(PVDR.replace('limit = "3"', 'limit = "3 %"'), "p.toml")


def test_builtin_target_peak_valley_and_edge_constraints():
    p = load_builtin_protocol()
    sfrt = p.arm("SFRT")
    assert _limit(sfrt, "Vertices", "Dmean") == (">=", 14.25, "Gy")  # peak at 95 % of the Rx
    assert _limit(sfrt, "Valley", "D50%") == ("<=", 5.0, "Gy")
    assert _limit(sfrt, "Vertices", "PVDR[mean]") == (">=", 3.0, "")
    (pvdr,) = [c for c in sfrt.constraints if c.metric == "PVDR[mean]"]
    assert pvdr.valley == "Valley" and pvdr.required
    assert _limit(sfrt, "GTV", "D98%") == ("<=", 5.0, "Gy")  # edge
    scart = p.arm("SCART")
    assert _limit(scart, "STV", "D95%") == (">=", 15.0, "Gy")
    edge = [(c.comparison.value, c.limit.value) for c in scart.constraints if c.structure == "GTV"]
    assert edge == [("<=", 5.0), (">=", 3.0)]  # GTV edge held at 3-5 Gy
    for crt in ("CRT_30Gy_10fx", "CRT_20Gy_5fx", "CRT_8Gy_1fx"):
        assert _limit(p.arm(crt), "PTV", "D95%[%]") == (">=", 95.0, "%")  # ICRU 50/62
        assert _limit(p.arm(crt), "PTV", "D2%[%]") == ("<=", 107.0, "%")
