"""Vertex tables: lattice vertex centres (LPS mm) and diameters as CSV or JSON.

CSV: a header ``index,x_lps_mm,y_lps_mm,z_lps_mm,diameter_mm`` then one row per
vertex (``#`` lines are comments). JSON: ``{"format": "lattice_plan.vertex_table",
"version": 1, "frame": "LPS", "unit": "mm", "vertices": [{"index": 1,
"x_lps_mm": ..., "y_lps_mm": ..., "z_lps_mm": ..., "diameter_mm": ...}, ...]}``.
Indices run from 1. Files are written atomically; reading validates every field
and names the file, row and column of a bad value.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import InputFileError, SpecError
from lattice_plan.files import atomic_output_path
from lattice_plan.geometry.lattice import LatticeResult

COLUMNS: tuple[str, ...] = ("index", "x_lps_mm", "y_lps_mm", "z_lps_mm", "diameter_mm")
JSON_FORMAT = "lattice_plan.vertex_table"
JSON_VERSION = 1


@dataclass(frozen=True, eq=False)
class VertexTable:
    """Vertex centres (n, 3 LPS mm), diameters (n,) mm and their 1-based indices (n,)."""

    centers_lps_mm: NDArray[np.float64]
    diameters_mm: NDArray[np.float64]
    indices: NDArray[np.int64]

    def __post_init__(self) -> None:
        c = np.array(self.centers_lps_mm, dtype=float).reshape(-1, 3)
        d = np.array(self.diameters_mm, dtype=float).reshape(-1)
        idx = np.array(self.indices, dtype=np.int64).reshape(-1)
        if not len(c) == len(d) == len(idx):
            raise SpecError(
                f"vertex table: {len(c)} centres, {len(d)} diameters and {len(idx)} indices differ"
            )
        if not np.all(np.isfinite(c)):
            raise SpecError("vertex table: centres must be finite numbers (mm)")
        if np.any(~np.isfinite(d)) or np.any(d <= 0):
            raise SpecError("vertex table: diameters must be positive numbers (mm)")
        if len(set(idx.tolist())) != len(idx):
            raise SpecError("vertex table: indices must be unique")
        for a in (c, d, idx):
            a.setflags(write=False)
        object.__setattr__(self, "centers_lps_mm", c)
        object.__setattr__(self, "diameters_mm", d)
        object.__setattr__(self, "indices", idx)

    @classmethod
    def from_arrays(cls, centers_lps_mm: ArrayLike, diameters_mm: ArrayLike | float) -> VertexTable:
        c = np.asarray(centers_lps_mm, dtype=float).reshape(-1, 3)
        d = np.broadcast_to(np.asarray(diameters_mm, dtype=float), (len(c),))
        return cls(c, d, np.arange(1, len(c) + 1))

    @classmethod
    def from_lattice(cls, result: LatticeResult) -> VertexTable:
        """The table of a placement (indices in the result's order)."""
        return cls.from_arrays(result.centers_lps_mm, 2.0 * result.radii_mm)

    def __len__(self) -> int:
        return len(self.indices)


def write_vertex_table(table: VertexTable | LatticeResult, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path``: JSON for a ``.json`` suffix, CSV otherwise. Returns the path."""
    if isinstance(table, LatticeResult):
        table = VertexTable.from_lattice(table)
    target = Path(path)
    if not target.parent.is_dir():
        raise InputFileError(f"folder {str(target.parent)!r} for the vertex table does not exist")
    if target.suffix.lower() == ".json":
        text = json.dumps(_to_json(table), indent=2) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for n, c, d in zip(table.indices, table.centers_lps_mm, table.diameters_mm, strict=True):
            writer.writerow([int(n), *(repr(float(v)) for v in c), repr(float(d))])
        text = buf.getvalue()
    with atomic_output_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def _to_json(table: VertexTable) -> dict:
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "frame": "LPS",
        "unit": "mm",
        "vertices": [
            {
                "index": int(n),
                "x_lps_mm": float(c[0]),
                "y_lps_mm": float(c[1]),
                "z_lps_mm": float(c[2]),
                "diameter_mm": float(d),
            }
            for n, c, d in zip(table.indices, table.centers_lps_mm, table.diameters_mm, strict=True)
        ],
    }


def read_vertex_table(path: str | os.PathLike[str]) -> VertexTable:
    """Read a vertex table written by :func:`write_vertex_table` or by hand (CSV or JSON)."""
    src = Path(path)
    if not src.is_file():
        raise InputFileError(f"vertex table {str(src)!r} does not exist or is not a file")
    try:
        text = src.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read vertex table {str(src)!r}: {exc}") from exc
    rows = _json_rows(text, src) if src.suffix.lower() == ".json" else _csv_rows(text, src)
    if not rows:
        raise SpecError(f"{src}: the vertex table holds no vertices")
    values = np.array([[r[c] for c in COLUMNS] for r in rows], dtype=float)
    idx = values[:, 0]
    if np.any(idx != np.round(idx)) or np.any(idx < 1):
        raise SpecError(f"{src}: column 'index' must hold positive whole numbers")
    try:
        return VertexTable(values[:, 1:4], values[:, 4], idx.astype(np.int64))
    except SpecError as exc:
        raise SpecError(f"{src}: {exc}") from None


def _number(value: object, where: str, column: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SpecError(f"{where}, column {column!r}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise SpecError(f"{where}, column {column!r}: expected a finite number, got {value!r}")
    return v


def _csv_rows(text: str, src: Path) -> list[dict[str, float]]:
    kept = [
        (no, ln)
        for no, ln in enumerate(text.splitlines(), start=1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    reader = csv.DictReader([ln for _, ln in kept])
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise SpecError(
            f"{src}: the CSV header lacks {', '.join(missing)}; expected columns "
            f"{', '.join(COLUMNS)}"
        )
    out = []
    for n, row in enumerate(reader, start=1):
        clean = {str(k).strip(): v for k, v in row.items() if k is not None}
        out.append({c: _number(clean[c], f"{src} line {kept[n][0]}", c) for c in COLUMNS})
    return out


def _json_rows(text: str, src: Path) -> list[dict[str, float]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{src}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise SpecError(f"{src}: key 'format' must be {JSON_FORMAT!r}")
    if doc.get("version") != JSON_VERSION:
        raise SpecError(f"{src}: key 'version' must be {JSON_VERSION}, got {doc.get('version')!r}")
    if doc.get("frame", "LPS") != "LPS" or doc.get("unit", "mm") != "mm":
        raise SpecError(f"{src}: keys 'frame' and 'unit' must be 'LPS' and 'mm'")
    verts = doc.get("vertices")
    if not isinstance(verts, list):
        raise SpecError(f"{src}: key 'vertices' must be a list of vertex objects")
    out = []
    for n, v in enumerate(verts):
        where = f"{src} vertices[{n}]"
        if not isinstance(v, dict):
            raise SpecError(f"{where}: expected an object with keys {', '.join(COLUMNS)}")
        missing = [c for c in COLUMNS if c not in v]
        if missing:
            raise SpecError(f"{where}: missing key(s) {', '.join(missing)}")
        out.append({c: _number(v[c], where, c) for c in COLUMNS})
    return out
