"""Beam arrangements for optimised plans and fluence maps that cover the target.

Arrangements: ``n`` coplanar beams equally spaced over 360 degrees (gantry
0, 360/n, ...), or ``n`` static beams approximating an arc of ``arc_deg``
centred on the side of the body nearest the target.

Fluence maps: for each beam, a grid of square beamlets (edges on multiples of
the beamlet size from the beam axis, at the isocentre plane) covering the
divergent beam's-eye-view projection of the target plus a margin
(:func:`lattice_plan.planning.apertures.project_structure`). Beamlets that
the projection does not touch are inactive: the optimiser keeps them closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.dose.beam import DEFAULT_SAD_MM, Beam, FluenceMap, Jaws, coplanar_gantry_angles
from lattice_plan.dose.fluence import row_beam_on_time
from lattice_plan.errors import DoseError, PlanningError
from lattice_plan.geometry.iec import source_position_lps_mm
from lattice_plan.geometry.structure import Structure
from lattice_plan.planning.apertures import project_structure
from lattice_plan.planning.layout import FluenceLayout

BEAMLET_SIZES_MM = (2.5, 5.0)
DEFAULT_FLUENCE_MARGIN_MM = 5.0
_PROJECTION_PIXEL_MM = 1.0


@dataclass(frozen=True)
class BeamArrangement:
    """Gantry angles (degrees) of a set of coplanar beams and how they were chosen."""

    gantry_deg: tuple[float, ...]
    description: str

    def __post_init__(self) -> None:
        angles = tuple(float(a) % 360.0 for a in self.gantry_deg)
        if not angles:
            raise PlanningError("a beam arrangement needs at least one beam (zero beams given)")
        object.__setattr__(self, "gantry_deg", angles)

    @property
    def n_beams(self) -> int:
        return len(self.gantry_deg)


def gantry_for_direction(direction_lps: ArrayLike, patient_position: str = "HFS") -> float:
    """The coplanar gantry angle (degrees, couch 0) whose source lies along ``direction_lps``.

    The direction is projected onto the gantry's rotation plane (the patient's
    axial plane for head- or feet-first positions).
    """
    u = np.asarray(direction_lps, dtype=float)
    d0 = source_position_lps_mm((0, 0, 0), 0.0, 0.0, patient_position, 1.0)
    d90 = source_position_lps_mm((0, 0, 0), 90.0, 0.0, patient_position, 1.0)
    a, b = float(u @ d0), float(u @ d90)
    if np.hypot(a, b) < 1e-9:
        raise PlanningError(
            f"direction {tuple(u)} is along the gantry axis; no coplanar gantry angle points there"
        )
    return float(np.degrees(np.arctan2(b, a)) % 360.0)


def nearest_side_gantry_deg(target: Structure, body: Structure) -> float:
    """The coplanar gantry angle (whole degrees) whose source lies most in the direction body
    centre -> target: for a paravertebral target on the patient's left a left-posterior
    oblique. The patient position of the target's grid is honoured; 0 when the direction has
    no component in the gantry's rotation plane."""
    direction = target.centroid_lps_mm() - body.centroid_lps_mm()
    try:
        angle = gantry_for_direction(direction, target.grid.patient_position)
    except PlanningError:
        return 0.0
    return float(round(angle) % 360)


def coplanar_arrangement(
    n_beams: int = 9, arc_deg: float | None = None, centre_deg: float = 180.0
) -> BeamArrangement:
    """``n_beams`` equally spaced over 360 degrees from gantry 0, or spanning an arc.

    With ``arc_deg`` (0 < arc < 360) the beams span the arc centred on
    ``centre_deg``, first and last at its ends, approximating a rotation arc.
    """
    if int(n_beams) != n_beams or n_beams < 1:
        raise PlanningError(f"n_beams must be a positive integer, got {n_beams!r}")
    n = int(n_beams)
    if arc_deg is None or abs(arc_deg - 360.0) < 1e-9:
        try:
            angles = coplanar_gantry_angles(n, 0.0, 360.0)
        except DoseError as exc:
            raise PlanningError(str(exc)) from None
        return BeamArrangement(tuple(angles), f"{n} coplanar beams equally spaced over 360 deg")
    if not (np.isfinite(arc_deg) and 0 < arc_deg < 360):
        raise PlanningError(f"arc_deg must be in (0, 360] degrees, got {arc_deg!r}")
    if n < 2:
        raise PlanningError(f"an arc needs at least two beams to approximate it, got {n}")
    start = centre_deg - arc_deg / 2.0
    angles = coplanar_gantry_angles(n, start, float(arc_deg))
    return BeamArrangement(
        tuple(angles),
        f"{n} beams approximating a {arc_deg:g} deg arc centred on gantry {centre_deg % 360:g} deg",
    )


