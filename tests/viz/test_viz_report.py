"""report.html: self-contained, every image decodes, plans and QA rows present, text escaped."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

import lattice_plan
from lattice_plan.errors import InputFileError, VisualizationError
from lattice_plan.viz.report import png_bytes, render_report_html, write_report


class _Collect(HTMLParser):
    """Images, table headers/cells (with classes) and the text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.cells: list[tuple[str, str, str]] = []  # (tag, class, text)
        self.text: list[str] = []
        self._open: tuple[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "link", "iframe") or (
            tag == "img" and not a["src"].startswith("data:")
        ):
            self.external.append(tag)
        if tag in ("td", "th"):
            self._open = (tag, a.get("class", "") or "")
            self.cells.append((tag, self._open[1], ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._open = None

    def handle_data(self, data):
        self.text.append(data)
        if self._open is not None:
            tag, cls, text = self.cells[-1]
            self.cells[-1] = (tag, cls, text + data)


def _figure() -> Figure:
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0, 1, 4])
    ax.set_xlabel("dose (Gy)")
    return fig


COMPARISON = {
    "GTV D95% (Gy)": {"SFRT": 4.1, "SCART": 5.0, "CRT": 7.6},
    "GTV Dmax (Gy)": {"SFRT": 21.3, "SCART": 24.9, "CRT": 8.4},
    "PVDR (D10/D90)": {"SFRT": 3.2, "SCART": 2.7, "CRT": 1.05},
    "vertices": {"SFRT": 7, "SCART": None, "CRT": None},
}
QA = {
    "SFRT": [
        {
            "structure": "SpinalCanal",
            "constraint": "D0.03cc <= 8 Gy",
            "value": 6.2,
            "status": "pass",
        },
        {"structure": "Bowel", "constraint": "D0.03cc <= 6 Gy", "value": 6.9, "status": "fail"},
    ],
    "CRT": [
        {
            "structure": "SpinalCanal",
            "constraint": "D0.03cc <= 8 Gy",
            "value": 8.1,
            "status": "minor",
        }
    ],
    # Rows as qa.check's ConstraintResult.to_dict() gives them.
    "SCART": [
        {
            "structure": "GTV",
            "metric": "D50%",
            "value": 20.1,
            "outcome": "per protocol",
            "required": True,
        },
        {
            "structure": "Skin",
            "metric": "Dmax",
            "value": None,
            "outcome": "not evaluated",
            "required": False,
        },
        {
            "structure": "Bowel",
            "metric": "D0.03cc",
            "value": 9.4,
            "outcome": "major deviation",
            "required": True,
        },
    ],
}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[:, :30] = (255, 0, 0)
    png_file = tmp_path_factory.mktemp("img") / "x.png"
    png_file.write_bytes(png_bytes(_figure()))
    path = write_report(
        tmp_path_factory.mktemp("report") / "report.html",
        "Lattice vs SCART vs CRT <phantom>",
        COMPARISON,
        QA,
        figures=[("DVH", _figure()), ("3D scene", rgb), ("from file", png_file)],
        inputs={"CT": "demo-out/CT", "spec": "a & b <c>", "seed": 0},
        notes=["synthetic data"],
        qa_verdicts={"SCART": "major deviation"},
    )
    text = path.read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(text)
    return text, parser


def test_every_embedded_image_decodes(page):
    _, parsed = page
    assert len(parsed.images) == 3
    assert parsed.external == []  # self-contained: no scripts, styles or images from elsewhere
    shapes = []
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        image = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.std() > 0.05  # not a blank picture
        shapes.append(image.shape[:2])
    assert shapes[1] == (40, 60)  # the RGB array went in unchanged in size
    red = imread(io.BytesIO(base64.b64decode(parsed.images[1].split(",", 1)[1])))
    assert np.allclose(red[0, 0, :3], (1.0, 0.0, 0.0))


