"""The viewer's data: CT, structures, doses, DVHs and 3D meshes packed for one HTML page.

Arrays travel as base64 text of zlib-deflated bytes (the browser inflates them
with its own ``DecompressionStream('deflate')``): the CT as int16 HU, each dose
as uint16 on its own grid with a scale to Gy, each structure as a bit-packed
mask over its bounding box on the CT grid. The CT is subsampled by a whole
stride per axis when it holds more than ``max_ct_voxels`` voxels; doses and
DVHs are not touched.

EQD2 uses one alpha/beta per structure (:func:`default_alpha_beta_gy`: targets
10 Gy, spinal cord and cauda equina 2 Gy, other tissue 3 Gy) and each plan's
number of fractions; outside every structure the page uses 3 Gy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.radiobiology import ALPHA_BETA_LATE_GY, default_alpha_beta_gy, eqd2_gy
from lattice_plan.dose.beam import Beam
from lattice_plan.errors import AnalysisError, VisualizationError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.iec import source_position_lps_mm
from lattice_plan.geometry.structure import DVH_KINDS, Structure, StructureKind, structure_on_grid
from lattice_plan.geometry.volume import Volume
from lattice_plan.viz.viewer.meshes import plan_meshes, structure_meshes
from lattice_plan.viz.viewer.packing import pack_bytes

#: The CT is subsampled above this many voxels (int16: 2 bytes each before deflate).
MAX_CT_VOXELS = 8_000_000
#: Points kept per DVH curve (the page draws and hovers these).
MAX_DVH_POINTS = 400


@dataclass(frozen=True)
class ViewerPlan:
    """One plan for the viewer: its dose (Gy, total over all fractions) and what labels it.

    ``prescription_gy`` is the total prescribed dose (for % levels); ``arm`` is
    SFRT, SCART, CRT or any label.
    """

    name: str
    arm: str
    dose: Volume
    fractions: int
    prescription_gy: float
    beams: tuple[Beam, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise VisualizationError("a viewer plan needs a non-empty name")
        if self.dose.unit != "Gy":
            raise VisualizationError(
                f"plan {self.name!r}: the viewer needs the dose in Gy, got unit {self.dose.unit!r}"
            )
        if int(self.fractions) < 1:
            raise VisualizationError(
                f"plan {self.name!r}: fractions must be at least 1, got {self.fractions}"
            )
        if not np.isfinite(self.prescription_gy) or self.prescription_gy <= 0:
            raise VisualizationError(
                f"plan {self.name!r}: the prescription must be a positive dose in Gy, "
                f"got {self.prescription_gy}"
            )


def _grid_entry(grid: Grid) -> dict:
    return {
        "shape": [int(n) for n in grid.shape],
        "lps_from_ijk": np.round(grid.lps_from_ijk, 6).tolist(),
    }


def _subsample_stride(shape: tuple[int, int, int], max_voxels: int) -> int:
    stride = 1
    while np.prod([-(-n // stride) for n in shape]) > max_voxels:
        stride += 1
    return stride


def ct_entry(ct: Volume, max_voxels: int = MAX_CT_VOXELS) -> tuple[dict, Grid]:
    """The CT (int16 HU, subsampled above ``max_voxels``) and the grid it is shown on."""
    stride = _subsample_stride(ct.grid.shape, max_voxels)
    hu = np.asarray(ct.array)[::stride, ::stride, ::stride]
    grid = ct.grid
    if stride > 1:
        grid = Grid(
            hu.shape,
            tuple(float(s) * stride for s in grid.spacing_mm),
            grid.origin_lps_mm,
            grid.direction,
            grid.patient_position,
        )
    data = np.clip(np.rint(hu), -1024, 32767).astype("<i2")
    return {**_grid_entry(grid), "data": pack_bytes(data.tobytes()), "stride": stride}, grid


def _vertex_centres_ijk(structure: Structure) -> list[list[float]]:
    """Centres (CT index i, j, k) of the connected parts of a vertex structure."""
    labels, n = ndimage.label(structure.mask)
    if n == 0:
        return []
    centres = ndimage.center_of_mass(structure.mask, labels, range(1, n + 1))
    return [[round(c[2], 2), round(c[1], 2), round(c[0], 2)] for c in centres]


def structure_entry(structure: Structure, grid: Grid) -> dict | None:
    """One structure on the shown CT grid (None when it has no voxel there)."""
    s = structure if structure.grid.same_as(grid) else structure_on_grid(structure, grid)
    if s.is_empty:
        return None
    lo, hi = s.bounding_box_kji()
    box = np.asarray(s.mask)[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return {
        "name": s.name,
        "kind": s.kind.value,
        "color": [int(c) for c in (s.color or (200, 200, 200))],
        "alpha_beta_gy": default_alpha_beta_gy(s),
        "volume_cc": round(float(structure.volume_cc), 3),
        "box_lo": [int(v) for v in lo],
        "box_shape": [int(v) for v in box.shape],
        "mask": pack_bytes(np.packbits(box.ravel()).tobytes()),
        "vertices_ijk": _vertex_centres_ijk(s) if s.kind is StructureKind.VERTEX else [],
    }


def _dvh_entry(plan: ViewerPlan, structure: Structure) -> dict | None:
    try:
        dvh = DVH.from_dose(plan.dose, structure, allow_partial=True)
    except AnalysisError:  # the structure lies outside the dose grid: no DVH
        return None
    dose = np.asarray(dvh.dose_edges_gy, dtype=float)
    volume = np.asarray(dvh.cumulative_percent, dtype=float)
    if len(dose) > MAX_DVH_POINTS:  # keep the curve's own points, evenly thinned
        keep = np.unique(np.linspace(0, len(dose) - 1, MAX_DVH_POINTS).round().astype(int))
        dose, volume = dose[keep], volume[keep]
    ab = default_alpha_beta_gy(structure)
    return {
        "structure": structure.name,
        "alpha_beta_gy": ab,
        "dose_gy": np.round(dose, 3).tolist(),
        "eqd2_gy": np.round(eqd2_gy(dose, plan.fractions, ab), 3).tolist(),
        "volume_pct": np.round(volume, 3).tolist(),
    }


def _beam_entry(beam: Beam, patient_position: str, length_mm: float) -> dict:
    iso = np.asarray(beam.isocenter_lps_mm, dtype=float)
    src = source_position_lps_mm(
        iso, beam.gantry_deg, beam.couch_deg, patient_position, beam.sad_mm
    )
    axis = (src - iso) / np.linalg.norm(src - iso)
    start = iso + axis * min(length_mm, beam.sad_mm)
    return {
        "name": beam.name,
        "gantry_deg": float(beam.gantry_deg),
        "from_lps_mm": np.round(start, 2).tolist(),
        "to_lps_mm": np.round(iso, 2).tolist(),
    }


def dose_entry(dose: Volume) -> dict:
    """A dose on its own grid: uint16 steps of ``scale_gy`` (at most 1/65535 of the maximum)."""
    arr = np.clip(np.asarray(dose.array, dtype=np.float64), 0.0, None)
    top = float(arr.max()) if arr.size else 0.0
    scale = top / 65535.0 if top > 0 else 1.0
    data = np.rint(arr / scale).astype("<u2")
    return {
        **_grid_entry(dose.grid),
        "scale_gy": scale,
        "max_gy": top,
        "data": pack_bytes(data.tobytes()),
    }


def viewer_payload(
    ct: Volume,
    structures: Sequence[Structure],
    plans: Sequence[ViewerPlan],
    title: str = "",
    reference_plan: str | None = "CRT",
    meshes: bool = True,
    max_ct_voxels: int = MAX_CT_VOXELS,
) -> dict:
    """Everything the page shows, as JSON-ready data (see the module docstring)."""
    if ct.unit != "HU":
        raise VisualizationError(f"the viewer needs the CT in HU, got unit {ct.unit!r}")
    if not plans:
        raise VisualizationError("the viewer needs at least one plan with a dose")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise VisualizationError(f"plan names must differ, got {names}")
    ct_data, grid = ct_entry(ct, max_ct_voxels)
    entries = [e for s in structures if (e := structure_entry(s, grid)) is not None]
    shown = {e["name"] for e in entries}
    dvh_structures = [s for s in structures if s.kind in DVH_KINDS and s.name in shown]
    body_mm = float(np.max(np.asarray(grid.spacing_mm) * np.asarray(grid.shape)))
    plan_entries = []
    for p in plans:
        plan_entries.append(
            {
                "name": p.name,
                "arm": p.arm,
                "fractions": int(p.fractions),
                "prescription_gy": float(p.prescription_gy),
                "dose": dose_entry(p.dose),
                "dvh": [d for s in dvh_structures if (d := _dvh_entry(p, s)) is not None],
                "beams": [_beam_entry(b, grid.patient_position, 0.6 * body_mm) for b in p.beams],
                "isodose_meshes": plan_meshes(p.dose, p.prescription_gy) if meshes else [],
            }
        )
    return {
        "format": 1,
        "title": title,
        "reference_plan": reference_plan if reference_plan in names else None,
        "default_alpha_beta_gy": ALPHA_BETA_LATE_GY,
        "ct": ct_data,
        "structures": entries,
        "plans": plan_entries,
        "meshes": structure_meshes(structures) if meshes else [],
    }
