"""The viewer's data and page: arrays survive packing, EQD2 follows the LQ formula, nothing external."""

from __future__ import annotations

import base64
import json
import re
import zlib

import numpy as np
import pytest

from lattice_plan.errors import VisualizationError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import Structure, StructureKind
from lattice_plan.geometry.volume import Volume
from lattice_plan.viz.report import render_report_html
from lattice_plan.viz.viewer import ViewerPlan, viewer_page_html, viewer_payload

GRID = Grid((12, 16, 20), (3.0, 2.0, 2.5), (-20.0, -15.0, -10.0))


def _unpack(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype)


def _case(name: str = "GTV"):
    k, j, i = np.indices(GRID.shape)
    ct = Volume((40 * i - 300 + 3 * j - k).astype(float), GRID, "HU")
    box = np.zeros(GRID.shape, bool)
    box[3:7, 4:9, 5:12] = True
    vertices = np.zeros(GRID.shape, bool)
    vertices[2:4, 2:4, 2:4] = True  # centre (i, j, k) = (2.5, 2.5, 2.5)
    vertices[8:11, 10:13, 14:17] = True  # centre (15, 11, 9)
    structures = [
        Structure(name, box, GRID, StructureKind.GTV, (255, 0, 0)),
        Structure("SpinalCanal", vertices ^ vertices, GRID, StructureKind.OAR),
        Structure("Vertices", vertices, GRID, StructureKind.VERTEX, (0, 0, 255)),
        Structure("Kidney", np.roll(box, 3, axis=2), GRID, StructureKind.OAR),
    ]
    dose_grid = Grid((6, 8, 10), (6.0, 4.0, 5.0), (-20.0, -15.0, -10.0))
    dk, dj, di = np.indices(dose_grid.shape)
    dose = Volume(0.5 * di + 0.25 * dj + 0.1 * dk, dose_grid, "Gy")
    plans = [
        ViewerPlan("SFRT", "SFRT", dose, 1, 4.0),
        ViewerPlan("CRT", "CRT", Volume(np.full(dose_grid.shape, 3.0), dose_grid, "Gy"), 5, 3.0),
    ]
    return ct, structures, plans


def test_ct_dose_and_masks_survive_packing():
    ct, structures, plans = _case()
    payload = viewer_payload(ct, structures, plans, meshes=False)
    hu = _unpack(payload["ct"]["data"], "<i2").reshape(GRID.shape)
    np.testing.assert_array_equal(hu, ct.array)
    assert payload["ct"]["lps_from_ijk"] == np.round(GRID.lps_from_ijk, 6).tolist()
    d = payload["plans"][0]["dose"]
    gy = _unpack(d["data"], "<u2").reshape(plans[0].dose.grid.shape) * d["scale_gy"]
    # uint16 steps of max/65535: within half a step of the computed dose.
    np.testing.assert_allclose(gy, plans[0].dose.array, atol=0.5 * d["scale_gy"] + 1e-12)
    gtv = payload["structures"][0]
    assert gtv["box_lo"] == [3, 4, 5] and gtv["box_shape"] == [4, 5, 7]
    bits = np.unpackbits(_unpack(gtv["mask"], "u1"))[: 4 * 5 * 7]
    assert bits.all(), "the GTV fills its bounding box"
    assert [s["name"] for s in payload["structures"]] == ["GTV", "Vertices", "Kidney"], (
        "an empty structure is left out"
    )
    assert payload["reference_plan"] == "CRT"


def test_vertex_centres_are_the_centres_of_mass_of_the_spheres():
    ct, structures, plans = _case()
    vertices = viewer_payload(ct, structures, plans, meshes=False)["structures"][1]
    # Each cube of voxels is symmetric about its centre: index means (i, j, k).
    assert sorted(vertices["vertices_ijk"]) == [[2.5, 2.5, 2.5], [15.0, 11.0, 9.0]]


def test_dvh_eqd2_is_the_linear_quadratic_conversion_per_structure():
    ct, structures, plans = _case()
    payload = viewer_payload(ct, structures, plans, meshes=False)
    crt = payload["plans"][1]
    by_name = {c["structure"]: c for c in crt["dvh"]}
    # Withers et al. 1983: EQD2 = D (d + a/b) / (2 + a/b), d = D / n; targets a/b 10 Gy,
    # other tissue 3 Gy (lattice_plan.analysis.radiobiology defaults).
    for name, ab in (("GTV", 10.0), ("Kidney", 3.0)):
        c = by_name[name]
        assert c["alpha_beta_gy"] == ab
        dose = np.asarray(c["dose_gy"])
        np.testing.assert_allclose(c["eqd2_gy"], dose * (dose / 5 + ab) / (2 + ab), atol=2e-3)
        # A uniform 3 Gy: the whole volume receives every dose below 3 Gy, none above.
        vol = np.asarray(c["volume_pct"])
        assert np.all(vol[dose < 2.99] == pytest.approx(100.0))
        assert np.all(vol[dose > 3.01] == pytest.approx(0.0))


