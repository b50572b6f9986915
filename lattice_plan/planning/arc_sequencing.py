"""Arc sequencing: optimised sector fluence maps -> leaf positions at every control point of an arc.

Each arc is cut into sectors of neighbouring control points; one fluence map,
optimised at the sector's mean gantry angle with the arc's collimator, is
delivered while the gantry crosses its sector (the coarse-to-fine route of
Bzdusek et al., Med Phys 36 (2009) 2328: fluence maps at coarse gantry
spacing, converted to apertures spread over the control points around them).
The conversion is the "sliding-window VMAT" of Craft et al. (Multicriteria VMAT
optimization, Med Phys 39 (2012) 686): the map is sequenced as a unidirectional
sliding-window sweep (:func:`lattice_plan.planning.sequencing.sliding_window`,
leaves at the maximum speed per MU of the maximum dose rate) and the sweep is
sampled at the sector's control points, equally spaced in meterset; successive
sectors sweep in opposite directions (a sweep played backwards delivers the
same fluence), so that the leaves start each sector where the last one ended.
Each sector has its own jaws (the sweep's); between the last control point of a
sector and the first of the next the leaves and jaws move to the next sweep.

The machine interpolates linearly between control points: sampled leaf
positions are exact points of the sweep, so the minimum gap holds throughout,
and the sampling smooths each row's staircase (the direct aperture
optimisation, :mod:`lattice_plan.planning.aperture_opt` and
:mod:`lattice_plan.planning.leaf_opt`, then re-weights the intervals and moves
the tips against the objectives). Limits per control-point interval
(:func:`interval_mu_lower_bounds`, :func:`check_arc_limits`): the interval
lasts t = max(dgantry / max gantry speed, dMU / max dose rate); every leaf and
jaw travels at most max leaf speed x t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.dose.machine import Machine
from lattice_plan.errors import PlanningError
from lattice_plan.planning.arcs import Arc
from lattice_plan.planning.sequencing import sliding_window

# Leaf-travel lower bounds on interval MU are raised by this factor, so that renormalising the
# plan to its prescription (a few per cent) keeps every interval within the leaf speed.
MU_BOUND_SAFETY = 1.25
_TOL_MM = 1e-6


def sector_cuts(n_cp: int, n_sectors: int, phase: float = 0.0) -> list[tuple[int, int]]:
    """Control-point index ranges [first, last] of the sectors of an arc of ``n_cp`` points.

    ``n_sectors`` equal sectors shifted by ``phase`` (0..1) of a sector, so that
    two arcs' sector centres interleave; sectors of fewer than two control
    points join their neighbour.
    """
    if n_sectors < 1 or n_cp < 2:
        raise PlanningError(
            f"an arc needs >= 2 control points and >= 1 sector, got {n_cp}, {n_sectors}"
        )
    step = (n_cp - 1) / n_sectors
    raw = np.rint((np.arange(n_sectors + 2) - phase) * step).astype(int)
    cuts = np.unique(np.clip(raw, 0, n_cp))
    cuts = cuts[(cuts > 0) & (cuts < n_cp)]
    starts = [0, *cuts.tolist()]
    ranges = [(a, b - 1) for a, b in zip(starts, [*starts[1:], n_cp], strict=True)]
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and merged[-1][1] - merged[-1][0] < 1:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    if len(merged) > 1 and merged[-1][1] - merged[-1][0] < 1:
        last = merged.pop()
        merged[-1] = (merged[-1][0], last[1])
    return merged


@dataclass(frozen=True, eq=False)
class ArcApertures:
    """One arc's control points as arrays: leaf tips, jaws and the MU of each interval.

    ``x1``/``x2``: (n_cp, n_pairs) nominal tips (mm); ``jaws``: (n_cp, 4) X1, X2, Y1, Y2;
    ``interval_mu``: (n_cp - 1,) MU per fraction; ``sector_of_interval``: which
    sector beam an interval is binned onto by the aperture optimisation.
    """

    arc: Arc
    x1: NDArray[np.float64]
    x2: NDArray[np.float64]
    jaws: NDArray[np.float64]
    interval_mu: NDArray[np.float64]
    sector_of_interval: NDArray[np.int64]

    def with_interval_mu(self, mu: NDArray[np.float64]) -> ArcApertures:
        mu = np.asarray(mu, dtype=float)
        if mu.shape != self.interval_mu.shape or np.any(mu < 0) or not np.all(np.isfinite(mu)):
            raise PlanningError(
                f"arc {self.arc.name!r}: interval MU must be {self.interval_mu.shape} values >= 0"
            )
        return ArcApertures(self.arc, self.x1, self.x2, self.jaws, mu, self.sector_of_interval)

    def travel_mm(self) -> NDArray[np.float64]:
        """Largest leaf or jaw travel of each interval (mm)."""
        pos = np.concatenate([self.x1, self.x2, self.jaws], axis=1)
        return np.abs(np.diff(pos, axis=0)).max(axis=1)

    def control_point_beam(
        self, machine: Machine, isocenter_lps_mm: tuple[float, float, float], energy: str = "6X"
    ) -> ControlPointBeam:
        """The arc as a DYNAMIC control-point beam (BeamMeterset = the sum of the interval MU)."""
        mu = float(self.interval_mu.sum())
        if not mu > 0:
            raise PlanningError(f"arc {self.arc.name!r} delivers no MU")
        weights = np.concatenate([[0.0], np.cumsum(self.interval_mu)]) / mu
        weights[-1] = 1.0
        gantry = self.arc.gantry_deg()
        n = len(gantry)
        cps = tuple(
            ControlPoint(
                float(weights[i]),
                float(gantry[i]),
                self.arc.collimator_deg,
                self.arc.couch_deg,
                Jaws(*(float(v) for v in self.jaws[i])),
                self.x1[i],
                self.x2[i],
                self.arc.direction if i < n - 1 else "NONE",
            )
            for i in range(n)
        )
        return ControlPointBeam(
            name=self.arc.name,
            isocenter_lps_mm=isocenter_lps_mm,
            mu=mu,
            control_points=cps,
            leaf_edges_mm=machine.mlc.leaf_edges_mm,
            beam_type="DYNAMIC",
            energy=energy,
        )


def sequence_arc(
    arc: Arc, sectors: list[tuple[int, int]], sector_beams: list[Beam], machine: Machine
) -> ArcApertures:
    """Leaf positions at every control point of ``arc`` from one fluence-map beam per sector.

    Sector k's sliding-window sweep is sampled at its control points equally
    spaced in meterset (reversed in odd sectors); its MU is shared equally
    between its intervals; the intervals between sectors start with no MU.
    """
    n_cp = arc.n_control_points
    n_pairs = machine.mlc.n_pairs
    x1 = np.zeros((n_cp, n_pairs))
    x2 = np.zeros((n_cp, n_pairs))
    jaws = np.zeros((n_cp, 4))
    mu = np.zeros(n_cp - 1)
    sector_of = np.zeros(n_cp - 1, dtype=np.int64)
    for k, ((a, b), beam) in enumerate(zip(sectors, sector_beams, strict=True)):
        cp, _ = sliding_window(beam, machine)
        w = cp.weights
        bx1, bx2 = cp.banks()
        f = np.linspace(0.0, 1.0, b - a + 1)
        if k % 2:
            f = f[::-1]
        for p in range(n_pairs):
            x1[a : b + 1, p] = np.interp(f, w, bx1[:, p])
            x2[a : b + 1, p] = np.interp(f, w, bx2[:, p])
        jaws[a : b + 1] = cp.jaw_array()[0]
        mu[a:b] = cp.mu / (b - a)
        sector_of[a : b + 1 if b < n_cp - 1 else b] = k
    return ArcApertures(arc, x1, x2, jaws, mu, sector_of)


def interval_mu_lower_bounds(
    apertures: ArcApertures, machine: Machine, safety: float = MU_BOUND_SAFETY
) -> NDArray[np.float64]:
    """Least MU per interval for its leaves and jaws to keep within the maximum leaf speed.

    With t = max(dgantry / max gantry speed, dMU / max dose rate), travel <= v t
    needs dMU >= dose rate x travel / v whenever the gantry alone is too fast
    for the leaves (times ``safety``).
    """
    d_gantry = np.abs(np.diff(apertures.arc.path_deg()))
    t_leaf = apertures.travel_mm() / machine.max_leaf_speed_mm_s
    t_gantry = d_gantry / machine.max_gantry_speed_deg_s
    need = np.where(t_leaf > t_gantry, t_leaf * machine.max_mu_per_s * safety, 0.0)
    return need


@dataclass(frozen=True)
class ArcLimitReport:
    """The slowest axes of one control-point beam: what limited each interval and the totals."""

    beam: str
    n_control_points: int
    max_leaf_speed_mm_s: float
    max_gantry_speed_deg_s: float
    max_dose_rate_mu_min: float
    max_mu_per_deg: float
    delivery_time_s: float


def check_arc_limits(cp_beam: ControlPointBeam, machine: Machine) -> ArcLimitReport:
    """Check every control-point interval of an arc against the machine; refuse a violation.

    Each interval lasts t = max(dgantry / max gantry speed, dMU / max dose rate):
    the gantry and the dose rate run as fast as allowed and neither waits for
    the leaves, so the gantry speed and dose rate are within their limits by
    construction (reported) and every leaf and jaw must travel at most
    max leaf speed x t (checked), within the jaw limit. The error names the
    beam, the control points and the limit.
    """
    path = cp_beam.gantry_path_deg()
    d_gantry = np.abs(np.diff(path))
    d_mu = np.diff(cp_beam.weights) * cp_beam.mu
    t = np.maximum(d_gantry / machine.max_gantry_speed_deg_s, d_mu / machine.max_mu_per_s)
    jaws = cp_beam.jaw_array()
    pos = jaws
    if cp_beam.has_mlc:
        x1, x2 = cp_beam.banks()
        pos = np.concatenate([x1, x2, jaws], axis=1)
    travel = np.abs(np.diff(pos, axis=0)).max(axis=1)
    name = cp_beam.name
    lim = machine.jaw_limit_mm
    out = np.flatnonzero(np.abs(pos).max(axis=1) > lim + _TOL_MM)
    if len(out):
        i = int(out[0])
        raise PlanningError(
            f"beam {name!r}, control point {i}: a leaf or jaw at {np.abs(pos[i]).max():.1f} mm lies "
            f"beyond machine {machine.name!r}'s limit {lim:g} mm"
        )
    bad = np.flatnonzero(travel > machine.max_leaf_speed_mm_s * t * (1 + 1e-6) + 1e-9)
    if len(bad):
        i = int(bad[0])
        rate = travel[i] / t[i] if t[i] > 0 else np.inf
        raise PlanningError(
            f"beam {name!r}, control points {i}->{i + 1}: leaf/jaw speed {rate:.3g} mm/s exceeds "
            f"machine {machine.name!r}'s limit {machine.max_leaf_speed_mm_s:.3g} mm/s (the interval "
            f"lasts {t[i]:.3g} s at the maximum gantry speed and dose rate)"
        )
    moving = t > 0
    speed = np.divide(travel, t, out=np.zeros_like(t), where=moving)
    return ArcLimitReport(
        beam=name,
        n_control_points=cp_beam.n_control_points,
        max_leaf_speed_mm_s=float(speed.max(initial=0.0)),
        max_gantry_speed_deg_s=float(
            np.divide(d_gantry, t, out=np.zeros_like(t), where=moving).max(initial=0.0)
        ),
        max_dose_rate_mu_min=60.0
        * float(np.divide(d_mu, t, out=np.zeros_like(t), where=moving).max(initial=0.0)),
        max_mu_per_deg=float(
            np.divide(d_mu, d_gantry, out=np.zeros_like(t), where=d_gantry > 0).max(initial=0.0)
        ),
        delivery_time_s=float(t.sum()),
    )
