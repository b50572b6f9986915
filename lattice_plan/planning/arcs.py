"""Arcs of a VMAT plan: gantry range, direction, collimator, couch and control-point spacing.

An :class:`Arc` turns the gantry from ``start_deg`` to ``stop_deg`` in the
direction ``"CW"`` (IEC gantry angle increasing) or ``"CC"`` (decreasing),
with control points equally spaced at most ``cp_spacing_deg`` apart (DICOM
GantryRotationDirection; the arc's length is measured along its direction).
The defaults (:func:`default_arcs`) are what a physicist would start from for
a lumbar or thoracic spine lesion with a paravertebral mass: two full
coplanar arcs, 181 -> 179 CW and back 179 -> 181 CC (the 2 degrees at 180
are the usual collision/flip gap of full arcs), collimators at 30 and 330
degrees so that the leaves do not travel along the rows of the lattice
vertices and the two arcs' tongue-and-groove strips cross.

Bad arcs are refused with one message naming the arc and the limit: zero
length or start on stop (overlapping ends), control-point spacing outside
0.5-10 degrees, and (:func:`check_arc_fits`) a field that the machine's MLC
or jaws cannot cover at some gantry angle of the arc.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.machine import Machine
from lattice_plan.errors import PlanningError

ARC_DIRECTIONS = ("CW", "CC")
CP_SPACING_RANGE_DEG = (0.5, 10.0)
DEFAULT_CP_SPACING_DEG = 3.0
_TOL_DEG = 1e-6


@dataclass(frozen=True)
class Arc:
    """One VMAT arc (angles in degrees, IEC 61217)."""

    name: str
    start_deg: float
    stop_deg: float
    direction: str = "CW"
    collimator_deg: float = 0.0
    couch_deg: float = 0.0
    cp_spacing_deg: float = DEFAULT_CP_SPACING_DEG

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PlanningError(f"an arc needs a non-empty name, got {self.name!r}")
        where = f"arc {self.name!r}"
        for attr in ("start_deg", "stop_deg", "collimator_deg", "couch_deg", "cp_spacing_deg"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise PlanningError(f"{where}: {attr} must be a finite number, got {v!r}")
            object.__setattr__(self, attr, float(v))
        for attr in ("start_deg", "stop_deg", "collimator_deg", "couch_deg"):
            object.__setattr__(self, attr, getattr(self, attr) % 360.0)
        if self.direction not in ARC_DIRECTIONS:
            raise PlanningError(
                f"{where}: direction must be 'CW' (gantry angle increasing) or 'CC', "
                f"got {self.direction!r}"
            )
        lo, hi = CP_SPACING_RANGE_DEG
        if not lo <= self.cp_spacing_deg <= hi:
            raise PlanningError(
                f"{where}: control-point spacing {self.cp_spacing_deg:g} deg lies outside "
                f"{lo:g}-{hi:g} deg; VMAT arcs use 2-4 deg"
            )
        if self.length_deg < _TOL_DEG or self.length_deg > 360.0 - _TOL_DEG:
            raise PlanningError(
                f"{where}: start and stop gantry angles are both {self.start_deg:g} deg, a "
                "zero-length arc or a full turn whose ends overlap; for a full arc give e.g. "
                "start 181, stop 179 (CW)"
            )
        if self.length_deg < self.cp_spacing_deg - _TOL_DEG:
            raise PlanningError(
                f"{where}: the arc is {self.length_deg:g} deg long, shorter than one "
                f"control-point spacing ({self.cp_spacing_deg:g} deg)"
            )

    @property
    def length_deg(self) -> float:
        """Gantry rotation from start to stop along the direction (deg)."""
        d = (self.stop_deg - self.start_deg) % 360.0
        return d if self.direction == "CW" else (360.0 - d) % 360.0

    @property
    def n_control_points(self) -> int:
        return math.ceil(self.length_deg / self.cp_spacing_deg - 1e-9) + 1

    def path_deg(self) -> NDArray[np.float64]:
        """Gantry angle of every control point, unwrapped along the direction (deg)."""
        sign = 1.0 if self.direction == "CW" else -1.0
        return self.start_deg + sign * np.linspace(0.0, self.length_deg, self.n_control_points)

    def gantry_deg(self) -> NDArray[np.float64]:
        """Gantry angle of every control point in [0, 360) (deg)."""
        return self.path_deg() % 360.0


def default_arcs(cp_spacing_deg: float = DEFAULT_CP_SPACING_DEG) -> tuple[Arc, Arc]:
    """Two full coplanar arcs, CW then CC, collimators 30 and 330 deg (see the module docstring)."""
    return (
        Arc("Arc1", 181.0, 179.0, "CW", 30.0, 0.0, cp_spacing_deg),
        Arc("Arc2", 179.0, 181.0, "CC", 330.0, 0.0, cp_spacing_deg),
    )


def check_arcs(arcs: Sequence[Arc]) -> tuple[Arc, ...]:
    """The arcs as a tuple; refuses none, non-Arc items and repeated names."""
    out = tuple(arcs)
    if not out:
        raise PlanningError("a VMAT plan needs at least one arc, got none")
    for a in out:
        if not isinstance(a, Arc):
            raise PlanningError(f"arcs must be Arc objects, got {type(a).__name__}")
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise PlanningError(f"arc names must be unique, got {names}")
    return out


def check_arc_fits(
    arc: Arc, machine: Machine, field_mm: Sequence[tuple[float, float, float, float]]
) -> None:
    """Refuse an arc whose fields (x1, x2, y1, y2 mm at the isocentre, one per sector) the machine
    cannot shape: beyond the jaw limit along X or Y, or beyond the MLC's leaf bank along Y."""
    edges = machine.mlc.leaf_edges_mm
    lim = machine.jaw_limit_mm
    for x1, x2, y1, y2 in field_mm:
        if min(x1, y1) < -lim - 1e-9 or max(x2, y2) > lim + 1e-9:
            raise PlanningError(
                f"arc {arc.name!r}: a field X {x1:.0f}..{x2:.0f} mm, Y {y1:.0f}..{y2:.0f} mm "
                f"exceeds machine {machine.name!r}'s jaw limit +/-{lim:g} mm; the target is too "
                "large for one isocentre on this machine"
            )
        if y1 < edges[0] - 1e-9 or y2 > edges[-1] + 1e-9:
            raise PlanningError(
                f"arc {arc.name!r}: a field reaches Y {y1:.0f}..{y2:.0f} mm but machine "
                f"{machine.name!r}'s MLC covers only {edges[0]:g}..{edges[-1]:g} mm; turn the "
                "collimator or use a machine with a longer leaf bank"
            )
