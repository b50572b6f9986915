"""Dose of many static beams, those that stand at one geometry superposed once.

The dose is linear in the fluence, and a beam's geometry (isocentre, gantry,
collimator, couch and SAD: the ray trace through the CT and the per-point
projections) is what costs most. An arc computed as angular samples
(:func:`lattice_plan.dose.delivery.beams_for_dose`) has, over several arcs,
many samples at the same angles. :func:`summed_dose` groups such beams,
sums their delivered fluence maps (MU-weighted, on their common pixel
lattice, exactly) into one beam, traces it once and superposes it once.
Beams that differ only in their collimator angle (arc pairs with collimators
at +/-30 degrees) share the ray trace, depths and depth weights: only the
points' fan coordinates rotate (:meth:`DoseEngine.rotated_geometry`).

Only beams with the same jaws are merged: the fluence grids' pixel lattice
follows the field edge (:func:`lattice_plan.dose.superpose.map_grids`), so
beams with other jaws have their maps rasterised on other lattices (merged
under the union of their jaws, the arcs of tests/dose/test_beam_groups.py
with different jaws got a dose 1.7 % of its maximum off near steep gradients). With equal jaws the merged beam
gets the same grids, and its dose equals the sum of the beams' doses but for
the order of summation (below 1e-9 of the maximum, tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lattice_plan.dose.beam import Beam, FluenceMap
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.point_geometry import PointGeometry, geometry_key, ray_key
from lattice_plan.dose.superpose import add_beam_dose
from lattice_plan.errors import DoseError
from lattice_plan.geometry.volume import Volume

Progress = Callable[[int, int], None]
"""progress(beams done, beams in all)."""


def _mergeable(beam: Beam) -> bool:
    """A beam whose dose is linear in its map: a delivered fluence map and no MLC of its own."""
    return beam.fluence is not None and beam.fluence.delivered and beam.mlc is None


def _lattice(fmap: FluenceMap) -> tuple:
    """The pixel lattice of a map: pixel size and the phase of its origin."""
    h = fmap.beamlet_mm
    return (round(h, 9), *(round((o / h) % 1.0, 6) % 1.0 for o in fmap.origin_bld_mm))


def _merge_key(beam: Beam) -> tuple:
    return (geometry_key(beam), beam.energy, beam.jaws, _lattice(beam.fluence))  # type: ignore[arg-type]


def merge_beams(beams: Sequence[Beam]) -> Beam:
    """One beam whose dose is the sum of the beams' doses (see the module docstring).

    The beams must share their geometry (:func:`geometry_key`), energy, jaws and
    fluence pixel lattice and carry delivered fluence maps. MU is the sum of
    the beams' MU; the map is the MU-weighted mean of their maps.
    """
    beams = list(beams)
    if not beams:
        raise DoseError("merge_beams needs at least one beam")
    if len(beams) == 1:
        return beams[0]
    if not all(_mergeable(b) for b in beams) or len({_merge_key(b) for b in beams}) != 1:
        raise DoseError(
            "merge_beams: the beams must share geometry, energy, jaws and fluence pixel "
            "lattice, and carry delivered fluence maps"
        )
    first = beams[0]
    maps: list[FluenceMap] = [b.fluence for b in beams]  # type: ignore[misc]
    h = maps[0].beamlet_mm
    x0 = min(f.origin_bld_mm[0] for f in maps)
    y0 = min(f.origin_bld_mm[1] for f in maps)
    offsets = [
        (round((f.origin_bld_mm[1] - y0) / h), round((f.origin_bld_mm[0] - x0) / h)) for f in maps
    ]
    ny = max(iy + f.shape[0] for f, (iy, _) in zip(maps, offsets, strict=True))
    nx = max(ix + f.shape[1] for f, (_, ix) in zip(maps, offsets, strict=True))
    total = np.zeros((ny, nx))
    for b, f, (iy, ix) in zip(beams, maps, offsets, strict=True):
        total[iy : iy + f.shape[0], ix : ix + f.shape[1]] += b.mu * f.values
    mu = sum(b.mu for b in beams)
    fmap = FluenceMap(total / mu, h, (x0, y0), delivered=True)
    return Beam(
        name=f"{first.name}+{len(beams) - 1}",
        gantry_deg=first.gantry_deg,
        isocenter_lps_mm=first.isocenter_lps_mm,
        jaws=first.jaws,
        mu=mu,
        collimator_deg=first.collimator_deg,
        couch_deg=first.couch_deg,
        fluence=fmap,
        sad_mm=first.sad_mm,
        energy=first.energy,
    )


def group_beams(beams: Sequence[Beam]) -> list[Beam]:
    """The beams with those that can be merged (same geometry, energy, jaws, lattice) merged.

    Beams with MU 0 are dropped; the others keep their first appearance's order.
    """
    groups: dict[tuple, list[Beam]] = {}
    for n, b in enumerate(beams):
        if b.mu == 0:
            continue
        key = _merge_key(b) if _mergeable(b) else ("alone", n)
        groups.setdefault(key, []).append(b)
    return [merge_beams(g) for g in groups.values()]


def summed_dose(
    engine: DoseEngine, beams: Sequence[Beam], progress: Progress | None = None
) -> Volume:
    """Total dose (Gy) of the beams on the engine's dose grid, beams at one geometry merged.

    The same dose as ``engine.compute(beams)`` but for the order of summation.
    Geometries already in the engine's cache are used; new ones are not cached
    (each is used once here).
    """
    beams = list(beams)
    if not beams:
        raise DoseError("summed_dose needs at least one beam")
    for b in beams:
        engine.check_beam(b)
    by_rays: dict[tuple, list[Beam]] = {}
    for b in group_beams(beams):
        by_rays.setdefault(ray_key(b), []).append(b)
    acc = np.zeros(engine.n_active)
    sel = np.arange(engine.n_active, dtype=np.int64)
    n_done, n_all = 0, sum(len(g) for g in by_rays.values())
    for group in by_rays.values():
        first = engine.voxel_geometry(group[0], store=False)
        geoms: dict[tuple, PointGeometry] = {geometry_key(group[0]): first}
        for b in group:
            if progress is not None:
                progress(n_done, n_all)
            key = geometry_key(b)
            if key not in geoms:
                geoms[key] = engine.rotated_geometry(first, b)
            add_beam_dose(b, geoms[key], sel, acc, engine.model)
            n_done += 1
    if progress is not None:
        progress(n_all, n_all)
    return engine.volume_of(acc)
