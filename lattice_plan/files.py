"""File utilities that are not DICOM, usable by every layer.

Atomic writes and output folders, two-column numeric CSV files (scans,
calibration tables) and JSON/TOML-safe values. This module imports nothing
from the package except :mod:`lattice_plan.errors`.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import InputFileError, LatticePlanError

__all__ = [
    "atomic_output_path",
    "json_safe",
    "prepare_output_dir",
    "read_two_column_csv",
    "safe_file_part",
    "toml_plain",
]


# ------------------------------------------------------------------------------ atomic output
def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder (and parents) if missing; refuse a path that is a file."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputFileError(
            f"output path {str(out)!r} exists and is not a folder; choose a folder path"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"cannot create output folder {str(out)!r}: {exc.strerror}") from exc
    return out


@contextlib.contextmanager
def atomic_output_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds.

    On any exception the temporary file is removed and ``target`` is untouched,
    so a crash never leaves a half-written output.
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def safe_file_part(name: str, fallback: str) -> str:
    """``name`` as a portable file-name part: runs of other characters than letters, digits,
    ``_ . -`` become ``_``, leading and trailing dots and underscores go; ``fallback`` if
    nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or fallback


# ------------------------------------------------------------------------------ two-column CSV
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


# ------------------------------------------------------------------------------ JSON/TOML values
def toml_plain(value: Any) -> Any:
    """A dataclass field value as TOML data (enums by value, tuples as lists)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [toml_plain(v) for v in value]
    return value


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None, numpy scalars as Python numbers (JSON-safe).

    Mappings get string keys, tuples become lists and paths strings, recursively.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
