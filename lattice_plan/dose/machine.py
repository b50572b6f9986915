"""Treatment machine delivery description: MLC geometry, transmissions, leaf-end and
tongue-and-groove model, speed and dose-rate limits.

The commissioned beam model (:mod:`lattice_plan.dose.model`) gives the dose per
MU of an aperture; a :class:`Machine` says which apertures can be delivered and
how an MLC modulates the fluence (DESIGN.md, "Delivery physics"). Machines are
TOML files (``lattice_plan/data/machines/*.toml`` ship ``varian-120`` and
``mlc-80``)::

    name = "varian-120"
    mlc_device = "MLCX"
    [mlc]
    bands = [{ from_mm = -200.0, to_mm = -100.0, width_mm = 10.0 }, ...]
    # or: leaf_edges_mm = [-200.0, -190.0, ...]
    [delivery]
    leaf_transmission = 0.015
    jaw_transmission = 0.001
    dosimetric_leaf_gap_mm = 1.6
    tongue_groove_mm = 1.0
    min_leaf_gap_mm = 0.5
    max_leaf_speed_mm_s = 25.0
    max_gantry_speed_deg_s = 6.0
    max_dose_rate_mu_min = 600.0
    jaw_limit_mm = 200.0          # optional, default 200
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, NoReturn

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import DoseError, SpecError
from lattice_plan.tables import parse_toml_text, read_toml_file

DEFAULT_MACHINE = "varian-120"

_DELIVERY_KEYS: dict[str, tuple[float, float]] = {
    # key: (lowest allowed, highest allowed)
    "leaf_transmission": (0.0, 0.2),
    "jaw_transmission": (0.0, 0.2),
    "dosimetric_leaf_gap_mm": (0.0, 5.0),
    "tongue_groove_mm": (0.0, 5.0),
    "min_leaf_gap_mm": (0.0, 20.0),
    "max_leaf_speed_mm_s": (1e-3, 1000.0),
    "max_gantry_speed_deg_s": (1e-3, 60.0),
    "max_dose_rate_mu_min": (1.0, 10000.0),
    "jaw_limit_mm": (10.0, 400.0),
}


@dataclass(frozen=True, eq=False)
class MLCGeometry:
    """Leaf-pair boundaries (n_pairs + 1,) ascending along Y_b, mm at the isocentre."""

    leaf_edges_mm: NDArray[np.float64]

    def __post_init__(self) -> None:
        e = np.array(self.leaf_edges_mm, dtype=float)
        if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise DoseError(
                "MLC leaf_edges_mm must be a strictly ascending 1D array of at least two finite "
                f"boundaries (mm at the isocentre), got {np.asarray(self.leaf_edges_mm).tolist()}"
            )
        e.setflags(write=False)
        object.__setattr__(self, "leaf_edges_mm", e)

    @property
    def n_pairs(self) -> int:
        return len(self.leaf_edges_mm) - 1

    @property
    def leaf_widths_mm(self) -> NDArray[np.float64]:
        return np.diff(self.leaf_edges_mm)

    @property
    def centers_mm(self) -> NDArray[np.float64]:
        e = self.leaf_edges_mm
        return 0.5 * (e[:-1] + e[1:])


@dataclass(frozen=True, eq=False)
class Machine:
    """A linac's delivery description (transmissions are fractions; lengths mm at the isocentre).

    The effective tip of a rounded leaf end lies ``dosimetric_leaf_gap_mm / 2``
    beyond its nominal position (the gap opens by the DLG); ``tongue_groove_mm``
    is the width of the strip at a leaf-pair boundary that is open only when
    both adjacent pairs are open.
    """

    name: str
    mlc: MLCGeometry
    mlc_device: str
    leaf_transmission: float
    jaw_transmission: float
    dosimetric_leaf_gap_mm: float
    tongue_groove_mm: float
    min_leaf_gap_mm: float
    max_leaf_speed_mm_s: float
    max_gantry_speed_deg_s: float
    max_dose_rate_mu_min: float
    jaw_limit_mm: float = 200.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DoseError(f"machine name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.mlc, MLCGeometry):
            raise DoseError(f"machine {self.name!r}: mlc must be an MLCGeometry")
        if self.mlc_device != "MLCX":
            raise DoseError(
                f"machine {self.name!r}: MLC device {self.mlc_device!r} is not supported; "
                "only MLCX (leaves travelling along X_b) is"
            )
        for key, (lo, hi) in _DELIVERY_KEYS.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DoseError(f"machine {self.name!r}: {key} must be a finite number, got {v!r}")
            if not lo <= v <= hi:
                raise DoseError(f"machine {self.name!r}: {key} = {v} lies outside [{lo}, {hi}]")
            object.__setattr__(self, key, float(v))
        edges = self.mlc.leaf_edges_mm
        if edges[0] < -self.jaw_limit_mm - 1e-9 or edges[-1] > self.jaw_limit_mm + 1e-9:
            raise DoseError(
                f"machine {self.name!r}: leaf boundaries {edges[0]}..{edges[-1]} mm reach beyond "
                f"the jaw limit +/-{self.jaw_limit_mm} mm"
            )
        if self.tongue_groove_mm > float(self.mlc.leaf_widths_mm.min()):
            raise DoseError(
                f"machine {self.name!r}: tongue_groove_mm {self.tongue_groove_mm} exceeds the "
                f"narrowest leaf width {self.mlc.leaf_widths_mm.min()} mm"
            )

    @property
    def max_mu_per_s(self) -> float:
        return self.max_dose_rate_mu_min / 60.0

    def with_leaf_edges(self, edges: ArrayLike) -> Machine:
        """The same machine with the leaf boundaries of an RTPLAN (they win over the file's)."""
        return replace(self, mlc=MLCGeometry(np.asarray(edges, dtype=float)))


def _fail(source: str, key: str, expected: str, got: Any) -> SpecError:
    return SpecError(f"{source}: key {key!r} must be {expected}, got {got!r}")


def _number(source: str, table: dict[str, Any], key: str, where: str) -> float:
    if key not in table:
        _missing(source, f"{where}.{key}")
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(source, f"{where}.{key}", "a finite number", v)
    return float(v)


def _missing(source: str, key: str) -> NoReturn:
    raise SpecError(f"{source}: missing key {key!r}; add it (see lattice_plan/dose/machine.py)")


def _edges_from_table(source: str, t: Any) -> NDArray[np.float64]:
    if not isinstance(t, dict):
        raise _fail(source, "mlc", "a table", t)
    unknown = set(t) - {"bands", "leaf_edges_mm"}
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {sorted(unknown)} in [mlc]")
    if ("bands" in t) == ("leaf_edges_mm" in t):
        raise SpecError(f"{source}: [mlc] needs exactly one of 'bands' or 'leaf_edges_mm'")
    if "leaf_edges_mm" in t:
        e = t["leaf_edges_mm"]
        if not isinstance(e, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in e
        ):
            raise _fail(source, "mlc.leaf_edges_mm", "a list of numbers (mm)", e)
        return np.asarray(e, dtype=float)
    bands = t["bands"]
    if not isinstance(bands, list) or not bands:
        raise _fail(source, "mlc.bands", "a non-empty list of tables", bands)
    edges: list[float] = []
    for i, b in enumerate(bands):
        where = f"mlc.bands[{i}]"
        if not isinstance(b, dict) or set(b) != {"from_mm", "to_mm", "width_mm"}:
            raise _fail(source, where, "a table with from_mm, to_mm and width_mm", b)
        lo, hi, w = (_number(source, b, k, where) for k in ("from_mm", "to_mm", "width_mm"))
        n = (hi - lo) / w if w > 0 else -1.0
        if n < 1 or abs(n - round(n)) > 1e-6:
            raise _fail(
                source, where, "a whole number (>= 1) of width_mm leaves from from_mm to to_mm", b
            )
        if edges and abs(edges[-1] - lo) > 1e-9:
            raise _fail(
                source, where, f"a band starting where the previous ends ({edges[-1]} mm)", b
            )
        band = lo + w * np.arange(round(n) + 1)
        edges.extend(band[1:] if edges else band)
    return np.asarray(edges, dtype=float)


def machine_from_mapping(data: dict[str, Any], source: str = "<machine>") -> Machine:
    """A :class:`Machine` from parsed TOML; every key is checked (``source`` names the file)."""
    unknown = set(data) - {"name", "mlc_device", "mlc", "delivery"}
    if unknown:
        raise SpecError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(source, "name", "a non-empty string", name)
    device = data.get("mlc_device", "MLCX")
    if device != "MLCX":
        raise _fail(source, "mlc_device", '"MLCX" (MLCY is not supported)', device)
    if "mlc" not in data:
        _missing(source, "mlc")
    edges = _edges_from_table(source, data["mlc"])
    d = data.get("delivery")
    if not isinstance(d, dict):
        raise _fail(source, "delivery", "a table", d)
    unknown = set(d) - set(_DELIVERY_KEYS)
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {sorted(unknown)} in [delivery]")
    values = {}
    for key, (lo, hi) in _DELIVERY_KEYS.items():
        if key == "jaw_limit_mm" and key not in d:
            continue
        v = _number(source, d, key, "delivery")
        if not lo <= v <= hi:
            raise _fail(source, f"delivery.{key}", f"within [{lo}, {hi}]", v)
        values[key] = v
    try:
        return Machine(name=name, mlc=MLCGeometry(edges), mlc_device=device, **values)
    except DoseError as exc:
        raise SpecError(f"{source}: {exc}") from exc


def read_machine(path: str | os.PathLike[str]) -> Machine:
    """Read a machine TOML file, validated field by field (errors name the file and the key)."""
    p, data = read_toml_file(path, "machine file")
    return machine_from_mapping(data, str(p))


def shipped_machines() -> list[str]:
    """Names of the machines shipped in lattice_plan/data/machines."""
    d = resources.files("lattice_plan") / "data" / "machines"
    return sorted(f.name[: -len(".toml")] for f in d.iterdir() if f.name.endswith(".toml"))


def default_machine(name: str | None = None) -> Machine:
    """A shipped machine by name (default ``varian-120``)."""
    name = DEFAULT_MACHINE if name is None else name
    known = shipped_machines()
    if name not in known:
        raise DoseError(
            f"unknown machine {name!r}; shipped machines are {known}, or give a machine TOML file"
        )
    f = resources.files("lattice_plan") / "data" / "machines" / f"{name}.toml"
    source = f"machines/{name}.toml"
    return machine_from_mapping(parse_toml_text(f.read_text(encoding="utf-8"), source), source)
