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
import glob
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import InputFileError, LatticePlanError

log = logging.getLogger(__name__)

__all__ = [
    "STAGING_PATTERNS",
    "atomic_output_dir",
    "atomic_output_path",
    "json_safe",
    "prepare_output_dir",
    "read_two_column_csv",
    "refuse_foreign_dir",
    "refuse_inputs_inside",
    "remove_stale_siblings",
    "remove_stale_staging",
    "safe_file_part",
    "toml_plain",
]


# ------------------------------------------------------------------------------ atomic output
#: Hidden siblings :func:`atomic_output_dir` builds in and moves an earlier output to, and the
#: temporary files of :func:`atomic_output_path`; each name holds the writing process's id.
STAGING_PATTERNS = (".*.partial-*", ".*.old-*", ".*.part")
_STAGING_PID = re.compile(r"\.(?:(?:partial|old)-(\d+)-[a-z0-9_]+|(\d+)-[a-z0-9_]+\.part)$")
_LEGACY_STAGING_AGE_S = 86400.0  # a staging folder without a process id is stale after a day


def _staging_prefix(name: str, kind: str) -> str:
    """The prefix of a staging name for ``name``: hidden, with the kind and this process's id."""
    return f".{name}.{kind}{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _is_stale(path: Path) -> bool:
    """Whether the staging file or folder ``path`` was left by a process that no longer runs.

    A live process's staging (a concurrent run) is never stale; a folder whose name
    has no process id (older versions) is stale when untouched for a day.
    """
    match = _STAGING_PID.search(path.name)
    if match:
        return not _pid_alive(int(match.group(1) or match.group(2)))
    try:
        return path.is_dir() and time.time() - path.lstat().st_mtime > _LEGACY_STAGING_AGE_S
    except OSError:
        return False


def _remove_staging(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    log.info("removed %s, left by an interrupted run", path)


def remove_stale_siblings(target: str | os.PathLike[str]) -> None:
    """Remove the staging files and folders that interrupted writes of ``target`` left beside it
    (``.<name>.partial-*``, ``.<name>.old-*``, ``.<name>.*.part`` of processes no longer running)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    name = glob.escape(target.name)
    for pattern in (f".{name}.partial-*", f".{name}.old-*", f".{name}.*.part"):
        for path in target.parent.glob(pattern):
            if _is_stale(path):
                _remove_staging(path)


def refuse_inputs_inside(
    out_dir: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Refuse an output folder that is, or holds, one of ``inputs`` (files or folders).

    Writing the folder replaces it as a whole, so such an input would be deleted.
    Paths are compared resolved (symbolic links and ``..`` followed).
    """
    out = Path(out_dir).resolve()
    for item in inputs:
        path = Path(item).resolve()
        if path == out or out in path.parents:
            where = "is" if path == out else "is inside"
            raise InputFileError(
                f"input {str(item)!r} {where} the output folder {str(out_dir)!r}, which is "
                "replaced as a whole; write the output to another folder"
            )


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
    remove_stale_siblings(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_staging_prefix(target.name, ""), suffix=".part", dir=target.parent
    )
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


def refuse_foreign_dir(
    out_dir: str | os.PathLike[str], marker: str, inputs: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Refuse an output folder that is a file, a non-empty folder without the file ``marker``
    (one we did not write), or one that is or holds one of ``inputs``."""
    out = Path(out_dir)
    refuse_inputs_inside(out, inputs)
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
def atomic_output_dir(
    out_dir: str | os.PathLike[str], marker: str, inputs: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``out_dir``; swap it onto ``out_dir`` if the block succeeds.

    ``out_dir`` must be missing, empty or hold ``marker`` (an earlier output, which
    is replaced as a whole), and must not be or hold any of ``inputs`` (the files
    and folders the output is made from); write ``marker`` into the temporary
    folder last. On any exception the temporary folder is removed and ``out_dir``
    is untouched. Staging folders that killed runs left beside ``out_dir`` are
    removed first.
    """
    out = Path(out_dir)
    refuse_foreign_dir(out, marker, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out)
    tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(out.name, "partial-"), dir=out.parent))
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
        old = Path(
            tempfile.mkdtemp(prefix=_staging_prefix(out_dir.name, "old-"), dir=out_dir.parent)
        )
        old.rmdir()
        out_dir.rename(old)
        tmp_dir.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out_dir.exists():
            out_dir.rmdir()
        tmp_dir.rename(out_dir)


def remove_stale_staging(root: str | os.PathLike[str]) -> None:
    """Remove the staging files and folders (:data:`STAGING_PATTERNS`) that interrupted runs
    left under ``root``; those of running processes (concurrent runs) stay."""
    for pattern in STAGING_PATTERNS:
        for tmp in list(Path(root).rglob(pattern)):
            if tmp.exists() and _is_stale(tmp):
                _remove_staging(tmp)


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
