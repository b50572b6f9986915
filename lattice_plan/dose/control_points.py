"""Beams as control-point sequences (what a linac delivers and an RTPLAN holds).

Between consecutive control points the machine moves every axis (leaves,
jaws, gantry) linearly while the cumulative meterset grows linearly (DICOM
PS3.3 C.8.8.14; DESIGN.md "Delivery"). A static beam is the two-point case;
step-and-shoot segments are pairs of control points with the same aperture
and the aperture changes while the meterset does not grow (BeamType STATIC);
sliding window and arcs are DYNAMIC.

Positions are in the beam-limiting-device frame at the isocentre plane (mm):
bank B / X1 on -X_b, bank A / X2 on +X_b, as :class:`lattice_plan.dose.beam.MLC`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import DEFAULT_SAD_MM, Jaws
from lattice_plan.errors import DoseError

GANTRY_DIRECTIONS = ("CW", "CC", "NONE")
BEAM_TYPES = ("STATIC", "DYNAMIC")
_TOL_MM = 1e-6
_TOL_W = 1e-9


def _bank(values: object, what: str) -> NDArray[np.float64] | None:
    if values is None:
        return None
    a = np.array(values, dtype=float)
    if a.ndim != 1 or not np.all(np.isfinite(a)):
        raise DoseError(f"{what} must be a 1D array of finite positions (mm)")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ControlPoint:
    """One control point: meterset weight (0..1), angles (deg), jaws and leaf tips (mm)."""

    cumulative_meterset_weight: float
    gantry_deg: float
    collimator_deg: float
    couch_deg: float
    jaws: Jaws
    mlc_x1_mm: NDArray[np.float64] | None
    mlc_x2_mm: NDArray[np.float64] | None
    gantry_direction: str = "NONE"

    def __post_init__(self) -> None:
        w = float(self.cumulative_meterset_weight)
        if not math.isfinite(w):
            raise DoseError(f"cumulative meterset weight must be finite, got {w}")
        object.__setattr__(self, "cumulative_meterset_weight", w)
        for attr in ("gantry_deg", "collimator_deg", "couch_deg"):
            v = float(getattr(self, attr))
            if not math.isfinite(v):
                raise DoseError(f"control point {attr} must be finite, got {v}")
            object.__setattr__(self, attr, v % 360.0)
        if not isinstance(self.jaws, Jaws):
            raise DoseError(f"control point jaws must be a Jaws, got {type(self.jaws).__name__}")
        if self.gantry_direction not in GANTRY_DIRECTIONS:
            raise DoseError(
                f"gantry direction must be one of {GANTRY_DIRECTIONS}, got {self.gantry_direction!r}"
            )
        x1 = _bank(self.mlc_x1_mm, "MLC bank X1 (B)")
        x2 = _bank(self.mlc_x2_mm, "MLC bank X2 (A)")
        if (x1 is None) != (x2 is None):
            raise DoseError("a control point needs both MLC banks (X1 and X2) or neither")
        if x1 is not None and x2 is not None and x1.shape != x2.shape:
            raise DoseError(f"MLC banks differ in size: X1 {x1.shape}, X2 {x2.shape}")
        object.__setattr__(self, "mlc_x1_mm", x1)
        object.__setattr__(self, "mlc_x2_mm", x2)

    @property
    def has_mlc(self) -> bool:
        return self.mlc_x1_mm is not None


@dataclass(frozen=True, eq=False)
class ControlPointBeam:
    """A photon beam as a control-point sequence; ``mu`` is the BeamMeterset."""

    name: str
    isocenter_lps_mm: tuple[float, float, float]
    mu: float
    control_points: tuple[ControlPoint, ...]
    leaf_edges_mm: NDArray[np.float64] | None
    beam_type: str
    energy: str = "6X"
    sad_mm: float = DEFAULT_SAD_MM
    number: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DoseError(f"beam name must be a non-empty string, got {self.name!r}")
        n = self.name
        iso = np.asarray(self.isocenter_lps_mm, dtype=float)
        if iso.shape != (3,) or not np.all(np.isfinite(iso)):
            raise DoseError(f"beam {n!r}: isocenter_lps_mm must be three finite numbers")
        object.__setattr__(self, "isocenter_lps_mm", tuple(float(v) for v in iso))
        if not (math.isfinite(self.mu) and self.mu >= 0):
            raise DoseError(f"beam {n!r}: MU (BeamMeterset) must be >= 0, got {self.mu}")
        if not (math.isfinite(self.sad_mm) and self.sad_mm > 0):
            raise DoseError(f"beam {n!r}: SAD must be positive, got {self.sad_mm}")
        if self.beam_type not in BEAM_TYPES:
            raise DoseError(
                f"beam {n!r}: beam type must be one of {BEAM_TYPES}, got {self.beam_type!r}"
            )
        cps = tuple(self.control_points)
        object.__setattr__(self, "control_points", cps)
        if len(cps) < 2 or not all(isinstance(c, ControlPoint) for c in cps):
            raise DoseError(f"beam {n!r}: needs at least two ControlPoint objects, got {len(cps)}")
        self._check_weights(cps)
        self._check_mlc(cps)
        if self.beam_type == "STATIC":
            self._check_static(cps)

    def _check_weights(self, cps: tuple[ControlPoint, ...]) -> None:
        w = np.array([c.cumulative_meterset_weight for c in cps])
        if abs(w[0]) > _TOL_W or abs(w[-1] - 1.0) > _TOL_W:
            raise DoseError(
                f"beam {self.name!r}: cumulative meterset weights must run from 0 (control point 0) "
                f"to 1 (control point {len(w) - 1}), got {w[0]} and {w[-1]}; normalise by the final weight"
            )
        back = np.flatnonzero(np.diff(w) < -_TOL_W)
        if len(back):
            i = int(back[0]) + 1
            raise DoseError(
                f"beam {self.name!r}, control point {i}: cumulative meterset weight {w[i]} is below "
                f"control point {i - 1}'s {w[i - 1]}; weights must not decrease"
            )

    def _check_mlc(self, cps: tuple[ControlPoint, ...]) -> None:
        n = self.name
        has = [c.has_mlc for c in cps]
        if any(has) and not all(has):
            i = has.index(not has[0])
            raise DoseError(
                f"beam {n!r}, control point {i}: MLC positions are missing here but given at "
                "other control points; give them at every control point or none"
            )
        if not has[0]:
            if self.leaf_edges_mm is not None:
                object.__setattr__(self, "leaf_edges_mm", _bank(self.leaf_edges_mm, "leaf edges"))
            return
        if self.leaf_edges_mm is None:
            raise DoseError(
                f"beam {n!r}: MLC positions given without leaf_edges_mm (leaf boundaries)"
            )
        edges = _bank(self.leaf_edges_mm, f"beam {n!r} leaf_edges_mm")
        assert edges is not None
        if len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise DoseError(f"beam {n!r}: leaf_edges_mm must be strictly ascending")
        object.__setattr__(self, "leaf_edges_mm", edges)
        for i, c in enumerate(cps):
            x1, x2 = c.mlc_x1_mm, c.mlc_x2_mm
            assert x1 is not None and x2 is not None
            if len(x1) != len(edges) - 1:
                raise DoseError(
                    f"beam {n!r}, control point {i}: {len(x1)} leaf pairs but the MLC has "
                    f"{len(edges) - 1} (leaf_edges_mm has {len(edges)} boundaries)"
                )
            bad = np.flatnonzero(x2 < x1 - _TOL_MM)
            if len(bad):
                k = int(bad[0])
                raise DoseError(
                    f"beam {n!r}, control point {i}, leaf pair {k + 1}: leaves cross "
                    f"(X1 {x1[k]} mm > X2 {x2[k]} mm)"
                )

    def _check_static(self, cps: tuple[ControlPoint, ...]) -> None:
        for i in range(len(cps) - 1):
            a, b = cps[i], cps[i + 1]
            if b.cumulative_meterset_weight - a.cumulative_meterset_weight <= _TOL_W:
                continue
            same = (
                a.gantry_deg == b.gantry_deg
                and a.jaws == b.jaws
                and (
                    not a.has_mlc
                    or (
                        np.allclose(a.mlc_x1_mm, b.mlc_x1_mm, atol=_TOL_MM)  # type: ignore[arg-type]
                        and np.allclose(a.mlc_x2_mm, b.mlc_x2_mm, atol=_TOL_MM)  # type: ignore[arg-type]
                    )
                )
            )
            if not same:
                raise DoseError(
                    f"beam {self.name!r}, control points {i}->{i + 1}: a STATIC beam may change its "
                    "aperture or gantry only while the meterset does not grow; use beam type DYNAMIC"
                )

    # ------------------------------------------------------------------ views
    @property
    def n_control_points(self) -> int:
        return len(self.control_points)

    @property
    def weights(self) -> NDArray[np.float64]:
        return np.array([c.cumulative_meterset_weight for c in self.control_points])

    @property
    def has_mlc(self) -> bool:
        return self.control_points[0].has_mlc

    def banks(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(X1, X2) leaf tips (n_cp, n_pairs) mm; refused for a beam without MLC."""
        if not self.has_mlc:
            raise DoseError(f"beam {self.name!r} has no MLC positions")
        x1 = np.array([c.mlc_x1_mm for c in self.control_points], dtype=float)
        x2 = np.array([c.mlc_x2_mm for c in self.control_points], dtype=float)
        return x1, x2

    def jaw_array(self) -> NDArray[np.float64]:
        """Jaws (n_cp, 4) as X1, X2, Y1, Y2 mm."""
        return np.array(
            [[c.jaws.x1_mm, c.jaws.x2_mm, c.jaws.y1_mm, c.jaws.y2_mm] for c in self.control_points]
        )

    def gantry_path_deg(self) -> NDArray[np.float64]:
        """Gantry angle at each control point, unwrapped along the rotation direction (deg).

        The direction of control point i (CW: increasing IEC angle, CC:
        decreasing) applies to the motion to control point i + 1; NONE takes
        the shorter way.
        """
        cps = self.control_points
        path = [cps[0].gantry_deg]
        for a, b in itertools.pairwise(cps):
            d = (b.gantry_deg - a.gantry_deg) % 360.0
            if a.gantry_direction == "CC":
                d = d - 360.0 if d > 0 else 0.0
            elif a.gantry_direction == "NONE" and d > 180.0:
                d -= 360.0
            path.append(path[-1] + d)
        return np.array(path)

    @property
    def is_arc(self) -> bool:
        """True when the gantry turns while the meterset grows."""
        path = self.gantry_path_deg()
        dw = np.diff(self.weights)
        return bool(np.any((np.abs(np.diff(path)) > 1e-6) & (dw > _TOL_W)))

    @property
    def technique(self) -> str:
        """ "arc", "step_and_shoot", "sliding_window" or "static"."""
        if self.is_arc:
            return "arc"
        x1, x2 = self.banks() if self.has_mlc else (None, None)
        jaws = self.jaw_array()
        moves = bool(np.any(np.ptp(jaws, axis=0) > _TOL_MM)) or (
            x1 is not None
            and bool(np.any(np.ptp(x1, axis=0) > _TOL_MM) or np.any(np.ptp(x2, axis=0) > _TOL_MM))
        )
        if not moves:
            return "static"
        return "step_and_shoot" if self.beam_type == "STATIC" else "sliding_window"
