"""Atomic file output: write to a temporary name in the target folder, rename when complete.

Files: :func:`atomic_output_path`. Folders: :func:`atomic_output_dir` builds a
folder in a hidden sibling (``.NAME.partial-*``) and swaps it onto the target
when complete; :func:`remove_stale_staging` clears what an interrupted run left.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lattice_plan.errors import InputFileError

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
