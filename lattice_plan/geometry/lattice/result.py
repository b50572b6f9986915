"""What a vertex placement produced: the search record and the vertex spheres with their clearances."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.lattice.parameters import LatticeParameters
from lattice_plan.geometry.lattice.pattern import LatticePattern
from lattice_plan.geometry.lattice.surface import sphere_mask
from lattice_plan.geometry.structure import Structure, StructureKind


@dataclass(frozen=True)
class LatticeSearch:
    """What the offset/rotation search did.

    Offsets are in the lattice frame (before rotation), relative to the lattice
    point anchored at ``anchor_lps_mm`` (the GTV centroid); they cover the cell
    ``domain_mm`` with ``offset_steps_mm`` (``offset_counts`` samples per axis).
    """

    pattern: LatticePattern
    anchor_lps_mm: tuple[float, float, float]
    domain_mm: tuple[float, float, float]
    offset_counts: tuple[int, int, int]
    offset_steps_mm: tuple[float, float, float]
    angles_deg: tuple[float, ...]
    n_evaluated: int
    unshifted_count: int
    best_count: int
    best_offset_mm: tuple[float, float, float]
    best_angle_deg: float
    n_best_count: int
    mean_distance_to_centroid_mm: float


@dataclass(frozen=True, eq=False)
class LatticeResult:
    """Vertex spheres in a GTV with the constraint distances they achieve.

    centers_lps_mm: (n, 3) sphere centres, LPS mm, ordered inferior to superior.
    radii_mm: (n,) sphere radii, mm.
    gtv_clearance_mm: (n,) distance from each sphere surface to the GTV surface (mm;
        negative where a sphere pokes out).
    oar_clearance_mm: OAR name -> (n,) distance from each sphere surface to that OAR.
    vertices: merged structure "Vertices" (kind VERTEX) of all spheres (cropped to the
        GTV shrunk by the margin when cropped spheres are allowed).
    search: the offset search (None for vertices imported from a table).
    """

    centers_lps_mm: NDArray[np.float64]
    radii_mm: NDArray[np.float64]
    gtv: Structure
    params: LatticeParameters
    gtv_clearance_mm: NDArray[np.float64]
    oar_clearance_mm: dict[str, NDArray[np.float64]]
    vertices: Structure
    search: LatticeSearch | None = None
    _crop_mask: NDArray[np.bool_] | None = field(default=None, repr=False)

    @property
    def n_vertices(self) -> int:
        return len(self.centers_lps_mm)

    @property
    def radius_mm(self) -> float:
        """The common sphere radius (mm); an error when the spheres differ."""
        if self.n_vertices == 0 or np.ptp(self.radii_mm) > 1e-9:
            raise GeometryError(
                "the vertices do not share one radius; read radii_mm for each vertex"
            )
        return float(self.radii_mm[0])

    @property
    def min_center_distance_mm(self) -> float:
        """Smallest centre-to-centre distance between two vertices (inf for fewer than 2)."""
        if self.n_vertices < 2:
            return math.inf
        d = np.linalg.norm(self.centers_lps_mm[:, None] - self.centers_lps_mm[None], axis=-1)
        return float(d[np.triu_indices(self.n_vertices, 1)].min())

    @property
    def min_gtv_clearance_mm(self) -> float:
        return float(self.gtv_clearance_mm.min()) if self.n_vertices else math.inf

    @property
    def min_oar_clearance_mm(self) -> float:
        vals = [float(v.min()) for v in self.oar_clearance_mm.values() if len(v)]
        return min(vals) if vals else math.inf

    @property
    def vertices_per_100cc(self) -> float:
        """Vertex density: number of vertices per 100 cc of GTV."""
        return 100.0 * self.n_vertices / self.gtv.volume_cc

    @property
    def vertex_volume_percent(self) -> float:
        """Volume of the Vertices structure as % of the GTV volume (voxel volumes)."""
        return 100.0 * self.vertices.volume_cc / self.gtv.volume_cc

    def vertex_structures(self) -> tuple[Structure, ...]:
        """One structure per vertex, "Vertex01", "Vertex02", ... (kind VERTEX)."""
        return self._vertex_structures

    @cached_property
    def _vertex_structures(self) -> tuple[Structure, ...]:
        out = []
        width = max(2, len(str(self.n_vertices)))
        for n, (c, r) in enumerate(zip(self.centers_lps_mm, self.radii_mm, strict=True)):
            mask = sphere_mask(self.gtv.grid, c, float(r))
            if self._crop_mask is not None:
                mask &= self._crop_mask
            out.append(
                Structure(f"Vertex{n + 1:0{width}d}", mask, self.gtv.grid, StructureKind.VERTEX)
            )
        return tuple(out)

    def violations(self) -> list[str]:
        """Constraint violations, one line each (empty when every vertex satisfies every constraint)."""
        p = self.params
        tol = 1e-6
        out: list[str] = []
        for n in range(self.n_vertices):
            c = np.round(self.centers_lps_mm[n], 1).tolist()
            if p.whole_spheres_only and self.gtv_clearance_mm[n] < p.gtv_margin_mm - tol:
                out.append(
                    f"vertex {n + 1} at {c}: {self.gtv_clearance_mm[n]:.2f} mm from the GTV "
                    f"surface, less than the margin {p.gtv_margin_mm:g} mm"
                )
            if not p.whole_spheres_only and (
                self.gtv_clearance_mm[n] + self.radii_mm[n] < p.gtv_margin_mm - tol
            ):
                out.append(
                    f"vertex {n + 1} at {c}: centre within the GTV margin {p.gtv_margin_mm:g} mm"
                )
            for name, d in self.oar_clearance_mm.items():
                if d[n] < p.oar_clearance_mm - tol:
                    out.append(
                        f"vertex {n + 1} at {c}: {d[n]:.2f} mm from {name}, less than the "
                        f"clearance {p.oar_clearance_mm:g} mm"
                    )
        if self.min_center_distance_mm < p.min_center_distance_mm - 1e-6:
            out.append(
                f"two vertex centres are {self.min_center_distance_mm:.2f} mm apart, less than "
                f"the lattice spacing {p.min_center_distance_mm:.2f} mm"
            )
        out.extend(_z_rule_violations(self.centers_lps_mm, p))
        return out

    def __repr__(self) -> str:
        return (
            f"LatticeResult({self.n_vertices} vertices, {self.vertices_per_100cc:.2f}/100 cc, "
            f"{self.vertex_volume_percent:.1f} % of {self.gtv.name})"
        )


def _z_rule_violations(centers: NDArray[np.float64], p: LatticeParameters) -> list[str]:
    if p.z_rule_window_mm is None or len(centers) < 2:
        return []
    out = []
    for a in range(len(centers)):
        for b in range(a + 1, len(centers)):
            dz = abs(centers[a, 2] - centers[b, 2])
            lat = float(np.hypot(*(centers[a, :2] - centers[b, :2])))
            if dz < p.z_rule_window_mm and lat < p.z_rule_lateral_mm:
                out.append(
                    f"vertices {a + 1} and {b + 1} are {dz:.1f} mm apart in z but only {lat:.1f} mm "
                    f"laterally (rule: within {p.z_rule_window_mm:g} mm in z needs "
                    f"{p.z_rule_lateral_mm:g} mm laterally)"
                )
    return out
