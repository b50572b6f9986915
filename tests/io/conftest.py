"""Fixtures of the DICOM tests: dciodvfy, and the built-in phantom exported as a CT series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lattice_plan.io.ct import write_ct_series


def _dciodvfy_errors(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail(
            "dciodvfy is not installed; run `make dicom3tools` (Debian package dicom3tools)"
        )
    ds = pydicom.dcmread(path)
    if int(ds.get("BitsAllocated", 0) or 0) == 32:
        # dicom3tools 1.00~20220618 aborts (assertion in attrothr.cc) on any 32-bit pixel data,
        # the planning system's own RTDOSE included. Validate a copy that differs only in the
        # pixel cell size (16 bits, half the frames' bytes); the 32-bit attributes themselves are
        # checked by the caller against the RT Dose module (PS3.3 C.8.8.3).
        proxy = path.with_name(path.stem + ".dciodvfy16.dcm")
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelData = np.zeros(len(ds.PixelData) // 4, dtype=np.uint16).tobytes()
        ds.save_as(proxy, enforce_file_format=True)
        target = proxy
    else:
        target = path
    try:
        run = subprocess.run([exe, str(target)], capture_output=True, text=True, timeout=60)
    finally:
        if target != path:
            target.unlink()
    output = run.stdout + run.stderr
    assert "Assertion" not in output, f"dciodvfy aborted on {path}: {output}"
    return [ln for ln in output.splitlines() if ln.startswith("Error")]


@pytest.fixture(scope="session")
def dciodvfy_errors():
    """A function: path -> list of dciodvfy 'Error' lines (empty when the object is valid)."""
    return _dciodvfy_errors


@pytest.fixture(scope="session")
def phantom_ct(phantom, tmp_path_factory):
    """The built-in phantom written once as a CT series: (folder, CTSeries as written)."""
    folder = tmp_path_factory.mktemp("phantom_ct") / "CT"
    series = write_ct_series(phantom, folder)
    return folder, series
