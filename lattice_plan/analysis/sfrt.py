"""SFRT (lattice) and SCART dose metrics: PVDR variants, peak and valley doses, onion layers.

Inputs are plain :class:`Structure` objects, so any source of vertices works:
the vertices as one merged structure or as a list of per-vertex structures, a
valley structure (GTV minus the expanded vertices), the GTV, and, for profile
PVDR, the vertex centres in LPS mm.

PVDR variants (peak-to-valley dose ratio):
- ``D10/D90``: D10 / D90 of the GTV DVH;
- ``mean``: mean dose of the vertices / mean dose of the valley (volume weighted);
- ``point``: maximum vertex dose / minimum valley dose;
- ``profile``: along the segment joining each pair of neighbouring vertex
  centres, the mean of the two centre doses over the minimum dose on the
  segment; the mean over all pairs (per-pair values in :class:`ProfilePVDR`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.metric_strings import MetricSpec, parse_metric
from lattice_plan.analysis.radiobiology import ALPHA_BETA_TUMOUR_GY, bed_gy, eqd2_gy, eud_gy
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.morphology import connected_components, contract_mask
from lattice_plan.geometry.sampling import sample_dose
from lattice_plan.geometry.structure import Structure
from lattice_plan.geometry.volume import Volume

log = logging.getLogger(__name__)

Vertices = Structure | Sequence[Structure]


def _as_list(vertices: Vertices) -> list[Structure]:
    items = [vertices] if isinstance(vertices, Structure) else list(vertices)
    if not items:
        raise AnalysisError(
            "no vertex structures given; pass the merged vertices or a list of them"
        )
    for s in items:
        if not isinstance(s, Structure):
            raise AnalysisError(f"vertices must be Structure objects, got {type(s).__name__}")
    return items


def combined_dvh(
    dose: Volume, structures: Vertices, name: str | None = None, allow_partial: bool = False
) -> DVH:
    """One DVH of the union of ``structures`` (assumed not to overlap), on any grids."""
    items = _as_list(structures)
    doses, weights = [], []
    for s in items:
        samples = sample_dose(dose, s, allow_partial=allow_partial)
        doses.append(samples.dose_gy)
        weights.append(samples.weights_cc)
    label = name or (items[0].name if len(items) == 1 else f"{items[0].name} (+{len(items) - 1})")
    return DVH.from_samples(label, np.concatenate(doses), np.concatenate(weights))


def vertex_count(vertices: Vertices) -> int:
    """Number of vertices: the list length, or the connected pieces of a merged structure."""
    items = _as_list(vertices)
    if len(items) == 1:
        return len(connected_components(items[0]))
    return sum(1 for s in items if not s.is_empty)


def pvdr_d10_d90(dose: Volume, gtv: Structure) -> float:
    """PVDR as D10 / D90 of the GTV."""
    dvh = DVH.from_dose(dose, gtv)
    return _ratio(dvh.dose_at_volume_percent(10.0), dvh.dose_at_volume_percent(90.0), "GTV D90")


def pvdr_mean(dose: Volume, vertices: Vertices, valley: Structure) -> float:
    """PVDR as mean vertex dose / mean valley dose (volume weighted)."""
    peak = combined_dvh(dose, vertices).mean_gy
    return _ratio(peak, DVH.from_dose(dose, valley).mean_gy, "mean valley dose")


def pvdr_point(dose: Volume, vertices: Vertices, valley: Structure) -> float:
    """PVDR as maximum vertex dose / minimum valley dose."""
    peak = combined_dvh(dose, vertices).max_gy
    return _ratio(peak, DVH.from_dose(dose, valley).min_gy, "minimum valley dose")


def _ratio(num: float, den: float, what: str) -> float:
    if den <= 0:
        raise AnalysisError(f"PVDR is undefined: the {what} is {den:.4g} Gy (must be > 0)")
    return float(num / den)


@dataclass(frozen=True)
class ProfilePVDR:
    """Profile PVDR along the segments joining neighbouring vertex centres.

    pairs: (m, 2) indices into the centres; peak_gy: mean of the two centre doses;
    valley_gy: minimum dose on the segment; pvdr: peak / valley per pair; mean_pvdr: their mean.
    """

    pairs: NDArray[np.int64]
    peak_gy: NDArray[np.float64]
    valley_gy: NDArray[np.float64]
    pvdr: NDArray[np.float64]

    @property
    def mean_pvdr(self) -> float:
        return float(self.pvdr.mean())


def neighbour_pairs(centers_lps_mm: ArrayLike, tolerance: float = 0.25) -> NDArray[np.int64]:
    """Pairs (i, j), i < j, of centres no farther apart than (1 + tolerance) x the smaller
    of the two centres' nearest-neighbour distances."""
    c = np.asarray(centers_lps_mm, dtype=float)
    if c.ndim != 2 or c.shape[1] != 3 or len(c) < 2:
        raise AnalysisError(
            f"profile PVDR needs at least two vertex centres as an (n, 3) LPS array, got shape {c.shape}"
        )
    tree = cKDTree(c)
    dnn = tree.query(c, k=2)[0][:, 1]
    pairs = np.array(sorted(tree.query_pairs(float(dnn.max()) * (1 + tolerance))), dtype=np.int64)
    d = np.linalg.norm(c[pairs[:, 0]] - c[pairs[:, 1]], axis=1)
    keep = d <= (1 + tolerance) * np.minimum(dnn[pairs[:, 0]], dnn[pairs[:, 1]])
    return pairs[keep]