def test_comparison_table_has_the_reference_first_and_every_plan(page):
    _, parsed = page
    headers = [text for tag, _, text in parsed.cells if tag == "th"]
    plan_headers = headers[1:4]
    assert plan_headers == ["CRT (reference)", "SFRT", "SCART"]
    # Row "GTV D95% (Gy)": values follow the column order, numbers formatted to 4 digits.
    row_start = next(n for n, c in enumerate(parsed.cells) if c[2] == "GTV D95% (Gy)")
    values = [c[2] for c in parsed.cells[row_start + 1 : row_start + 4]]
    assert values == ["7.6", "4.1", "5"]
    assert "ref" in parsed.cells[row_start + 1][1] and "num" in parsed.cells[row_start + 1][1]
    missing = next(n for n, c in enumerate(parsed.cells) if c[2] == "vertices")
    assert [c[2] for c in parsed.cells[missing + 1 : missing + 4]] == ["–", "7", "–"]


def test_qa_outcome_per_arm_is_coloured(page):
    text, parsed = page
    statuses = {c[2]: c[1] for c in parsed.cells if c[2] in ("pass", "fail", "minor")}
    assert statuses == {"pass": "pass", "fail": "fail", "minor": "minor"}
    assert "1 fail, 1 pass" in text and "1 minor" in text
    outcomes = {c[2]: c[1] for c in parsed.cells if "deviation" in c[2] or "protocol" in c[2]}
    assert outcomes == {"per protocol": "pass", "major deviation": "fail"}
    # Booleans (the "required" column) are shown as yes/no without a pass/fail colour.
    assert {c[1] for c in parsed.cells if c[2] in ("yes", "no")} == {""}
    assert '<span class="verdict fail">verdict: major deviation</span>' in text
    assert "1 fail, 1 na, 1 pass" in text


def test_text_is_escaped_and_version_shown(page):
    text, parsed = page
    assert "<phantom>" not in text and "&lt;phantom&gt;" in text
    assert "a &amp; b &lt;c&gt;" in text
    joined = "".join(parsed.text)
    assert "Lattice vs SCART vs CRT <phantom>" in joined
    assert f"lattice_plan {lattice_plan.__version__}" in joined
    assert "lattice_plan version" in joined and "synthetic data" in joined


def test_png_bytes_rejects_what_is_not_a_png(tmp_path):
    with pytest.raises(VisualizationError, match="not a PNG"):
        png_bytes(b"GIF89a....")
    with pytest.raises(VisualizationError, match="RGB or RGBA uint8"):
        png_bytes(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(InputFileError, match="cannot read image file"):
        png_bytes(tmp_path / "absent.png")
    with pytest.raises(VisualizationError, match="type int"):
        png_bytes(3)  # type: ignore[arg-type]


def test_report_without_qa_or_figures_still_lists_the_plans():
    text = render_report_html("t", {"Dmean (Gy)": {"SFRT": 5.0, "CRT": 8.0}}, reference_plan="CRT")
    assert text.index("CRT (reference)") < text.index("SFRT")
    assert "<img" not in text and "Protocol QA" not in text


def test_report_on_the_phantom_with_slices_and_3d(phantom, tmp_path):
    from lattice_plan.geometry.volume import Volume
    from lattice_plan.viz.scene3d import build_scene, render_scene
    from lattice_plan.viz.slices import orthogonal_slices

    c = phantom.structures["GTV"].centroid_lps_mm()
    r = np.linalg.norm(phantom.grid.voxel_centers_lps_mm() - c, axis=-1)
    dose = Volume(8.0 * (r < 45.0), phantom.grid, "Gy")
    scene = build_scene(phantom.structures, dose, reference_dose_gy=8.0, title="CRT")
    path = write_report(
        tmp_path / "report.html",
        "phantom",
        {"GTV Dmean (Gy)": {"CRT": 8.0, "SFRT": 6.5, "SCART": 9.1}},
        figures=[
            ("slices", orthogonal_slices(phantom.ct, phantom.structures, dose=dose)),
            ("3D", render_scene(scene, window_size=(400, 300))),
        ],
    )
    parsed = _Collect()
    parsed.feed(path.read_text(encoding="utf-8"))
    assert len(parsed.images) == 2
    for src in parsed.images:
        image = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image[..., :3].std() > 0.05
    headers = [text for tag, _, text in parsed.cells if tag == "th"]
    assert {"CRT (reference)", "SFRT", "SCART"} <= set(headers)
