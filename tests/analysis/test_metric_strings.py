"""Parsing of clinical metric strings."""

import pytest

from lattice_plan.analysis.metric_strings import parse_metric
from lattice_plan.errors import AnalysisError


@pytest.mark.parametrize(
    ("text", "kind", "fields"),
    [
        ("Dmax", "dose_stat", {"stat": "max", "output_unit": "Gy"}),
        ("dmin", "dose_stat", {"stat": "min"}),
        ("Dmean[%]", "dose_stat", {"stat": "mean", "output_unit": "%"}),
        ("D95%", "dose_at_volume", {"volume": 95.0, "volume_unit": "%", "output_unit": "Gy"}),
        ("D2%", "dose_at_volume", {"volume": 2.0, "volume_unit": "%"}),
        ("D0.03cc", "dose_at_volume", {"volume": 0.03, "volume_unit": "cc"}),
        ("D2cc[cGy]", "dose_at_volume", {"volume": 2.0, "volume_unit": "cc", "output_unit": "cGy"}),
        ("V20Gy", "volume_at_dose", {"dose": 20.0, "dose_unit": "Gy", "output_unit": "%"}),
        ("V20Gy[cc]", "volume_at_dose", {"dose": 20.0, "output_unit": "cc"}),
        ("V2000cGy[%]", "volume_at_dose", {"dose": 20.0, "dose_unit": "Gy", "output_unit": "%"}),
        ("V95%", "volume_at_dose", {"dose": 95.0, "dose_unit": "%", "output_unit": "%"}),
        ("CV20Gy", "volume_below_dose", {"dose": 20.0, "output_unit": "cc"}),
        ("CV15Gy[%]", "volume_below_dose", {"dose": 15.0, "output_unit": "%"}),
        ("PVDR", "pvdr", {"pvdr_variant": "D10/D90", "output_unit": "1"}),
        ("PVDR[mean]", "pvdr", {"pvdr_variant": "mean"}),
        ("PVDR[profile]", "pvdr", {"pvdr_variant": "profile"}),
        (" D 95 % ", "dose_at_volume", {"volume": 95.0}),
    ],
)
def test_parse_accepted_forms(text, kind, fields):
    spec = parse_metric(text)
    assert spec.kind == kind
    assert spec.quantity == "physical"
    for name, value in fields.items():
        assert getattr(spec, name) == value


def test_quantity_prefix_and_canonical():
    spec = parse_metric("EQD2:D0.03cc")
    assert spec.quantity == "EQD2"
    assert spec.needs_fractionation
    assert spec.canonical == "EQD2:D0.03cc[Gy]"
    assert parse_metric("bed: V20Gy[cc]").canonical == "BED:V20Gy[cc]"
    assert parse_metric("V95%").needs_prescription
    assert not parse_metric("V20Gy").needs_prescription


@pytest.mark.parametrize(
    "text", ["D105%", "Vabc", "", "D", "V20", "Dmaxx", "D95", "X20Gy", "EQD3:Dmax", "PVDR[peak]"]
)
def test_malformed_strings_name_the_string_and_forms(text):
    with pytest.raises(AnalysisError) as exc:
        parse_metric(text)
    msg = str(exc.value)
    assert repr(text) in msg
    assert "accepted forms" in msg