def pvdr_profiles(
    dose: Volume,
    vertex_centers_lps_mm: ArrayLike,
    step_mm: float = 0.5,
    tolerance: float = 0.25,
) -> ProfilePVDR:
    """Profile PVDR between neighbouring vertex centres (see :func:`neighbour_pairs`).

    The dose is interpolated trilinearly every ``step_mm`` along each segment.
    """
    if dose.unit != "Gy":
        raise AnalysisError(f"PVDR needs a dose Volume in Gy, got unit {dose.unit!r}")
    c = np.asarray(vertex_centers_lps_mm, dtype=float)
    pairs = neighbour_pairs(c, tolerance)
    inside = dose.grid.contains_lps(c)
    if not inside.all():
        raise AnalysisError(
            f"vertex centres {np.nonzero(~inside)[0].tolist()} lie outside the dose grid; "
            "check the centres' frame (LPS mm) or extend the dose grid"
        )
    arr = np.asarray(dose.array, dtype=float)
    peaks, valleys = [], []
    for a, b in pairs:
        n = max(int(np.ceil(np.linalg.norm(c[b] - c[a]) / step_mm)), 2) + 1
        t = np.linspace(0.0, 1.0, n)[:, None]
        ijk = dose.grid.continuous_ijk(c[a] + t * (c[b] - c[a]))
        prof = ndimage.map_coordinates(arr, ijk[:, ::-1].T, order=1, mode="nearest")
        peaks.append(0.5 * (prof[0] + prof[-1]))
        valleys.append(prof.min())
    peak, valley = np.array(peaks), np.array(valleys)
    if np.any(valley <= 0):
        raise AnalysisError("profile PVDR is undefined: a profile between vertices reaches 0 Gy")
    return ProfilePVDR(pairs, peak, valley, peak / valley)


