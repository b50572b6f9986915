"""Atomic file output: write to a temporary name in the target folder, rename when complete."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lattice_plan.errors import InputFileError


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
