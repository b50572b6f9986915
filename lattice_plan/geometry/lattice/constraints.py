"""Feasibility of vertex centres against the GTV margin and the OAR clearance.

Checked on the surface model of :mod:`lattice_plan.geometry.lattice.surface`: a
distance-transform bound decides most points, the exact k-d tree distance the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.lattice.parameters import LatticeParameters
from lattice_plan.geometry.lattice.surface import SurfaceDistance, boundary_centres
from lattice_plan.geometry.structure import Structure


def check_gtv_and_oars(gtv: Structure, oars: Sequence[Structure]) -> tuple[Structure, ...]:
    """The OARs as a tuple, checked to be structures on the GTV's grid other than the GTV."""
    if not isinstance(gtv, Structure):
        raise GeometryError(f"gtv must be a Structure, got {type(gtv).__name__}")
    out = []
    for s in oars:
        if not isinstance(s, Structure):
            raise GeometryError(
                f"oars must be Structure objects, got {type(s).__name__}; to name OARs use "
                "place_vertices_in(structure_set, ...)"
            )
        gtv.grid.require_same(s.grid, f"OAR {s.name!r}")
        if s.name.casefold() == gtv.name.casefold():
            raise GeometryError(f"the GTV {gtv.name!r} cannot also be an OAR")
        out.append(s)
    return tuple(out)


class VertexConstraints:
    """Feasibility of vertex centres against the GTV margin and the OAR clearance."""

    def __init__(
        self, gtv: Structure, oars: Sequence[Structure], params: LatticeParameters
    ) -> None:
        gtv.require_nonempty("vertex placement")
        grid = gtv.grid
        self.params = params
        r = params.radius_mm
        self.need_gtv = (r if params.whole_spheres_only else 0.0) + params.gtv_margin_mm
        self.need_oar = r + params.oar_clearance_mm
        sp = np.asarray(grid.spacing_mm)
        pad = np.ceil((self.need_oar + 2 * sp.max()) / sp).astype(int)
        lo, hi = gtv.bounding_box_kji()
        lo = np.maximum(lo - pad, 0)
        hi = np.minimum(hi + pad, grid.shape)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        self.crop = grid.crop(lo, hi)
        g_mask = gtv.mask[sl]
        o_mask = np.zeros_like(g_mask)
        for s in oars:
            o_mask |= s.mask[sl]
        self.gtv_mask, self.oar_mask = g_mask, o_mask
        p_min, p_max = float(sp.min()), float(sp.max())
        # Bounds of the exact distance d(c) from the distance transform E at the voxel v
        # nearest to c (E = distance between voxel centres, true spacing):
        #   E(v) - p_max/2 - |c - v| - slack <= d(c) <= E(v) - p_min/2 + |c - v| + slack,
        # slack = (p_max - p_min)/2 for the direction-dependent pitch correction. Points
        # whose bounds decide the test skip the exact k-d tree query.
        self.p_min, self.p_max = p_min, p_max
        self.slack = (p_max - p_min) / 2 + 1e-6
        self.edt_gtv = ndimage.distance_transform_edt(np.pad(g_mask, 1), sampling=sp)[
            1:-1, 1:-1, 1:-1
        ]
        self.has_oars = bool(o_mask.any())
        self.edt_oar = (
            ndimage.distance_transform_edt(~o_mask, sampling=sp) if self.has_oars else None
        )
        half_diag = 0.5 * float(np.linalg.norm(sp))
        maybe = g_mask & (self.edt_gtv - p_min / 2 + half_diag + self.slack >= self.need_gtv)
        if self.has_oars:
            maybe &= ~o_mask & (self.edt_oar - p_min / 2 + half_diag + self.slack >= self.need_oar)
        self.maybe = maybe
        self.gtv_distance = SurfaceDistance(self.crop, boundary_centres(g_mask, self.crop, False))
        self.oar_distance = SurfaceDistance(self.crop, boundary_centres(o_mask, self.crop, True))
        self.T_ijk_from_lps = self.crop.ijk_from_lps

    def _passes(
        self,
        c: NDArray[np.float64],
        near: NDArray[np.float64],
        edt: NDArray[np.float64],
        dist: SurfaceDistance,
        need: float,
    ) -> NDArray[np.bool_]:
        lower = edt - self.p_max / 2 - near - self.slack
        upper = edt - self.p_min / 2 + near + self.slack
        ok = lower >= need
        unsure = np.nonzero(~ok & (upper >= need))[0]
        if len(unsure):
            ok[unsure] = dist(c[unsure], cap_mm=need) >= need - 1e-9
        return ok

    def feasible(self, pts_lps_mm: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether spheres centred at ``pts_lps_mm`` (n, 3) satisfy the GTV and OAR constraints."""
        T = self.T_ijk_from_lps
        ijk_f = pts_lps_mm @ T[:3, :3].T + T[:3, 3]
        ijk = np.rint(ijk_f).astype(np.int64)
        shape = np.array(self.crop.shape[::-1])
        ok = np.all((ijk >= 0) & (ijk < shape), axis=1)
        idx = np.nonzero(ok)[0]
        ok[idx] = self.maybe[ijk[idx, 2], ijk[idx, 1], ijk[idx, 0]]
        idx = np.nonzero(ok)[0]
        if len(idx) == 0:
            return ok
        c = pts_lps_mm[idx]
        v = ijk[idx]
        # |c - v| in mm: index offsets times the pitch (the direction matrix is orthonormal).
        near = np.linalg.norm((ijk_f[idx] - v) * self.crop.spacing_ijk_mm, axis=1)
        kji = (v[:, 2], v[:, 1], v[:, 0])
        good = self._passes(c, near, self.edt_gtv[kji], self.gtv_distance, self.need_gtv)
        if self.has_oars:
            sub = np.nonzero(good)[0]
            good[sub] = self._passes(
                c[sub],
                near[sub],
                self.edt_oar[tuple(a[sub] for a in kji)],
                self.oar_distance,
                self.need_oar,
            )
        ok[idx] = good
        return ok

    def largest_fitting_sphere(self) -> tuple[float, NDArray[np.float64]]:
        """Largest diameter (mm) of a sphere keeping the margin and clearance, and its centre."""
        k, j, i = np.nonzero(self.gtv_mask & ~self.oar_mask)
        if len(k) == 0:
            return 0.0, np.zeros(3)
        c = self.crop.points_lps_mm(np.stack([i, j, k], axis=-1).astype(float))
        room = self.gtv_distance(c) - self.params.gtv_margin_mm
        if self.has_oars:
            room = np.minimum(room, self.oar_distance(c) - self.params.oar_clearance_mm)
        n = int(np.argmax(room))
        return max(0.0, 2.0 * float(room[n])), c[n]