def evaluate_pvdr(
    dose: Volume,
    metric: str | MetricSpec = "PVDR",
    *,
    gtv: Structure | None = None,
    vertices: Vertices | None = None,
    valley: Structure | None = None,
    vertex_centers_lps_mm: ArrayLike | None = None,
    n_fractions: int | None = None,
    alpha_beta_gy: float = ALPHA_BETA_TUMOUR_GY,
) -> float:
    """Value of a PVDR metric string (``PVDR``, ``PVDR[mean]``, ``EQD2:PVDR[point]``...).

    Pass the structures the variant needs: D10/D90 the GTV; mean and point the
    vertices and the valley; profile the vertex centres. ``EQD2:`` converts the
    dose voxel by voxel with ``alpha_beta_gy`` and ``n_fractions`` first.
    """
    spec = parse_metric(metric)
    if spec.kind != "pvdr":
        raise AnalysisError(f"metric {spec.text!r} is not a PVDR metric; use evaluate_metric")
    if spec.quantity != "physical":
        if n_fractions is None:
            raise AnalysisError(f"metric {spec.text!r} needs n_fractions to convert the dose")
        f = eqd2_gy if spec.quantity == "EQD2" else bed_gy
        dose = Volume(f(dose.array, n_fractions, alpha_beta_gy), dose.grid, "Gy")
    variant = spec.pvdr_variant
    if variant == "D10/D90":
        if gtv is None:
            raise AnalysisError(f"metric {spec.text!r} needs the GTV (gtv=...)")
        return pvdr_d10_d90(dose, gtv)
    if variant in ("mean", "point"):
        if vertices is None or valley is None:
            raise AnalysisError(
                f"metric {spec.text!r} needs the vertices and the valley (vertices=..., valley=...)"
            )
        return (pvdr_mean if variant == "mean" else pvdr_point)(dose, vertices, valley)
    if vertex_centers_lps_mm is None:
        raise AnalysisError(
            f"metric {spec.text!r} needs the vertex centres (vertex_centers_lps_mm=...)"
        )
    return pvdr_profiles(dose, vertex_centers_lps_mm).mean_pvdr


@dataclass(frozen=True)
class SfrtMetrics:
    """Lattice plan metrics (doses in Gy, density in vertices per 100 cc of GTV)."""

    vertex_count: int
    vertex_density_per_100cc: float
    peak_mean_gy: float
    peak_d50_gy: float
    valley_mean_gy: float
    valley_d50_gy: float
    valley_d90_gy: float
    pvdr_d10_d90: float
    pvdr_mean: float
    pvdr_point: float
    pvdr_profile: float | None
    gtv_eud_gy: float

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def sfrt_metrics(
    dose: Volume,
    gtv: Structure,
    vertices: Vertices,
    valley: Structure,
    n_fractions: int,
    vertex_centers_lps_mm: ArrayLike | None = None,
    alpha_per_gy: float = 0.3,
    alpha_beta_gy: float = ALPHA_BETA_TUMOUR_GY,
) -> SfrtMetrics:
    """Peak, valley, PVDR variants, vertex count and density, and the GTV's EUD (LQ survival)."""
    peak = combined_dvh(dose, vertices)
    val = DVH.from_dose(dose, valley)
    g = DVH.from_dose(dose, gtv)
    count = vertex_count(vertices)
    profile = None
    if vertex_centers_lps_mm is not None and len(np.asarray(vertex_centers_lps_mm)) >= 2:
        profile = pvdr_profiles(dose, vertex_centers_lps_mm).mean_pvdr
    return SfrtMetrics(
        vertex_count=count,
        vertex_density_per_100cc=100.0 * count / gtv.volume_cc,
        peak_mean_gy=peak.mean_gy,
        peak_d50_gy=peak.dose_at_volume_percent(50.0),
        valley_mean_gy=val.mean_gy,
        valley_d50_gy=val.dose_at_volume_percent(50.0),
        valley_d90_gy=val.dose_at_volume_percent(90.0),
        pvdr_d10_d90=_ratio(
            g.dose_at_volume_percent(10.0), g.dose_at_volume_percent(90.0), "GTV D90"
        ),
        pvdr_mean=_ratio(peak.mean_gy, val.mean_gy, "mean valley dose"),
        pvdr_point=_ratio(peak.max_gy, val.min_gy, "minimum valley dose"),
        pvdr_profile=profile,
        gtv_eud_gy=eud_gy(g, n_fractions, alpha_per_gy, alpha_beta_gy),
    )


@dataclass(frozen=True)
class OnionLayer:
    """One concentric shell of the GTV, ``inner_mm``-``outer_mm`` deep from its surface."""

    index: int
    inner_mm: float
    outer_mm: float
    volume_cc: float
    mean_gy: float
    d10_gy: float
    d90_gy: float