@dataclass(frozen=True, eq=False)
class FluenceBeams:
    """Beams with open fluence maps over the target, and which beamlets may carry fluence.

    ``active[b]`` is a [ny, nx] bool map of beam ``b``'s beamlets touched by
    the target's projection plus the margin; the others stay closed.
    """

    beams: tuple[Beam, ...]
    active: tuple[NDArray[np.bool_], ...]
    arrangement: BeamArrangement
    beamlet_mm: float
    margin_mm: float

    def __post_init__(self) -> None:
        for beam, act in zip(self.beams, self.active, strict=True):
            if beam.fluence is None or beam.fluence.shape != act.shape:
                raise PlanningError(f"beam {beam.name!r}: fluence map and active map disagree")

    @property
    def layout(self) -> FluenceLayout:
        return FluenceLayout(tuple(b.fluence.shape for b in self.beams))  # type: ignore[union-attr]

    @property
    def active_vector(self) -> NDArray[np.bool_]:
        """Active beamlets concatenated in the optimiser's order (beam by beam, row-major)."""
        return np.concatenate([a.ravel() for a in self.active])

    def with_weights(self, x: ArrayLike) -> tuple[Beam, ...]:
        """Beams whose MU and fluence give beamlet weights ``x`` (MU per beamlet, concatenated).

        A beamlet of weight w delivers what an open field of w MU delivers
        through it; each beam gets MU = its largest weight and fluence x / MU
        (at most 1). A beam whose weights are all zero is dropped.
        """
        maps = self.layout.split(x)
        beams = []
        for beam, m in zip(self.beams, maps, strict=True):
            if np.any(m < 0) or not np.all(np.isfinite(m)):
                raise PlanningError(f"beam {beam.name!r}: beamlet weights must be finite and >= 0")
            mu = float(m.max())
            if mu <= 0:
                continue
            beams.append(beam.with_fluence(beam.fluence.with_values(m / mu)).with_mu(mu))  # type: ignore[union-attr]
        if not beams:
            raise PlanningError("every beamlet weight is zero: the plan delivers no dose")
        return tuple(beams)


def sliding_window_mu(beam: Beam) -> float:
    """MU to deliver a beam's fluence map with a unidirectional sliding-window MLC sweep.

    A leaf pair moving along +X_b opens each point for the fluence it must
    get; the beam-on time of a row is the sum of the positive increments of
    the fluence along the row, starting from zero (Spirou and Chui, Med Phys 21
    (1994) 1031; Stein et al., Med Phys 21 (1994) 1055). The beam needs the
    longest row: ``mu`` times the largest such sum
    (:func:`lattice_plan.dose.fluence.row_beam_on_time`). An open beam (no map)
    needs its ``mu``. Each map row is treated as one leaf pair.
    """
    if beam.fluence is None:
        return float(beam.mu)
    return float(beam.mu * row_beam_on_time(beam.fluence.values).max())


def _beamlet_axis(lo_mm: float, hi_mm: float, beamlet_mm: float) -> tuple[int, int]:
    """Beamlet indices n0..n1 (exclusive) whose squares [n b, (n + 1) b] cover [lo, hi]."""
    return int(np.floor(lo_mm / beamlet_mm + 1e-9)), int(np.ceil(hi_mm / beamlet_mm - 1e-9))


