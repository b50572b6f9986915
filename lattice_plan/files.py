"""File utilities that are not DICOM, usable by every layer.

Atomic writes of files and folders (a folder is built in a hidden sibling and
swapped in when complete), output folders, two-column numeric CSV files (scans,
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
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import InputFileError, LatticePlanError

__all__ = [
    "STAGING_PATTERNS",
    "atomic_output_dir",
    "atomic_output_path",
    "json_safe",
    "prepare_output_dir",
    "read_two_column_csv",
    "refuse_foreign_dir",
    "remove_stale_staging",
    "safe_file_part",
    "toml_plain",
]


# ------------------------------------------------------------------------------ atomic output
#: Hidden siblings :func:`atomic_output_dir` builds in and moves an earlier output to.
STAGING_PATTERNS = (".*.partial-*", ".*.old-*")


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


def refuse_foreign_dir(out_dir: str | os.PathLike[str], marker: str) -> None:
    """Refuse an output folder that is a file, or a non-empty folder without the file ``marker``
    (one we did not write)."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise InputFileError(
                f"output path {str(out)!r} exists and is not a folder; choose a folder path"
            )
        if any(out.iterdir()) and not (out / marker).is_file():
            raise InputFileError(
                f"output folder {str(out)!r} is not empty and holds no earlier lattice_plan "
                "output; choose a new or empty folder"
            )


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | os.PathLike[str], marker: str) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``out_dir``; swap it onto ``out_dir`` if the block succeeds.

    ``out_dir`` must be missing, empty or hold ``marker`` (an earlier output, which
    is replaced as a whole); write ``marker`` into the temporary folder last. On any
    exception the temporary folder is removed and ``out_dir`` is untouched.
    """
    out = Path(out_dir)
    refuse_foreign_dir(out, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output folder is an ordinary one
    try:
        yield tmp
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp_dir: Path, out_dir: Path) -> None:
    """Move the completed ``tmp_dir`` onto ``out_dir`` (an earlier output there is replaced)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        out_dir.rename(old)
        tmp_dir.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out_dir.exists():
            out_dir.rmdir()
        tmp_dir.rename(out_dir)


def remove_stale_staging(root: str | os.PathLike[str]) -> None:
    """Remove the staging folders (:data:`STAGING_PATTERNS`) that interrupted runs left under ``root``."""
    for pattern in STAGING_PATTERNS:
        for tmp in Path(root).rglob(pattern):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)


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
