"""Matching protocol structure names to plan structure names (synonyms, TG-263 keys)."""

import pytest

from lattice_plan.errors import ProtocolError
from lattice_plan.qa.matching import match_structure, tg263_key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SpinalCord", "Spinal Cord"),  # TG-263 camel case vs clinical spacing
        ("SpinalCord", "spinal_cord"),
        ("Lung_L", "Lt Lung"),  # TG-263 laterality suffix vs prefix abbreviation
        ("Lung_L", "Left lung"),
        ("Kidney_R", "KIDNEY RT"),
        ("Bowel_Small", "Small Bowel"),  # word order
        ("CaudaEquina", "Cauda-Equina"),
    ],
)
def test_tg263_keys_equal_for_spellings_of_one_organ(a, b):
    assert tg263_key(a) == tg263_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SpinalCord", "SpinalCanal"),
        ("Lung_L", "Lung_R"),
        ("Kidney_L", "Kidneys"),
        ("L1", "Lung_L"),  # a vertebra name is not a laterality
        ("Tumor Bed", "Tumor Bed Block"),
    ],
)
def test_tg263_keys_differ_for_different_organs(a, b):
    assert tg263_key(a) != tg263_key(b)


def test_exact_synonym_wins_over_tg263_key():
    plan = ["Spinal Cord", "cord_PRV", "Cord"]
    m = match_structure("SpinalCord", ["Cord"], plan)
    # "Cord" matches exactly (tier 1); "Spinal Cord" would only match by TG-263 key (tier 2).
    assert m.plan_name == "Cord"
    assert "'Cord'" in m.how


def test_tg263_key_match_when_no_exact_name():
    m = match_structure("Lung_L", [], ["BODY", "Lt Lung", "Heart"])
    assert m.plan_name == "Lt Lung"
    assert "TG-263" in m.how


def test_case_insensitive_exact_match():
    assert match_structure("Heart", [], ["HEART", "BODY"]).plan_name == "HEART"


def test_no_match_gives_none():
    m = match_structure("Esophagus", ["Oesophagus"], ["BODY", "Heart"])
    assert m.plan_name is None


def test_synonym_matching_two_structures_is_an_error():
    with pytest.raises(ProtocolError, match=r"several plan structures.*'Cord'.*'SpinalCord'"):
        match_structure("SpinalCord", ["Cord"], ["Cord", "SpinalCord", "BODY"])


def test_tg263_key_matching_two_structures_is_an_error():
    with pytest.raises(ProtocolError, match="TG-263 matching"):
        match_structure("Lung_L", [], ["Lt Lung", "LUNG LEFT"])
