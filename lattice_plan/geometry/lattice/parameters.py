"""The lattice parameter object (diameter, spacing, pattern, margins, search steps) and its checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.lattice.pattern import LatticePattern, lattice_cell

DIAMETER_RANGE_MM = (10.0, 20.0)


@dataclass(frozen=True)
class LatticeParameters:
    """How to place lattice vertices (mm, degrees).

    diameter_mm: vertex sphere diameter, 10-20 mm.
    spacing_mm: nearest-neighbour centre-to-centre distance of the ideal lattice; at
        least the diameter.
    pattern: HCP, FCC, simple cubic or alternating (body-centred) cubic.
    lateral_spacing_factor: scales the lattice in x and y (the axial plane).
    si_spacing_mm: distance between lattice layers along z; None gives the pattern's
        ideal layer distance for ``spacing_mm`` (HCP s*sqrt(2/3), FCC s/sqrt(2),
        simple cubic s, alternating cubic s/sqrt(3)).
    gtv_margin_mm: minimum distance from each sphere surface to the GTV surface.
    oar_clearance_mm: minimum distance from each sphere surface to every OAR surface.
    whole_spheres_only: True keeps only spheres wholly inside the GTV shrunk by the
        margin; False also accepts spheres whose centre is inside it, cropped to it
        (the OAR clearance still applies to the whole, uncropped sphere).
    max_vertices: optional cap; the vertices nearest the GTV centroid are kept.
    z_rule_window_mm, z_rule_lateral_mm: optional MLC rule: two vertices whose centres
        are within ``z_rule_window_mm`` in z must be at least ``z_rule_lateral_mm``
        apart in the axial plane; vertices nearer the centroid are kept first.
    offset_step_mm: pitch of the offset search inside the lattice cell.
    rotation_step_deg: pitch of the search over rotations about z; None: no rotation.
    """

    diameter_mm: float = 15.0
    spacing_mm: float = 30.0
    pattern: LatticePattern | str = LatticePattern.HCP
    lateral_spacing_factor: float = 1.0
    si_spacing_mm: float | None = None
    gtv_margin_mm: float = 5.0
    oar_clearance_mm: float = 10.0
    whole_spheres_only: bool = True
    max_vertices: int | None = None
    z_rule_window_mm: float | None = None
    z_rule_lateral_mm: float | None = None
    offset_step_mm: float = 2.0
    rotation_step_deg: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", LatticePattern.parse(self.pattern))
        lo, hi = DIAMETER_RANGE_MM
        if not lo <= float(self.diameter_mm) <= hi:
            raise GeometryError(
                f"vertex diameter_mm must be {lo:g}-{hi:g} mm, got {self.diameter_mm!r}"
            )
        if not np.isfinite(self.spacing_mm) or self.spacing_mm < self.diameter_mm:
            raise GeometryError(
                f"spacing_mm ({self.spacing_mm!r}) is smaller than the vertex diameter "
                f"({self.diameter_mm:g} mm): the spheres would overlap; use a spacing of at "
                "least the diameter (clinically 2-4 times it)"
            )
        if not 0.5 <= self.lateral_spacing_factor <= 4.0:
            raise GeometryError(
                f"lateral_spacing_factor must be 0.5-4, got {self.lateral_spacing_factor!r}"
            )
        if self.si_spacing_mm is not None and not (
            np.isfinite(self.si_spacing_mm) and self.si_spacing_mm > 0
        ):
            raise GeometryError(f"si_spacing_mm must be positive mm, got {self.si_spacing_mm!r}")
        for name in ("gtv_margin_mm", "oar_clearance_mm"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise GeometryError(f"{name} must be a non-negative distance in mm, got {v!r}")
        if self.max_vertices is not None and int(self.max_vertices) < 1:
            raise GeometryError(f"max_vertices must be at least 1 or None, got {self.max_vertices}")
        if (self.z_rule_window_mm is None) != (self.z_rule_lateral_mm is None):
            raise GeometryError(
                "the z-separation rule needs both z_rule_window_mm and z_rule_lateral_mm "
                f"(got {self.z_rule_window_mm!r} and {self.z_rule_lateral_mm!r})"
            )
        if self.z_rule_window_mm is not None and not (
            self.z_rule_window_mm > 0 and self.z_rule_lateral_mm > 0
        ):
            raise GeometryError("z_rule_window_mm and z_rule_lateral_mm must be positive mm")
        if not 0.1 <= self.offset_step_mm <= self.spacing_mm:
            raise GeometryError(
                f"offset_step_mm must be 0.1 mm to spacing_mm, got {self.offset_step_mm!r}"
            )
        if self.rotation_step_deg is not None and not 0.5 <= self.rotation_step_deg <= 60.0:
            raise GeometryError(
                f"rotation_step_deg must be 0.5-60 degrees or None, got {self.rotation_step_deg!r}"
            )
        nn = lattice_cell(self).nearest_neighbour_mm
        if nn < self.diameter_mm - 1e-9:
            raise GeometryError(
                f"with lateral_spacing_factor {self.lateral_spacing_factor:g} and si_spacing_mm "
                f"{self.si_spacing_mm!r} the nearest centres are {nn:.2f} mm apart, less than "
                f"the diameter {self.diameter_mm:g} mm; enlarge the spacing"
            )

    @property
    def radius_mm(self) -> float:
        return float(self.diameter_mm) / 2.0

    @property
    def min_center_distance_mm(self) -> float:
        """Nearest-neighbour distance of the lattice as configured: the spacing constraint."""
        return lattice_cell(self).nearest_neighbour_mm
