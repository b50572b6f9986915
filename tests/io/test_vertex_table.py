"""Vertex tables: CSV/JSON round trips, import into an evaluation, and refusal of bad files."""

import json

import numpy as np
import pytest

from lattice_plan.errors import InputFileError, SpecError
from lattice_plan.geometry import Grid, Structure, StructureKind
from lattice_plan.geometry.lattice import LatticeParameters, evaluate_vertices, place_vertices
from lattice_plan.io.vertex_table import (
    COLUMNS,
    VertexTable,
    read_vertex_table,
    write_vertex_table,
)


@pytest.fixture(scope="module")
def lattice():
    g = Grid.from_extent([-40] * 3, [40] * 3, 2.0)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    gtv = Structure("GTV", x**2 + y**2 + z**2 <= 34.0**2, g, StructureKind.GTV)
    return place_vertices(gtv, (), LatticeParameters(pattern="sc", spacing_mm=20.0))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_round_trip_is_exact(tmp_path, lattice, suffix):
    path = write_vertex_table(lattice, tmp_path / f"vertices{suffix}")
    table = read_vertex_table(path)
    np.testing.assert_array_equal(table.centers_lps_mm, lattice.centers_lps_mm)
    np.testing.assert_array_equal(table.diameters_mm, np.full(lattice.n_vertices, 15.0))
    np.testing.assert_array_equal(table.indices, np.arange(1, lattice.n_vertices + 1))
    assert [p.name for p in tmp_path.iterdir()] == [f"vertices{suffix}"]  # no temp file left


def test_csv_layout(tmp_path):
    table = VertexTable.from_arrays([[1.5, -2.0, 3.25]], 12.0)
    path = write_vertex_table(table, tmp_path / "v.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1] == "1,1.5,-2.0,3.25,12.0"


def test_json_layout(tmp_path):
    path = write_vertex_table(
        VertexTable.from_arrays([[1.5, -2.0, 3.25]], 12.0), tmp_path / "v.json"
    )
    doc = json.loads(path.read_text())
    assert doc["format"] == "lattice_plan.vertex_table" and doc["frame"] == "LPS"
    assert doc["vertices"] == [
        {"index": 1, "x_lps_mm": 1.5, "y_lps_mm": -2.0, "z_lps_mm": 3.25, "diameter_mm": 12.0}
    ]


def test_imported_table_evaluates_like_the_placement(tmp_path, lattice):
    """A table made elsewhere (here: written by hand) gives the same constraint distances."""
    path = tmp_path / "tps.csv"
    rows = ["# exported by another planning system", ",".join(COLUMNS)]
    rows += [
        f"{n + 1},{float(c[0])!r},{float(c[1])!r},{float(c[2])!r},15"
        for n, c in enumerate(lattice.centers_lps_mm)
    ]
    path.write_text("\n".join(rows) + "\n")
    table = read_vertex_table(path)
    again = evaluate_vertices(
        table.centers_lps_mm, table.diameters_mm, lattice.gtv, (), lattice.params
    )
    np.testing.assert_allclose(again.gtv_clearance_mm, lattice.gtv_clearance_mm, atol=1e-12)
    np.testing.assert_array_equal(again.vertices.mask, lattice.vertices.mask)
    assert again.violations() == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("index,x_lps_mm,y_lps_mm,diameter_mm\n1,0,0,15\n", "lacks z_lps_mm"),
        (
            "index,x_lps_mm,y_lps_mm,z_lps_mm,diameter_mm\n1,0,abc,0,15\n",
            "line 2, column 'y_lps_mm'",
        ),
        (
            "index,x_lps_mm,y_lps_mm,z_lps_mm,diameter_mm\n1,0,0,0,-15\n",
            "diameters must be positive",
        ),
        ("index,x_lps_mm,y_lps_mm,z_lps_mm,diameter_mm\n1,0,0,0,15\n1,9,9,9,15\n", "unique"),
        ("index,x_lps_mm,y_lps_mm,z_lps_mm,diameter_mm\n1.5,0,0,0,15\n", "whole numbers"),
        ("index,x_lps_mm,y_lps_mm,z_lps_mm,diameter_mm\n1,nan,0,0,15\n", "finite"),
        ("index,x_lps_mm,y_lps_mm,z_lps_mm,diameter_mm\n", "no vertices"),
    ],
)
def test_bad_csv_is_refused(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SpecError, match=words) as info:
        read_vertex_table(path)
    assert "bad.csv" in str(info.value)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"format": "other", "version": 1, "vertices": []}, "'format'"),
        ({"format": "lattice_plan.vertex_table", "version": 2, "vertices": []}, "'version'"),
        (
            {"format": "lattice_plan.vertex_table", "version": 1, "vertices": [{"index": 1}]},
            "missing",
        ),
        (
            {"format": "lattice_plan.vertex_table", "version": 1, "unit": "cm", "vertices": []},
            "'mm'",
        ),
    ],
)
def test_bad_json_is_refused(tmp_path, doc, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=words):
        read_vertex_table(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_vertex_table(tmp_path / "nope.csv")
    with pytest.raises(InputFileError, match="does not exist"):
        write_vertex_table(VertexTable.from_arrays([[0, 0, 0]], 15.0), tmp_path / "no" / "v.csv")
