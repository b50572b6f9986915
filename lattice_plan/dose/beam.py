"""Treatment beams: geometry (IEC 61217 angles, isocentre), aperture (jaws, MLC) or fluence map, MU.

Aperture coordinates are in the beam-limiting-device frame projected to the
isocentre plane (mm at SAD), see :mod:`lattice_plan.geometry.iec`. Jaw X1 and
MLC bank B (``bank_x1_mm``) are on the -X_b side, X2 and bank A
(``bank_x2_mm``) on +X_b; signed positions, so a symmetric 10 cm field has
x1 = -50, x2 = +50.

The dose of a beam is ``mu`` times the dose per MU of its aperture, each point
of which is weighted by the fluence map (1 = open) when one is given, as a
sliding-window MLC delivers it (leaf transmission included, see
:mod:`lattice_plan.dose.fluence`); the map is clipped by the jaws.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import DoseError

DEFAULT_SAD_MM = 1000.0
DEFAULT_LEAF_WIDTH_MM = 5.0
DEFAULT_N_LEAF_PAIRS = 80


@dataclass(frozen=True)
class Jaws:
    """Jaw positions at the isocentre plane, mm (X along X_b, Y along Y_b); x1 < x2, y1 < y2."""

    x1_mm: float
    x2_mm: float
    y1_mm: float
    y2_mm: float

    def __post_init__(self) -> None:
        vals = (self.x1_mm, self.x2_mm, self.y1_mm, self.y2_mm)
        if not all(np.isfinite(v) for v in vals):
            raise DoseError(f"jaw positions must be finite, got {vals}")
        if self.x2_mm - self.x1_mm <= 0 or self.y2_mm - self.y1_mm <= 0:
            raise DoseError(
                f"empty aperture: jaws X {self.x1_mm}..{self.x2_mm} mm, Y {self.y1_mm}..{self.y2_mm} mm; "
                "X2 must exceed X1 and Y2 must exceed Y1"
            )
        if max(abs(v) for v in vals) > 200.0 + 1e-9:
            raise DoseError(f"jaw positions must lie within +/-200 mm of the axis, got {vals}")

    @classmethod
    def symmetric(cls, width_mm: float, length_mm: float) -> Jaws:
        """A field ``width_mm`` along X_b by ``length_mm`` along Y_b, centred on the axis."""
        return cls(-width_mm / 2, width_mm / 2, -length_mm / 2, length_mm / 2)

    @property
    def size_mm(self) -> tuple[float, float]:
        return (self.x2_mm - self.x1_mm, self.y2_mm - self.y1_mm)


@dataclass(frozen=True, eq=False)
class MLC:
    """Multileaf collimator with leaves travelling along X_b.

    leaf_edges_mm: (n + 1,) ascending leaf-pair boundaries along Y_b at the isocentre.
    bank_x1_mm, bank_x2_mm: (n,) tip positions of the -X (bank B) and +X (bank A)
    leaves; a closed pair has x1 == x2.
    """

    leaf_edges_mm: NDArray[np.float64]
    bank_x1_mm: NDArray[np.float64]
    bank_x2_mm: NDArray[np.float64]

    def __post_init__(self) -> None:
        edges = np.array(self.leaf_edges_mm, dtype=float)
        x1 = np.array(self.bank_x1_mm, dtype=float)
        x2 = np.array(self.bank_x2_mm, dtype=float)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise DoseError(
                "MLC leaf_edges_mm must be an ascending 1D array of at least two boundaries"
            )
        if x1.shape != (len(edges) - 1,) or x2.shape != x1.shape:
            raise DoseError(
                f"MLC banks need {len(edges) - 1} positions each, got {x1.shape} and {x2.shape}"
            )
        if np.any(x2 < x1 - 1e-9):
            bad = int(np.argmax(x2 < x1 - 1e-9))
            raise DoseError(
                f"MLC leaf pair {bad + 1}: bank A ({x2[bad]} mm) lies behind bank B ({x1[bad]} mm)"
            )
        for a in (edges, x1, x2):
            a.setflags(write=False)
        object.__setattr__(self, "leaf_edges_mm", edges)
        object.__setattr__(self, "bank_x1_mm", x1)
        object.__setattr__(self, "bank_x2_mm", x2)

    @classmethod
    def closed(
        cls, n_pairs: int = DEFAULT_N_LEAF_PAIRS, leaf_width_mm: float = DEFAULT_LEAF_WIDTH_MM
    ) -> MLC:
        """All pairs closed at the axis; ``n_pairs`` leaves of ``leaf_width_mm`` centred on the axis."""
        edges = (np.arange(n_pairs + 1) - n_pairs / 2) * leaf_width_mm
        return cls(edges, np.zeros(n_pairs), np.zeros(n_pairs))

    @property
    def n_pairs(self) -> int:
        return len(self.leaf_edges_mm) - 1

    @property
    def is_closed(self) -> bool:
        return bool(np.all(self.bank_x2_mm - self.bank_x1_mm <= 0))


@dataclass(frozen=True, eq=False)
class FluenceMap:
    """Relative fluence (1 = open beam) on square beamlets at the isocentre plane.

    values: [ny, nx] non-negative; row index runs along +Y_b, column along +X_b.
    beamlet_mm: beamlet edge length at the isocentre.
    origin_bld_mm: (x, y) centre of beamlet [0, 0] in the BLD frame at the isocentre plane.
    delivered: False for an optimiser's ideal map (the engine adds the leaf
    transmission of a sliding-window delivery, :func:`lattice_plan.dose.fluence.delivered_map`);
    True for a map that already is the delivered fluence (leaf and jaw
    transmission, leaf ends and tongue-and-groove included, as integrated from
    control points by :mod:`lattice_plan.dose.delivery`): painted as it is.
    """

    values: NDArray[np.float64]
    beamlet_mm: float
    origin_bld_mm: tuple[float, float]
    delivered: bool = False

    def __post_init__(self) -> None:
        v = np.array(self.values, dtype=float)
        if v.ndim != 2 or v.size == 0:
            raise DoseError(
                f"fluence map values must be a non-empty 2D array [ny, nx], got shape {v.shape}"
            )
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise DoseError("fluence map values must be finite and non-negative")
        if not (np.isfinite(self.beamlet_mm) and self.beamlet_mm > 0):
            raise DoseError(f"beamlet_mm must be positive, got {self.beamlet_mm}")
        v.setflags(write=False)
        object.__setattr__(self, "values", v)
        object.__setattr__(
            self, "origin_bld_mm", (float(self.origin_bld_mm[0]), float(self.origin_bld_mm[1]))
        )

    @classmethod
    def covering(cls, jaws: Jaws, beamlet_mm: float, values: ArrayLike | None = None) -> FluenceMap:
        """A map of beamlets tiling the jaw opening (open, unless ``values`` are given)."""
        nx = max(1, int(np.ceil((jaws.x2_mm - jaws.x1_mm) / beamlet_mm - 1e-9)))
        ny = max(1, int(np.ceil((jaws.y2_mm - jaws.y1_mm) / beamlet_mm - 1e-9)))
        cx = (jaws.x1_mm + jaws.x2_mm) / 2
        cy = (jaws.y1_mm + jaws.y2_mm) / 2
        origin = (cx - (nx - 1) * beamlet_mm / 2, cy - (ny - 1) * beamlet_mm / 2)
        v = np.ones((ny, nx)) if values is None else np.asarray(values, dtype=float)
        return cls(v, beamlet_mm, origin)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def x_centers_mm(self) -> NDArray[np.float64]:
        return self.origin_bld_mm[0] + self.beamlet_mm * np.arange(self.values.shape[1])

    def y_centers_mm(self) -> NDArray[np.float64]:
        return self.origin_bld_mm[1] + self.beamlet_mm * np.arange(self.values.shape[0])

    def with_values(self, values: ArrayLike) -> FluenceMap:
        v = np.asarray(values, dtype=float)
        if v.shape != self.values.shape:
            raise DoseError(
                f"new fluence values must have shape {self.values.shape}, got {v.shape}"
            )
        return FluenceMap(v, self.beamlet_mm, self.origin_bld_mm, self.delivered)


@dataclass(frozen=True, eq=False)
class Beam:
    """One static photon beam.

    Angles in degrees (IEC 61217); ``isocenter_lps_mm`` in the CT's LPS frame;
    ``mu`` monitor units (>= 0). The aperture is the jaws, optionally shaped by
    an MLC, and optionally modulated by a fluence map.
    """

    name: str
    gantry_deg: float
    isocenter_lps_mm: tuple[float, float, float]
    jaws: Jaws
    mu: float = 100.0
    collimator_deg: float = 0.0
    couch_deg: float = 0.0
    mlc: MLC | None = None
    fluence: FluenceMap | None = None
    sad_mm: float = DEFAULT_SAD_MM
    energy: str = "6X"
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise DoseError(f"beam name must be a non-empty string, got {self.name!r}")
        iso = np.asarray(self.isocenter_lps_mm, dtype=float)
        if iso.shape != (3,) or not np.all(np.isfinite(iso)):
            raise DoseError(f"beam {self.name!r}: isocenter_lps_mm must be three finite numbers")
        object.__setattr__(self, "isocenter_lps_mm", tuple(float(v) for v in iso))
        for attr in ("gantry_deg", "collimator_deg", "couch_deg"):
            val = float(getattr(self, attr))
            if not np.isfinite(val):
                raise DoseError(f"beam {self.name!r}: {attr} must be finite")
            object.__setattr__(self, attr, val % 360.0)
        if not np.isfinite(self.mu) or self.mu < 0:
            raise DoseError(f"beam {self.name!r}: MU must be >= 0, got {self.mu}")
        if not (np.isfinite(self.sad_mm) and self.sad_mm > 0):
            raise DoseError(f"beam {self.name!r}: SAD must be positive, got {self.sad_mm}")
        if self.mlc is not None and self.mlc.is_closed:
            raise DoseError(f"beam {self.name!r}: empty aperture, every MLC leaf pair is closed")
        if self.fluence is not None and not np.any(self.fluence.values > 0):
            raise DoseError(
                f"beam {self.name!r}: empty aperture, the fluence map is zero everywhere"
            )

    def with_mu(self, mu: float) -> Beam:
        return replace(self, mu=mu)

    def with_fluence(self, fluence: FluenceMap | None) -> Beam:
        return replace(self, fluence=fluence)


def coplanar_gantry_angles(
    n_beams: int, start_deg: float = 0.0, arc_deg: float = 360.0
) -> list[float]:
    """``n_beams`` gantry angles equally spaced over ``arc_deg`` from ``start_deg``."""
    if n_beams < 1:
        raise DoseError(f"need at least one beam, got {n_beams}")
    step = arc_deg / n_beams if abs(arc_deg - 360.0) < 1e-9 else arc_deg / max(n_beams - 1, 1)
    return [float((start_deg + step * n) % 360.0) for n in range(n_beams)]