def onion_layer_masks(gtv: Structure, n_layers: int = 5) -> tuple[list[NDArray[np.bool_]], float]:
    """Masks of ``n_layers`` shells of equal thickness from the GTV surface (layer 0) to its core.

    Depth is the distance (true voxel spacing) from a voxel centre to the nearest
    centre outside the GTV minus half the mean pitch, i.e. to the surface the mask
    represents. Returns the masks and the shell thickness in mm.
    """
    if int(n_layers) != n_layers or n_layers < 1:
        raise AnalysisError(f"n_layers must be a positive whole number, got {n_layers!r}")
    if gtv.is_empty:
        raise AnalysisError(f"structure {gtv.name!r} is empty; onion layers need a non-empty GTV")
    sp = np.asarray(gtv.grid.spacing_mm)
    padded = np.pad(gtv.mask, 1)
    depth = ndimage.distance_transform_edt(padded, sampling=sp)[1:-1, 1:-1, 1:-1]
    depth = np.maximum(depth - 0.5 * float(np.prod(sp) ** (1 / 3)), 0.0)
    max_depth = float(depth[gtv.mask].max())
    thickness = max_depth / n_layers
    if thickness <= 0:
        raise AnalysisError(f"structure {gtv.name!r} is too thin for onion layers")
    layer = np.minimum((depth / thickness).astype(int), n_layers - 1)
    masks = [gtv.mask & (layer == i) for i in range(n_layers)]
    empty = [i for i, m in enumerate(masks) if not m.any()]
    if empty:
        raise AnalysisError(
            f"structure {gtv.name!r} ({max_depth:.1f} mm deep) gives empty onion layers {empty} "
            f"with {n_layers} layers; use fewer layers"
        )
    return masks, thickness


def onion_layers(dose: Volume, gtv: Structure, n_layers: int = 5) -> list[OnionLayer]:
    """Mean, D10 and D90 of ``n_layers`` concentric GTV shells, surface (index 0) to core."""
    masks, thickness = onion_layer_masks(gtv, n_layers)
    out = []
    for i, mask in enumerate(masks):
        layer = gtv.with_mask(mask, name=f"{gtv.name}_layer{i + 1}", keep_slice_span=True)
        dvh = DVH.from_dose(dose, layer)
        out.append(
            OnionLayer(
                i,
                i * thickness,
                (i + 1) * thickness,
                dvh.volume_cc,
                dvh.mean_gy,
                dvh.dose_at_volume_percent(10.0),
                dvh.dose_at_volume_percent(90.0),
            )
        )
    return out


@dataclass(frozen=True)
class ScartMetrics:
    """SCART metrics (Gy): STV D95/D50, mean dose of the GTV edge shell, STV mean / edge mean."""

    stv_d95_gy: float
    stv_d50_gy: float
    stv_mean_gy: float
    gtv_edge_mean_gy: float
    core_to_edge_ratio: float
    edge_thickness_mm: float


def gtv_edge(gtv: Structure, thickness_mm: float = 3.0) -> Structure:
    """The outer shell of the GTV, ``thickness_mm`` thick (GTV minus GTV contracted)."""
    inner = contract_mask(gtv.mask, gtv.grid.spacing_mm, thickness_mm)
    edge = gtv.mask & ~inner
    if not edge.any():
        raise AnalysisError(f"the {thickness_mm:g} mm edge of {gtv.name!r} is empty")
    return gtv.with_mask(edge, name=f"{gtv.name}_edge{thickness_mm:g}mm", keep_slice_span=True)


def scart_metrics(
    dose: Volume, stv: Structure, gtv: Structure, edge_thickness_mm: float = 3.0
) -> ScartMetrics:
    """STV D95 and D50, the GTV edge mean dose and the core-to-edge ratio (STV mean / edge mean)."""
    s = DVH.from_dose(dose, stv)
    edge = DVH.from_dose(dose, gtv_edge(gtv, edge_thickness_mm))
    return ScartMetrics(
        stv_d95_gy=s.dose_at_volume_percent(95.0),
        stv_d50_gy=s.dose_at_volume_percent(50.0),
        stv_mean_gy=s.mean_gy,
        gtv_edge_mean_gy=edge.mean_gy,
        core_to_edge_ratio=_ratio(s.mean_gy, edge.mean_gy, "GTV edge mean dose"),
        edge_thickness_mm=float(edge_thickness_mm),
    )
