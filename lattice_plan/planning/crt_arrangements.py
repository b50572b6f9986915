"""Where a CRT target lies in the body, and the static field arrangements that suit it.

The depth of the target's centroid below the skin along the four cardinal
directions decides whether it is central, posterior, anterior, left or right
(the nearest skin, when it is at least 1.5 times nearer than the opposite one).
The arrangements are named relative to that nearest side (for a paravertebral
target, posterior):

- ``single``: the near-side field alone (PA);
- ``opposed``: the near-side field and its parallel-opposed counter-field,
  weighted (PA/AP);
- ``near-obliques``: the near-side field plus two obliques at +/-45 degrees from
  it, all entering through the nearest skin (PA + posterior obliques);
- ``three-field``: the near-side field plus the two fields perpendicular to it
  (PA + both laterals);
- ``box``: the four-field box (AP, PA and both laterals).

A central target takes the posterior side as its near side (the spine
convention) and by default only ``opposed`` and ``box``; an off-centre target
by default all five.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import PlanningError
from lattice_plan.geometry.iec import source_position_lps_mm
from lattice_plan.geometry.structure import Structure
from lattice_plan.planning.beams import gantry_for_direction

#: The arrangement names a plan spec may list, in the order they are tried.
ARRANGEMENT_NAMES: tuple[str, ...] = ("single", "opposed", "near-obliques", "three-field", "box")
#: The arrangements tried for a central target unless the spec lists others.
CENTRAL_ARRANGEMENTS: tuple[str, ...] = ("opposed", "box")

# A target is "central" along an axis when its depths from the two opposite skin
# surfaces differ by less than this factor; otherwise it lies towards the shallower side.
_CENTRAL_DEPTH_RATIO = 1.5
# Near-side obliques are this far from the near-side field (a common choice for spinal
# and paraspinal targets: far enough to spread the entrance dose, near enough to keep
# the path short).
OBLIQUE_DEG = 45.0

# Cardinal source directions in LPS.
_DIRECTIONS_LPS: dict[str, NDArray[np.float64]] = {
    "anterior": np.array([0.0, -1.0, 0.0]),
    "posterior": np.array([0.0, 1.0, 0.0]),
    "left": np.array([1.0, 0.0, 0.0]),
    "right": np.array([-1.0, 0.0, 0.0]),
}
_OPPOSITE = {"anterior": "posterior", "posterior": "anterior", "left": "right", "right": "left"}
_LABEL = {"posterior": "PA", "anterior": "AP", "left": "LLAT", "right": "RLAT"}


@dataclass(frozen=True)
class TargetPosition:
    """Where a target lies in the body: its centroid, its depth below the skin in the four
    cardinal directions (mm, geometric, along the patient's axial plane) and a location
    ("central", "posterior", "anterior", "left" or "right") with the reason."""

    centroid_lps_mm: tuple[float, float, float]
    depth_mm: dict[str, float]
    location: str
    reason: str


def _depth_to_surface_mm(
    body: Structure, start_lps_mm: NDArray[np.float64], direction: NDArray[np.float64]
) -> float:
    """Distance from ``start`` along ``direction`` to where the body outline ends (1/4-voxel steps)."""
    grid = body.grid
    step = 0.25 * min(grid.spacing_mm)
    lo, hi = grid.bounds_lps_mm()
    n = int(np.ceil(np.linalg.norm(hi - lo) / step)) + 2
    t = np.arange(n) * step
    pts = start_lps_mm[None, :] + t[:, None] * direction[None, :]
    ijk = np.rint(grid.continuous_ijk(pts)).astype(int)
    shape_ijk = np.array(grid.shape[::-1])
    inside_grid = np.all((ijk >= 0) & (ijk < shape_ijk), axis=1)
    in_body = np.zeros(n, dtype=bool)
    ok = np.nonzero(inside_grid)[0]
    in_body[ok] = body.mask[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
    outside = np.nonzero(~in_body)[0]
    return float(t[outside[0]]) if outside.size else float(t[-1])


def locate_target(target: Structure, body: Structure) -> TargetPosition:
    """Classify the target's position in the body from its centroid's depths below the skin."""
    target.require_nonempty("locating the target")
    centroid = target.centroid_lps_mm()
    if not body.mask[tuple(np.rint(body.grid.continuous_ijk(centroid)[::-1]).astype(int))]:
        raise PlanningError(
            f"the centroid of {target.name!r} lies outside the body outline {body.name!r}; "
            "check the structures"
        )
    depth = {name: _depth_to_surface_mm(body, centroid, d) for name, d in _DIRECTIONS_LPS.items()}
    shallowest = min(depth, key=depth.get)  # type: ignore[arg-type]
    far = _OPPOSITE[shallowest]
    ratio = depth[far] / max(depth[shallowest], 1e-6)
    if ratio < _CENTRAL_DEPTH_RATIO:
        location = "central"
        reason = (
            f"centroid {depth[shallowest]:.0f} mm below the {shallowest} skin and "
            f"{depth[far]:.0f} mm below the {far} skin (ratio {ratio:.2f} < "
            f"{_CENTRAL_DEPTH_RATIO}): central"
        )
    else:
        location = shallowest
        reason = (
            f"centroid {depth[shallowest]:.0f} mm below the {shallowest} skin, the nearest surface "
            f"({ratio:.1f} times nearer than the {far} skin)"
        )
    c = (float(centroid[0]), float(centroid[1]), float(centroid[2]))
    return TargetPosition(c, depth, location, reason)


def field_label(gantry_deg: float, patient_position: str = "HFS") -> str:
    """AP, PA, LLAT, RLAT within 10 degrees of those directions, else LAO, RAO, LPO, RPO."""
    src = source_position_lps_mm((0, 0, 0), gantry_deg, 0.0, patient_position, 1.0)
    ant, left = -src[1], src[0]
    angle = np.degrees(np.arctan2(left, ant)) % 360.0  # 0 = anterior, 90 = left
    cardinal = {0.0: "AP", 90.0: "LLAT", 180.0: "PA", 270.0: "RLAT", 360.0: "AP"}
    for a, name in cardinal.items():
        if abs(angle - a) <= 10.0:
            return name
    side = "L" if left > 0 else "R"
    return f"{side}{'A' if ant > 0 else 'P'}O"


def beam_names(gantry_deg: Sequence[float], patient_position: str) -> list[str]:
    """Field labels of the gantry angles, with the angle added where a label repeats."""
    labels = [field_label(g, patient_position) for g in gantry_deg]
    return [
        lab if labels.count(lab) == 1 else f"{lab}_G{g:g}"
        for lab, g in zip(labels, gantry_deg, strict=True)
    ]


@dataclass(frozen=True)
class Arrangement:
    """A set of static coplanar fields: a key (one of ARRANGEMENT_NAMES, or "user"), a
    display name, gantry angles (degrees) and why they fit."""

    key: str
    name: str
    gantry_deg: tuple[float, ...]
    reason: str

    def __post_init__(self) -> None:
        if not self.gantry_deg:
            raise PlanningError(f"arrangement {self.name!r} has no fields; give at least one")


def check_arrangement_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, refused when empty, repeated or not in ARRANGEMENT_NAMES."""
    names = tuple(names)
    if not names:
        raise PlanningError(
            "the CRT arrangement list is empty; name at least one of "
            f"{', '.join(ARRANGEMENT_NAMES)}"
        )
    unknown = [n for n in names if n not in ARRANGEMENT_NAMES]
    if unknown:
        raise PlanningError(
            f"unknown CRT arrangement(s) {', '.join(map(repr, unknown))}; use "
            f"{', '.join(ARRANGEMENT_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise PlanningError(f"CRT arrangements repeat: {list(names)}; name each once")
    return names


def candidate_arrangements(
    position: TargetPosition,
    patient_position: str = "HFS",
    names: Sequence[str] | None = None,
) -> list[Arrangement]:
    """The arrangements ``names`` (default: by location, see the module docstring)."""
    central = position.location == "central"
    if names is None:
        names = CENTRAL_ARRANGEMENTS if central else ARRANGEMENT_NAMES
    names = check_arrangement_names(names)
    near = "posterior" if central else position.location
    far = _OPPOSITE[near]
    sides = [s for s in ("left", "right", "posterior", "anterior") if s not in (near, far)]

    def gantry(direction: NDArray[np.float64]) -> float:
        return round(gantry_for_direction(direction, patient_position), 6)

    def rotate(direction: NDArray[np.float64], deg: float) -> NDArray[np.float64]:
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))  # within the axial plane
        return np.array(
            [c * direction[0] - s * direction[1], s * direction[0] + c * direction[1], 0.0]
        )

    g_near, g_far = gantry(_DIRECTIONS_LPS[near]), gantry(_DIRECTIONS_LPS[far])
    g_obl = tuple(gantry(rotate(_DIRECTIONS_LPS[near], d)) for d in (OBLIQUE_DEG, -OBLIQUE_DEG))
    g_side = tuple(gantry(_DIRECTIONS_LPS[s]) for s in sides)
    a, b = _LABEL[near], _LABEL[far]
    where = f"{position.location} target"
    table = {
        "single": Arrangement(
            "single", a, (g_near,), f"{where}: one {a} field through the nearest skin"
        ),
        "opposed": Arrangement(
            "opposed",
            f"{a}/{b} weighted",
            (g_near, g_far),
            f"{where}: parallel-opposed {a}/{b} pair, weighted to even out the depth dose",
        ),
        "near-obliques": Arrangement(
            "near-obliques",
            f"{a} + {near} obliques",
            (g_near, *g_obl),
            f"{where}: {a} plus two {near} obliques at +/-{OBLIQUE_DEG:g} deg, all entering "
            "through the nearest skin",
        ),
        "three-field": Arrangement(
            "three-field",
            f"{a} + {' + '.join(_LABEL[s] for s in sides)}",
            (g_near, *g_side),
            f"{where}: {a} plus the two fields at right angles to it",
        ),
        "box": Arrangement(
            "box",
            "four-field box",
            (g_near, g_far, *g_side),
            f"{where}: four-field box; each opposed pair evens out the other's depth dose",
        ),
    }
    return [table[n] for n in names]
