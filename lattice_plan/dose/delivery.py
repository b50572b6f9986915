"""Dose of control-point beams: exact trajectory fluence, arcs as angular samples.

A fixed-gantry beam (static, step-and-shoot, sliding window) becomes one
engine :class:`~lattice_plan.dose.beam.Beam` whose fluence map is the exact
meterset integral of its leaf and jaw trajectories
(:func:`lattice_plan.kernels.leaf_fluence.trajectory_fractions`); an arc
becomes one Beam per gantry sample of ``gantry_step_deg`` (the control-point
sequence is cut at the sample edges, the machine's linear interpolation
between control points kept exact, and each sample's beam stands at the
meterset-weighted mean angle of its part of the arc).

Fluence model (DESIGN.md "Delivery physics"), relative to the open beam:
``F = f_open (1 - T_leaf) + T_leaf f_jaw + T_jaw (1 - f_jaw)``, where f_open is
the meterset fraction a point is between its leaf tips and inside the jaws and
f_jaw the fraction it is inside the jaws. Rounded leaf ends widen each gap by
the dosimetric leaf gap (DLG / 2 per tip). In a tongue-and-groove strip of
width ``tongue_groove_mm`` centred on a boundary between two pairs, a point is
open only while both pairs are open (which is the lower of the two pairs'
fluences when their apertures change together, and less otherwise). The map
has ``FluenceMap.delivered = True`` so the engine adds no transmission of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.dose.beam import Beam, FluenceMap, Jaws
from lattice_plan.dose.beam_groups import summed_dose
from lattice_plan.dose.control_points import ControlPointBeam
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.machine import Machine
from lattice_plan.errors import DoseError
from lattice_plan.geometry.volume import Volume
from lattice_plan.kernels.leaf_fluence import trajectory_fractions

DEFAULT_GANTRY_STEP_DEG = 2.0
"""Angular sampling of arcs (deg); tests show the dose converged at this step."""


@dataclass(frozen=True)
class Trajectory:
    """Arrays of a (part of a) control-point sequence, effective tips (DLG applied)."""

    weights: NDArray[np.float64]  # (n_cp,) meterset fractions of the whole beam
    x1: NDArray[np.float64]  # (n_cp, n_pairs) or (n_cp, 0) without MLC
    x2: NDArray[np.float64]
    jaws: NDArray[np.float64]  # (n_cp, 4)
    gantry: NDArray[np.float64]  # (n_cp,) unwrapped gantry path (deg)


def machine_for(cp_beam: ControlPointBeam, machine: Machine) -> Machine:
    """The machine with the beam's leaf boundaries (an RTPLAN's boundaries win)."""
    if cp_beam.leaf_edges_mm is None or not cp_beam.has_mlc:
        return machine
    return machine.with_leaf_edges(cp_beam.leaf_edges_mm)


def trajectory(cp_beam: ControlPointBeam, machine: Machine) -> Trajectory:
    """The beam's control points as arrays; leaf tips moved out by DLG / 2 each (rounded ends)."""
    cps = cp_beam.control_points
    moving = np.diff(cp_beam.weights) > 0
    for attr in ("collimator_deg", "couch_deg"):
        vals = np.array([getattr(c, attr) for c in cps])
        change = np.flatnonzero(moving & (np.abs(np.diff(vals)) > 1e-6))
        if len(change):
            i = int(change[0])
            raise DoseError(
                f"beam {cp_beam.name!r}, control points {i}->{i + 1}: {attr[:-4]} angle changes "
                "while the beam is on; only the gantry may move during irradiation"
            )
    if cp_beam.has_mlc:
        x1, x2 = cp_beam.banks()
        half = machine.dosimetric_leaf_gap_mm / 2
        x1, x2 = x1 - half, x2 + half
    else:
        x1 = x2 = np.zeros((len(cps), 0))
    return Trajectory(cp_beam.weights, x1, x2, cp_beam.jaw_array(), cp_beam.gantry_path_deg())


