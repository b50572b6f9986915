"""Beam fluence maps as "optimal fluence" text files, the layout planning systems import.

Leaf sequencing is a later step: an optimised beam travels to the planning
system as its fluence, which the planning system's own leaf sequencer turns
into MLC motion (Eclipse imports this layout as a field's optimal fluence).

Layout (ASCII, one key and value per line, separated by a tab, then the values)::

    # <free comment line>
    optimalfluence
    sizex	<nx: number of columns>
    sizey	<ny: number of rows>
    spacingx	<column pitch at the isocentre plane, mm>
    spacingy	<row pitch at the isocentre plane, mm>
    originx	<X_b of the centre of the first column, mm>
    originy	<Y_b of the centre of the first row, mm>
    values
    <ny lines of nx tab-separated relative fluence values>

Coordinates are in the beam-limiting-device frame at the isocentre plane (beam's
eye view, collimator rotation included). The first value line is the row at the
largest Y_b (the top of the beam's-eye view, ``originy``) and rows go down in
Y_b; within a line, columns go up in X_b from ``originx``. A
:class:`~lattice_plan.dose.beam.FluenceMap` stores rows upwards in Y_b, so the
rows are flipped on writing and reading.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from lattice_plan.dose.beam import FluenceMap
from lattice_plan.errors import DicomError, InputFileError
from lattice_plan.files import atomic_output_path

log = logging.getLogger(__name__)

_HEADER_KEYS = ("sizex", "sizey", "spacingx", "spacingy", "originx", "originy")


def write_optimal_fluence(
    fluence: FluenceMap, path: str | os.PathLike[str], comment: str = ""
) -> Path:
    """Write ``fluence`` as an optimal-fluence text file (layout in the module docstring)."""
    target = Path(path)
    ny, nx = fluence.shape
    top_y = fluence.origin_bld_mm[1] + (ny - 1) * fluence.beamlet_mm
    lines = [
        f"# {comment}".rstrip() if comment else "# lattice_plan optimal fluence",
        "optimalfluence",
        f"sizex\t{nx}",
        f"sizey\t{ny}",
        f"spacingx\t{fluence.beamlet_mm:.6g}",
        f"spacingy\t{fluence.beamlet_mm:.6g}",
        f"originx\t{fluence.origin_bld_mm[0]:.6g}",
        f"originy\t{top_y:.6g}",
        "values",
    ]
    for row in np.flipud(fluence.values):
        lines.append("\t".join(f"{v:.6g}" for v in row))
    with atomic_output_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    log.debug("wrote optimal fluence %s (%d x %d)", target, nx, ny)
    return target


def read_optimal_fluence(path: str | os.PathLike[str]) -> FluenceMap:
    """Read an optimal-fluence text file into a :class:`FluenceMap` (square beamlets only)."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"fluence file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise DicomError(f"{str(p)!r} is not an optimal-fluence text file (not ASCII)") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines or lines[0].lower() != "optimalfluence":
        raise DicomError(f"{str(p)!r}: first line must be 'optimalfluence'")
    header: dict[str, float] = {}
    n = 1
    while n < len(lines) and lines[n].lower() != "values":
        parts = lines[n].split()
        if len(parts) != 2:
            raise DicomError(f"{str(p)!r}: header line {lines[n]!r} is not 'key<TAB>value'")
        try:
            header[parts[0].lower()] = float(parts[1])
        except ValueError:
            raise DicomError(f"{str(p)!r}: {parts[0]} value {parts[1]!r} is not a number") from None
        n += 1
    missing = [k for k in _HEADER_KEYS if k not in header]
    if missing or n == len(lines):
        raise DicomError(
            f"{str(p)!r}: missing {', '.join(missing) or 'the values line'}; see the layout in "
            "lattice_plan.io.fluence_text"
        )
    nx, ny = int(header["sizex"]), int(header["sizey"])
    try:
        rows = [[float(v) for v in ln.split()] for ln in lines[n + 1 :]]
    except ValueError:
        raise DicomError(f"{str(p)!r}: a fluence value is not a number") from None
    if len(rows) != ny or any(len(r) != nx for r in rows):
        raise DicomError(f"{str(p)!r}: expected {ny} rows of {nx} values")
    if abs(header["spacingx"] - header["spacingy"]) > 1e-9:
        raise DicomError(
            f"{str(p)!r}: spacingx {header['spacingx']} differs from spacingy "
            f"{header['spacingy']}; only square beamlets are supported"
        )
    beamlet = header["spacingx"]
    values = np.flipud(np.array(rows, dtype=float))
    origin_y = header["originy"] - (ny - 1) * beamlet
    return FluenceMap(values, beamlet, (header["originx"], origin_y))


__all__ = ["read_optimal_fluence", "write_optimal_fluence"]