def fluence_beams(
    target: Structure,
    isocenter_lps_mm: ArrayLike,
    arrangement: BeamArrangement,
    *,
    beamlet_mm: float = 5.0,
    margin_mm: float = DEFAULT_FLUENCE_MARGIN_MM,
    mu: float = 100.0,
    sad_mm: float = DEFAULT_SAD_MM,
    name_prefix: str = "B",
    collimator_deg: float = 0.0,
    couch_deg: float = 0.0,
) -> FluenceBeams:
    """Beams of ``arrangement`` at ``isocenter_lps_mm`` with beamlet maps covering ``target``.

    Each map spans the target's BEV projection grown by ``margin_mm`` (mm at
    the isocentre plane), in ``beamlet_mm`` squares; the jaws match the map.
    Beams are named ``{name_prefix}1``, ``{name_prefix}2``, ... and carry
    ``mu`` MU of open fluence over their active beamlets. The maps lie in the
    beam-limiting-device frame of ``collimator_deg`` (and ``couch_deg``).
    """
    if beamlet_mm not in BEAMLET_SIZES_MM:
        raise PlanningError(
            f"beamlet_mm must be one of {', '.join(f'{b:g}' for b in BEAMLET_SIZES_MM)} mm, "
            f"got {beamlet_mm!r}"
        )
    if not (np.isfinite(margin_mm) and margin_mm >= 0):
        raise PlanningError(f"margin_mm must be a non-negative distance, got {margin_mm!r}")
    iso = tuple(float(v) for v in np.asarray(isocenter_lps_mm, dtype=float))
    beams = []
    active = []
    for n, gantry in enumerate(arrangement.gantry_deg):
        proj = project_structure(
            target,
            iso,
            gantry,
            collimator_deg=collimator_deg,
            couch_deg=couch_deg,
            sad_mm=sad_mm,
            pixel_mm=_PROJECTION_PIXEL_MM,
        ).expanded(margin_mm)
        x_min, x_max, y_min, y_max = proj.extent_mm()
        ix0, ix1 = _beamlet_axis(x_min, x_max, beamlet_mm)
        iy0, iy1 = _beamlet_axis(y_min, y_max, beamlet_mm)
        # Which beamlet each projection pixel centre falls in.
        px = np.floor(proj.x_centers_mm() / beamlet_mm).astype(int) - ix0
        py = np.floor(proj.y_centers_mm() / beamlet_mm).astype(int) - iy0
        act = np.zeros((iy1 - iy0, ix1 - ix0), dtype=bool)
        rows, cols = np.nonzero(proj.mask)
        act[py[rows], px[cols]] = True
        jaws = Jaws(ix0 * beamlet_mm, ix1 * beamlet_mm, iy0 * beamlet_mm, iy1 * beamlet_mm)
        fluence = FluenceMap.covering(jaws, beamlet_mm, act.astype(float))
        beams.append(
            Beam(
                name=f"{name_prefix}{n + 1}",
                gantry_deg=gantry,
                isocenter_lps_mm=iso,
                jaws=jaws,
                mu=mu,
                collimator_deg=collimator_deg,
                couch_deg=couch_deg,
                fluence=fluence,
                sad_mm=sad_mm,
                extra={"fluence_target": target.name, "fluence_margin_mm": float(margin_mm)},
            )
        )
        active.append(act)
    return FluenceBeams(
        tuple(beams), tuple(active), arrangement, float(beamlet_mm), float(margin_mm)
    )


def isocentre_of(target: Structure) -> tuple[float, float, float]:
    """The isocentre for a target: its centroid, rounded to 0.1 mm (LPS mm)."""
    c = np.round(target.centroid_lps_mm(), 1)
    return (float(c[0]), float(c[1]), float(c[2]))


def arrangement_for(
    target: Structure,
    body: Structure,
    n_beams: int = 9,
    arc_deg: float | None = None,
) -> BeamArrangement:
    """The default arrangement of the optimised plans: equal spacing, or an arc on the target's side."""
    if arc_deg is None or abs(arc_deg - 360.0) < 1e-9:
        return coplanar_arrangement(n_beams)
    centre = nearest_side_gantry_deg(target, body)
    return coplanar_arrangement(n_beams, arc_deg, centre)