def _sample_rows(
    edges: NDArray | None, tg_mm: float, y_sub: NDArray
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Leaf pair(s) shading each y sample: its own pair and, in a T&G strip, the neighbour."""
    n = len(y_sub)
    if edges is None or len(edges) < 2:
        return np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    pa = np.searchsorted(edges, y_sub, side="right") - 1
    out = (pa < 0) | (pa >= len(edges) - 1)
    pa = np.where(out, -1, pa)
    pb = pa.copy()
    inner = edges[1:-1]
    if tg_mm > 0 and len(inner):
        k = np.clip(np.searchsorted(inner, y_sub), 0, len(inner) - 1)
        for cand in (k - 1, k):
            c = np.clip(cand, 0, len(inner) - 1)
            near = (~out) & (np.abs(y_sub - inner[c]) < tg_mm / 2)
            # boundary c separates pairs c and c + 1: the neighbour is the other one
            pb = np.where(near, np.where(pa == c, c + 1, c), pb)
    return pa.astype(np.int64), pb.astype(np.int64)


def trajectory_fluence(
    traj: Trajectory,
    machine: Machine,
    pixel_mm: float = 1.0,
    sub: int = 4,
) -> FluenceMap | None:
    """Delivered fluence (fraction of the beam's meterset x relative fluence) of a trajectory.

    Pixels of ``pixel_mm`` on an integer-mm lattice covering the jaw envelope,
    each the mean of ``sub x sub`` exact point values. None when no meterset.
    """
    total = float(traj.weights[-1] - traj.weights[0])
    if total <= 0:
        return None
    j = traj.jaws
    lo = np.floor([j[:, 0].min(), j[:, 2].min()])
    hi = np.ceil([j[:, 1].max(), j[:, 3].max()])
    nx, ny = (max(1, math.ceil(v - 1e-9)) for v in (hi - lo) / pixel_mm)
    offs = (np.arange(sub) + 0.5) / sub * pixel_mm
    xs = (lo[0] + pixel_mm * np.arange(nx)[:, None] + offs[None, :]).ravel()
    ys = (lo[1] + pixel_mm * np.arange(ny)[:, None] + offs[None, :]).ravel()
    edges = machine.mlc.leaf_edges_mm if traj.x1.shape[1] else None
    pa, pb = _sample_rows(edges, machine.tongue_groove_mm, ys)
    # rows differ only through their leaf pairs and, near a Y jaw edge, y itself
    y_in = (j[:, 2].max() + j[:, 3].min()) / 2
    always_in = (ys > j[:, 2].max()) & (ys < j[:, 3].min())
    keys = np.stack([pa, pb, np.where(always_in, y_in, ys)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    open_u = np.zeros((len(uniq), len(xs)))
    jaw_u = np.zeros_like(open_u)
    trajectory_fractions(
        np.ascontiguousarray(traj.weights),
        np.ascontiguousarray(traj.x1),
        np.ascontiguousarray(traj.x2),
        np.ascontiguousarray(j),
        xs,
        np.ascontiguousarray(uniq[:, 2]),
        np.ascontiguousarray(uniq[:, 0].astype(np.int64)),
        np.ascontiguousarray(uniq[:, 1].astype(np.int64)),
        open_u,
        jaw_u,
    )
    t_leaf, t_jaw = machine.leaf_transmission, machine.jaw_transmission
    point = open_u * (1 - t_leaf) + t_leaf * jaw_u + t_jaw * (total - jaw_u)
    fine = point[inverse.ravel()]
    values = fine.reshape(ny, sub, nx, sub).mean(axis=(1, 3))
    origin = (lo[0] + pixel_mm / 2, lo[1] + pixel_mm / 2)
    return FluenceMap(values, pixel_mm, origin, delivered=True)


def delivery_time_s(cp_beam: ControlPointBeam, machine: Machine) -> float:
    """Beam-on plus motion time (s): each control-point interval lasts as long as its slowest axis.

    Meterset at the maximum dose rate, leaves at the maximum leaf speed, jaws
    at the same speed, gantry at the maximum gantry speed; beam-hold
    overheads between step-and-shoot segments are not modelled.
    """
    dm = np.diff(cp_beam.weights) * cp_beam.mu / machine.max_mu_per_s
    moves = [np.abs(np.diff(cp_beam.jaw_array(), axis=0)).max(axis=1)]
    if cp_beam.has_mlc:
        x1, x2 = cp_beam.banks()
        moves.append(np.abs(np.diff(np.concatenate([x1, x2], axis=1), axis=0)).max(axis=1))
    leaf = np.max(moves, axis=0) / machine.max_leaf_speed_mm_s
    gantry = np.abs(np.diff(cp_beam.gantry_path_deg())) / machine.max_gantry_speed_deg_s
    return float(np.sum(np.maximum(np.maximum(dm, leaf), gantry)))


def pair_open_mu(
    cp_beam: ControlPointBeam, machine: Machine, xs_mm: NDArray
) -> NDArray[np.float64]:
    """Open meterset (MU) at points ``xs_mm`` on each leaf pair's centre line, (n_pairs, nx).

    No transmission and no tongue-and-groove (each pair alone): what a leaf
    sequence is checked against.
    """
    m = machine_for(cp_beam, machine)
    traj = trajectory(cp_beam, m)
    pairs = np.arange(m.mlc.n_pairs, dtype=np.int64)
    xs = np.ascontiguousarray(xs_mm, dtype=float)
    out = np.zeros((len(pairs), len(xs)))
    jaw = np.zeros_like(out)
    trajectory_fractions(
        traj.weights,
        np.ascontiguousarray(traj.x1),
        np.ascontiguousarray(traj.x2),
        np.ascontiguousarray(traj.jaws),
        xs,
        np.ascontiguousarray(m.mlc.centers_mm),
        pairs,
        pairs,
        out,
        jaw,
    )
    return out * cp_beam.mu


def _cut(traj: Trajectory, a: float, b: float) -> Trajectory:
    """The part of the trajectory between fractional control-point indices a < b (linear in between)."""
    idx = np.arange(len(traj.weights), dtype=float)
    t = np.concatenate([[a], idx[(idx > a) & (idx < b)], [b]])

    def at(arr: NDArray) -> NDArray:
        k = np.clip(np.floor(t).astype(int), 0, len(idx) - 2)
        f = (t - k)[:, None] if arr.ndim == 2 else t - k
        return arr[k] * (1 - f) + arr[k + 1] * f

    return Trajectory(at(traj.weights), at(traj.x1), at(traj.x2), at(traj.jaws), at(traj.gantry))


def _envelope_jaws(jaws: NDArray, limit: float) -> Jaws:
    return Jaws(
        max(float(jaws[:, 0].min()), -limit),
        min(float(jaws[:, 1].max()), limit),
        max(float(jaws[:, 2].min()), -limit),
        min(float(jaws[:, 3].max()), limit),
    )


def beams_for_dose(
    cp_beam: ControlPointBeam,
    machine: Machine,
    gantry_step_deg: float = DEFAULT_GANTRY_STEP_DEG,
    pixel_mm: float = 1.0,
) -> list[Beam]:
    """Static engine beams whose summed dose is the control-point beam's dose.

    Fixed gantry: one beam with the exact trajectory fluence and the beam's MU.
    Arc: one beam per gantry sample of at most ``gantry_step_deg``, each with
    its share of the MU and its exact fluence over that part of the arc.
    """
    if not (np.isfinite(gantry_step_deg) and gantry_step_deg > 0):
        raise DoseError(f"gantry_step_deg must be positive, got {gantry_step_deg}")
    m = machine_for(cp_beam, machine)
    traj = trajectory(cp_beam, m)
    cp0 = cp_beam.control_points[0]
    if cp_beam.mu == 0:
        return []
    if cp_beam.is_arc:
        path = traj.gantry
        if np.any(np.diff(path) * np.sign(path[-1] - path[0]) < -1e-9):
            raise DoseError(
                f"beam {cp_beam.name!r}: the gantry reverses within the arc; split it into arcs "
                "that turn one way"
            )
        n = int(np.ceil(abs(path[-1] - path[0]) / gantry_step_deg - 1e-9))
        cuts = np.interp(
            np.linspace(path[0], path[-1], n + 1),
            path if path[-1] > path[0] else path[::-1],
            np.arange(len(path), dtype=float) if path[-1] > path[0] else np.arange(len(path))[::-1],
        )
        parts = [_cut(traj, cuts[i], cuts[i + 1]) for i in range(n)]
    else:
        parts = [traj]
    beams = []
    for i, part in enumerate(parts):
        dw = np.diff(part.weights)
        share = float(dw.sum())
        fmap = trajectory_fluence(part, m, pixel_mm)
        if fmap is None or not np.any(fmap.values > 0):
            continue
        mid = 0.5 * (part.gantry[:-1] + part.gantry[1:])
        gantry = float(np.sum(dw * mid) / share)
        beams.append(
            Beam(
                name=cp_beam.name if len(parts) == 1 else f"{cp_beam.name}@{i}",
                gantry_deg=gantry,
                isocenter_lps_mm=cp_beam.isocenter_lps_mm,
                jaws=_envelope_jaws(part.jaws, m.jaw_limit_mm),
                mu=cp_beam.mu * share,
                collimator_deg=cp0.collimator_deg,
                couch_deg=cp0.couch_deg,
                fluence=fmap.with_values(fmap.values / share),
                sad_mm=cp_beam.sad_mm,
                energy=cp_beam.energy,
            )
        )
    return beams


def control_point_dose(
    engine: DoseEngine,
    cp_beams: Sequence[ControlPointBeam],
    machine: Machine,
    gantry_step_deg: float = DEFAULT_GANTRY_STEP_DEG,
) -> Volume:
    """Dose (Gy) of control-point beams on the engine's dose grid.

    Arc samples at one geometry (several arcs over the same angles) are
    superposed once (:func:`lattice_plan.dose.beam_groups.summed_dose`).
    """
    beams = [b for cp in cp_beams for b in beams_for_dose(cp, machine, gantry_step_deg)]
    if not beams:
        raise DoseError("no control-point beam delivers any meterset")
    return summed_dose(engine, beams)
