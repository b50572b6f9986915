"""The shared two-column CSV reader (beam scans, HU tables): header, blank lines, bad rows."""

import numpy as np
import pytest

from lattice_plan.dose.hu import HUDensityTable
from lattice_plan.errors import DoseError, InputFileError
from lattice_plan.io.two_column_csv import read_two_column_csv


def test_header_and_blank_lines_are_skipped(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("HU,RED\n-1000,0.0\n\n0,1.0\n1000,1.6\n")
    arr = read_two_column_csv(f, "HU table", "(HU, RED)", DoseError)
    np.testing.assert_array_equal(arr, [[-1000, 0.0], [0, 1.0], [1000, 1.6]])
    table = HUDensityTable.from_csv(f)
    assert table.density(np.array([500.0]))[0] == pytest.approx(1.3)  # linear between rows


@pytest.mark.parametrize(
    ("text", "match"),
    [("0,1\nwater,1.0\n", "line 2 is not two numbers"), ("HU,RED\n", "no data rows")],
)
def test_bad_files_name_the_line(tmp_path, text, match):
    f = tmp_path / "t.csv"
    f.write_text(text)
    with pytest.raises(DoseError, match=match):
        HUDensityTable.from_csv(f)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="HU table file"):
        HUDensityTable.from_csv(tmp_path / "none.csv")
