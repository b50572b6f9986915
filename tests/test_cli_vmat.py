"""`lattice-plan demo --delivery vmat` hands the VMAT delivery to the SFRT and SCART specs."""

from lattice_plan import demo
from lattice_plan.cli import main


def test_demo_delivery_option_sets_the_spec_override(monkeypatch, tmp_path):
    seen = {}

    def fake_run_case(patient, arms, out_dir, *, overrides, **kwargs):
        seen["arms"], seen["overrides"] = arms, overrides
        return {}

    monkeypatch.setattr(demo, "build_phantom", lambda **kw: None)
    monkeypatch.setattr(demo, "run_case", fake_run_case)
    monkeypatch.setattr(demo, "summary_text", lambda metrics, out: "ok")
    assert main(["-q", "demo", "--fast", "--delivery", "vmat", "--out", str(tmp_path)]) == 0
    assert seen["overrides"]["delivery.method"] == "vmat"
    assert seen["overrides"]["dose.spacing_mm"] == 5.0  # the --fast settings stay
    assert main(["-q", "demo", "--fast", "--out", str(tmp_path)]) == 0
    assert "delivery.method" not in seen["overrides"]
