"""Measured beam data for commissioning: water-tank scans (PTW mcc, two-column CSV) and output factors."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import DoseError, InputFileError
from lattice_plan.files import read_two_column_csv

SCAN_KINDS = ("pdd", "crossplane", "inplane")


@dataclass(frozen=True, eq=False)
class Scan:
    """One measured water-tank scan, values relative (any scale).

    kind: "pdd" (positions are depths, mm) or "crossplane"/"inplane" profiles
    (positions in mm from the beam axis at ``depth_mm``).
    field_mm: (crossplane, inplane) field size at the isocentre, mm.
    """

    kind: str
    ssd_mm: float
    field_mm: tuple[float, float]
    positions_mm: NDArray[np.float64]
    values: NDArray[np.float64]
    depth_mm: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCAN_KINDS:
            raise DoseError(f"scan kind must be one of {SCAN_KINDS}, got {self.kind!r}")
        pos = np.asarray(self.positions_mm, dtype=float)
        val = np.asarray(self.values, dtype=float)
        if pos.ndim != 1 or pos.shape != val.shape or len(pos) < 3:
            raise DoseError(
                f"scan {self.source or self.kind}: positions and values must be 1D of equal length >= 3"
            )
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(val))):
            raise DoseError(f"scan {self.source or self.kind}: non-finite positions or values")
        order = np.argsort(pos)
        object.__setattr__(self, "positions_mm", pos[order])
        object.__setattr__(self, "values", val[order])
        object.__setattr__(self, "field_mm", (float(self.field_mm[0]), float(self.field_mm[1])))

    def field_centre_mm(self) -> float:
        """Profile: midpoint of the two 50 % points (mm); 0 for a PDD."""
        if self.kind == "pdd":
            return 0.0
        x, y = self.positions_mm, self.normalised()
        edges = []
        for side in (-1, 1):
            idx = np.flatnonzero(x * side > 0)
            idx = idx if side > 0 else idx[::-1]
            below = np.flatnonzero(y[idx] < 0.5)
            if len(below) == 0 or below[0] == 0:
                raise DoseError(
                    f"scan {self.source}: the profile does not fall below 50 % on both sides"
                )
            a, b = idx[below[0] - 1], idx[below[0]]
            edges.append(x[a] + (0.5 - y[a]) * (x[b] - x[a]) / (y[b] - y[a]))
        return 0.5 * (edges[0] + edges[1])

    def centred(self) -> Scan:
        """Profile shifted so its 50 % points are symmetric about 0 (removes tank set-up offset)."""
        if self.kind == "pdd":
            return self
        c = self.field_centre_mm()
        return replace(self, positions_mm=self.positions_mm - c)

    def normalised(self) -> NDArray[np.float64]:
        """PDD: relative to its maximum; profile: relative to the value on the axis (interpolated)."""
        if self.kind == "pdd":
            return self.values / self.values.max()
        return self.values / float(np.interp(0.0, self.positions_mm, self.values))


def _float(header: dict[str, str], key: str, path: Path, default: float | None = None) -> float:
    if key not in header:
        if default is not None:
            return default
        raise DoseError(f"{path}: scan lacks {key}= in its header")
    try:
        return float(header[key])
    except ValueError:
        raise DoseError(f"{path}: {key}={header[key]!r} is not a number") from None


def read_mcc(path: str | Path) -> list[Scan]:
    """Scans in a PTW mcc (CC-Export) file: PDDs and inplane/crossplane profiles.

    Values are the field detector divided by the reference detector when the
    file has a reference column (removing output drift), else the field detector.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"scan file {p} does not exist")
    lines = p.read_text(errors="replace").splitlines()
    scans: list[Scan] = []
    header: dict[str, str] = {}
    rows: list[list[float]] = []
    in_scan = in_data = False
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line.startswith("BEGIN_SCAN") and not line.startswith("BEGIN_SCAN_DATA"):
            in_scan, header, rows = True, {}, []
        elif line.startswith("END_SCAN") and not line.startswith("END_SCAN_DATA"):
            if in_scan:
                scans.append(_mcc_scan(header, rows, p))
            in_scan = False
        elif line == "BEGIN_DATA":
            in_data = True
        elif line == "END_DATA":
            in_data = False
        elif in_data:
            try:
                rows.append([float(t) for t in line.split()])
            except ValueError:
                raise DoseError(f"{p} line {n}: data row is not numbers: {line!r}") from None
        elif in_scan and "=" in line:
            key, _, val = line.partition("=")
            header[key.strip()] = val.strip()
    if not scans:
        raise DoseError(f"{p}: no BEGIN_SCAN ... END_SCAN block found; is it a PTW mcc file?")
    return scans


