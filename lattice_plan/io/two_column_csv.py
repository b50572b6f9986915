"""Two-column numeric CSV files (scans, calibration tables): one reader, one set of messages."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import InputFileError, LatticePlanError


def read_two_column_csv(
    path: str | Path, what: str, columns: str, error: type[LatticePlanError]
) -> NDArray[np.float64]:
    """Rows of two numbers from a CSV as an (n, 2) array; a non-numeric first row is a header.

    ``what`` names the file's role and ``columns`` its two columns in messages
    (e.g. "HU table", "(HU, RED)"); bad rows raise ``error`` naming the line.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{what} file {p} does not exist")
    rows: list[tuple[float, float]] = []
    with p.open(newline="") as fh:
        for n, row in enumerate(csv.reader(fh)):
            if not row or not "".join(row).strip():
                continue
            try:
                rows.append((float(row[0]), float(row[1])))
            except (ValueError, IndexError):
                if n == 0:
                    continue
                raise error(
                    f"{what} {p}: line {n + 1} is not two numbers {columns}: {row!r}"
                ) from None
    if not rows:
        raise error(f"{what} {p}: no data rows; expected lines of two numbers {columns}")
    return np.array(rows)
