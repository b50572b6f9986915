"""Triangle meshes for the viewer's 3D panel: structure surfaces and isodose surfaces.

The surfaces come from :mod:`lattice_plan.viz.scene3d` (marching cubes on the
masks and the dose) and are decimated to at most ``max_triangles`` each so the
page stays small; points travel as float32 LPS mm, triangles as uint32 indices,
both deflated (:func:`~lattice_plan.viz.viewer.packing.pack_bytes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyvista as pv

from lattice_plan.geometry.structure import Structure, StructureKind
from lattice_plan.geometry.volume import Volume
from lattice_plan.viz.scene3d import isodose_surface, structure_surface
from lattice_plan.viz.viewer.packing import pack_bytes

#: Triangles kept per surface after decimation.
MAX_TRIANGLES = 6000
#: Isodose surfaces drawn per plan, as fractions of the prescription.
ISODOSE_FRACTIONS = (0.5, 1.0)
#: Structure kinds drawn in 3D (rings, avoidance shells and valleys would hide the rest).
MESH_KINDS = frozenset(
    {
        StructureKind.EXTERNAL,
        StructureKind.GTV,
        StructureKind.PTV,
        StructureKind.OAR,
        StructureKind.VERTEX,
        StructureKind.CORE,
    }
)


def mesh_entry(mesh: pv.PolyData, max_triangles: int = MAX_TRIANGLES) -> dict | None:
    """Points and triangles of ``mesh`` (decimated to ``max_triangles``); None when empty."""
    if mesh.n_points == 0 or mesh.n_cells == 0:
        return None
    tri = mesh.triangulate()
    if tri.n_cells > max_triangles:
        tri = tri.decimate_pro(1.0 - max_triangles / tri.n_cells, preserve_topology=True)
    faces = np.asarray(tri.faces).reshape(-1, 4)[:, 1:]
    return {
        "n_points": int(tri.n_points),
        "n_triangles": len(faces),
        "points": pack_bytes(np.asarray(tri.points, dtype="<f4").tobytes()),
        "triangles": pack_bytes(faces.astype("<u4").tobytes()),
    }


def structure_meshes(structures: Sequence[Structure]) -> list[dict]:
    """Surfaces of the drawn structures with their names, kinds and colours."""
    out = []
    for s in structures:
        if s.kind not in MESH_KINDS or s.is_empty:
            continue
        entry = mesh_entry(structure_surface(s, smoothing_iterations=10))
        if entry is not None:
            color = [int(c) for c in (s.color or (200, 200, 200))]
            out.append({"name": s.name, "kind": s.kind.value, "color": color, **entry})
    return out


def plan_meshes(dose: Volume, prescription_gy: float) -> list[dict]:
    """Isodose surfaces of one plan at :data:`ISODOSE_FRACTIONS` of the prescription.

    A level at or within 0.1 % of the dose maximum is left out (its surface
    would shrink to a point).
    """
    out = []
    top = float(np.max(dose.array))
    for fraction in ISODOSE_FRACTIONS:
        if fraction * prescription_gy >= 0.999 * top:  # at the maximum: no surface to draw
            continue
        entry = mesh_entry(isodose_surface(dose, fraction * prescription_gy))
        if entry is not None:
            out.append(
                {"percent": round(100 * fraction), "level_gy": fraction * prescription_gy, **entry}
            )
    return out