def _mcc_scan(header: dict[str, str], rows: list[list[float]], path: Path) -> Scan:
    curve = header.get("SCAN_CURVETYPE", "")
    kinds = {"PDD": "pdd", "CROSSPLANE_PROFILE": "crossplane", "INPLANE_PROFILE": "inplane"}
    if curve not in kinds:
        raise DoseError(
            f"{path}: scan type {curve!r} is not supported; use PDD, CROSSPLANE_PROFILE or INPLANE_PROFILE"
        )
    if not rows or min(len(r) for r in rows) < 2:
        raise DoseError(f"{path}: a {curve} scan has no data rows")
    data = np.array([r[:3] if len(r) >= 3 else [*r[:2], 1.0] for r in rows])
    ref = data[:, 2]
    values = data[:, 1] / ref if np.all(ref > 0) else data[:, 1]
    return Scan(
        kind=kinds[curve],
        ssd_mm=_float(header, "SSD", path),
        field_mm=(_float(header, "FIELD_CROSSPLANE", path), _float(header, "FIELD_INPLANE", path)),
        positions_mm=data[:, 0],
        values=values,
        depth_mm=_float(header, "SCAN_DEPTH", path, 0.0),
        source=f"{path.name}:{curve}",
    )


def read_csv(
    path: str | Path,
    kind: str,
    ssd_mm: float,
    field_mm: tuple[float, float],
    depth_mm: float = 0.0,
) -> Scan:
    """A scan from a CSV of (position or depth mm, value); a non-numeric first row is a header."""
    p = Path(path)
    arr = read_two_column_csv(p, "scan", "(position or depth mm, value)", DoseError)
    return Scan(kind, ssd_mm, field_mm, arr[:, 0], arr[:, 1], depth_mm, source=p.name)


# IROC's output-factor set-up (SAD: SSD 900 mm, 100 mm depth), the default for measured ones
OUTPUT_FACTOR_SSD_MM = 900.0
OUTPUT_FACTOR_DEPTH_MM = 100.0


@dataclass(frozen=True)
class OutputFactor:
    """A measured output factor: the central-axis dose of a field at ``depth_mm`` (SSD
    ``ssd_mm``) relative to that of 10 x 10 cm in the same set-up; field in mm at the isocentre."""

    field_mm: tuple[float, float]
    value: float
    ssd_mm: float = OUTPUT_FACTOR_SSD_MM
    depth_mm: float = OUTPUT_FACTOR_DEPTH_MM

    def __post_init__(self) -> None:
        try:
            fx, fy = (float(f) for f in self.field_mm)
            numbers = [float(v) for v in (fx, fy, self.value, self.ssd_mm, self.depth_mm)]
        except (TypeError, ValueError):
            raise DoseError(
                f"output factor {self.field_mm!r}: {self.value!r}: field sizes, value, SSD and "
                "depth must be numbers"
            ) from None
        object.__setattr__(self, "field_mm", (fx, fy))
        if not all(math.isfinite(v) for v in numbers):
            _, _, value, ssd, depth = numbers
            raise DoseError(
                f"output factor of the {fx:g} x {fy:g} mm field: value {value:g}, SSD {ssd:g} mm, "
                f"depth {depth:g} mm; each must be a finite number"
            )
        if not (5.0 <= fx <= 400.0 and 5.0 <= fy <= 400.0):
            raise DoseError(f"output factor field {self.field_mm} mm: sides must lie in 5-400 mm")
        if not 0.2 <= self.value <= 1.5:
            raise DoseError(
                f"output factor {self.value} for {fx:g} x {fy:g} mm is outside 0.2-1.5; output "
                "factors are relative to 10 x 10 cm (1.0), not in cGy/MU"
            )
        if not (500.0 <= self.ssd_mm <= 1500.0 and 10.0 <= self.depth_mm <= 300.0):
            raise DoseError(
                f"output factor set-up SSD {self.ssd_mm} mm, depth {self.depth_mm} mm: use an "
                "SSD of 500-1500 mm and a depth of 10-300 mm"
            )


def read_output_factors(
    path: str | Path, ssd_mm: float = OUTPUT_FACTOR_SSD_MM, depth_mm: float = OUTPUT_FACTOR_DEPTH_MM
) -> list[OutputFactor]:
    """Output factors of square fields from a CSV of (side mm at the isocentre, output factor).

    All rows share one set-up (SSD and depth, mm; IROC's is SSD 900, depth 100). A row for the
    10 x 10 cm reference, if present, must read 1.
    """
    p = Path(path)
    rows = read_two_column_csv(p, "output factor", "(side mm, output factor)", DoseError)
    out = [OutputFactor((side, side), value, ssd_mm, depth_mm) for side, value in rows]
    for of in out:
        if of.field_mm == (100.0, 100.0) and abs(of.value - 1.0) > 0.005:
            raise DoseError(
                f"output factors {p}: the 10 x 10 cm row reads {of.value}, not 1; normalise the "
                "output factors to 10 x 10 cm"
            )
    sides = [of.field_mm for of in out]
    twice = sorted({f[0] for f in sides if sides.count(f) > 1})
    if twice:
        raise DoseError(
            f"output factors {p}: the field side(s) {', '.join(f'{v:g}' for v in twice)} mm "
            "appear twice; keep one value per field (average repeated measurements)"
        )
    out = [of for of in out if of.field_mm != (100.0, 100.0)]
    if not out:
        raise DoseError(f"output factors {p}: only the 10 x 10 cm reference; add other fields")
    return out