def test_a_large_ct_is_subsampled_by_a_whole_stride():
    ct, structures, plans = _case()
    payload = viewer_payload(ct, structures, plans, meshes=False, max_ct_voxels=1000)
    # 12 x 16 x 20 = 3840 voxels: stride 2 gives 6 x 8 x 10 = 480 <= 1000.
    assert payload["ct"]["stride"] == 2 and payload["ct"]["shape"] == [6, 8, 10]
    hu = _unpack(payload["ct"]["data"], "<i2").reshape(6, 8, 10)
    np.testing.assert_array_equal(hu, ct.array[::2, ::2, ::2])
    assert payload["ct"]["lps_from_ijk"][0][0] == pytest.approx(5.0)


def test_bad_inputs_are_refused_with_a_clear_message():
    ct, structures, plans = _case()
    with pytest.raises(VisualizationError, match="in Gy"):
        ViewerPlan("X", "SFRT", Volume(np.ones((2, 2, 2)), Grid((2, 2, 2), (1, 1, 1)), "1"), 1, 1.0)
    with pytest.raises(VisualizationError, match="names must differ"):
        viewer_payload(ct, structures, [plans[0], plans[0]], meshes=False)
    with pytest.raises(VisualizationError, match="at least one plan"):
        viewer_payload(ct, structures, [], meshes=False)


def test_the_page_is_self_contained_and_its_data_cannot_end_the_script():
    ct, structures, plans = _case("</script><b>x")
    payload = viewer_payload(ct, structures, plans, meshes=False)
    page = viewer_page_html(payload, "test & page")
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", page), "no fetch"
    assert page.lower().count("</script>") == 3, "data, plotly.js and the viewer script"
    data = re.search(r'<script type="application/json" id="lpv-data">(.*?)</script>', page, re.S)
    assert json.loads(data.group(1)) == json.loads(json.dumps(payload))
    assert "<title>test &amp; page</title>" in page


def test_the_report_holds_the_viewer_only_when_given():
    ct, structures, plans = _case()
    payload = viewer_payload(ct, structures, plans, meshes=False)
    comparison = {"GTV D95%": {"SFRT": 1.0, "CRT": 2.0}}
    with_viewer = render_report_html("t", comparison, viewer=payload)
    assert 'id="lpv-data"' in with_viewer and "Interactive viewer" in with_viewer
    assert "<script" not in render_report_html("t", comparison)


def _page_data(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="lpv-data">(.*?)</script>', text, re.S)
    assert found, "the page holds the viewer's data"
    return json.loads(found.group(1))


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_view_html_shows_every_plan_of_a_folder_with_its_arm_fractions_and_prescription(
    demo_out, tmp_path, capsys
):
    from lattice_plan.cli import main

    target = tmp_path / "viewer.html"
    assert main(["view", str(demo_out), "--html", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    payload = _page_data(target.read_text(encoding="utf-8"))
    plans = {p["name"]: p for p in payload["plans"]}
    assert sorted(plans) == ["CRT", "SCART", "SFRT"]
    assert payload["reference_plan"] == "CRT"
    # The demo's default prescriptions (workflow DEFAULT_SPECS): 15 Gy x 1, 15 Gy x 1, 30 Gy / 10.
    for name, fractions, rx in (("SFRT", 1, 15.0), ("SCART", 1, 15.0), ("CRT", 10, 30.0)):
        p = plans[name]
        assert (p["arm"], p["fractions"]) == (name, fractions)
        assert p["prescription_gy"] == pytest.approx(rx)
        assert p["beams"] and p["dvh"] and p["isodose_meshes"]
    names = {s["name"] for s in payload["structures"]}
    assert {"External", "GTV", "SpinalCanal"} <= names
    assert any(s["vertices_ijk"] for s in payload["structures"] if s["kind"] == "VERTEX")
    # A folder without doses: exit 2 and one line naming the problem.
    assert main(["view", str(tmp_path), "--html", str(tmp_path / "none.html")]) == 2
    assert "holds no RTDOSE" in capsys.readouterr().err
    assert not (tmp_path / "none.html").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_the_demo_report_holds_the_viewer_of_its_three_plans(demo_out):
    payload = _page_data((demo_out / "report.html").read_text(encoding="utf-8"))
    assert [p["name"] for p in payload["plans"]] == ["SFRT", "SCART", "CRT"]
    assert payload["reference_plan"] == "CRT"
    assert {"Vertices", "STV", "PTV"} <= {s["name"] for s in payload["structures"]}


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_an_exported_folder_is_read_by_modality_whatever_its_file_names(demo_out, tmp_path):
    import shutil

    from lattice_plan.viz.viewer import folder_payload

    shutil.copytree(demo_out / "CT", tmp_path / "CT")
    shutil.copy(demo_out / "RTSTRUCT.dcm", tmp_path / "rs.dcm")
    shutil.copy(demo_out / "RTDOSE_SCART.dcm", tmp_path / "dose1.dcm")
    shutil.copy(demo_out / "RTPLAN_SCART.dcm", tmp_path / "plan1.dcm")
    shutil.copy(demo_out / "RTDOSE_CRT.dcm", tmp_path / "dose2.dcm")  # its RTPLAN is absent
    payload = folder_payload(tmp_path)
    scart, crt = payload["plans"]
    assert (scart["name"], scart["arm"], scart["fractions"]) == ("SCART", "SCART", 1)
    # Without its RTPLAN the dose is shown against its own maximum in one fraction.
    assert crt["name"] == "dose2 (no Rx: % of max)" and crt["fractions"] == 1
    assert crt["prescription_gy"] == pytest.approx(crt["dose"]["max_gy"])
    assert payload["reference_plan"] is None and not crt["beams"]
