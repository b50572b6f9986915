"""Margins and Boolean operations on structures.

Margins use Euclidean distance transforms on the true (possibly anisotropic)
voxel spacing, on the cropped bounding box of the mask (fast for small
structures on large grids). A voxel belongs to ``expand(s, m)`` when its centre
lies within ``m`` mm (plus a small surface offset, see below) of a voxel centre
of ``s``, and to ``contract(s, m)`` when its centre lies more than ``m`` mm
from every voxel centre outside ``s``.

The nearest voxel centre of a mask lies a fraction of a pitch inside the
surface the mask represents, so a plain centre-to-centre threshold moves the
surface by slightly less than ``m``. Surface offsets of a fraction of the
geometric-mean pitch correct for it (0.25 for expansion, 0.2 for
contraction; the asymmetry comes from the curvature of convex shapes). Measured
on spheres of radius 20-40 mm with margins of 3-10 mm at 1, 2 and 1x1x2.5 mm
voxels, the results are within 2 % of 4/3 pi (r +/- m)^3 (up to 5 % off
without the offsets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.structure import Structure, StructureKind

_EXPANSION_SURFACE_OFFSET = 0.25
_CONTRACTION_SURFACE_OFFSET = 0.2


def _mean_pitch(spacing_mm: NDArray[np.float64]) -> float:
    return float(np.prod(spacing_mm) ** (1.0 / 3.0))


def _check_margin(margin_mm: float, what: str) -> float:
    m = float(margin_mm)
    if not np.isfinite(m) or m < 0:
        raise GeometryError(
            f"{what} margin must be a non-negative distance in mm, got {margin_mm!r}; "
            "use contract() to shrink and expand() to grow"
        )
    return m


def _pad_crop(
    mask: NDArray[np.bool_], pad_kji: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], tuple[slice, ...], tuple[slice, ...]]:
    """Crop ``mask`` to its bounding box padded by ``pad_kji`` voxels (zero-padded past the edges).

    Returns the padded sub-array, the slices of the original array it covers,
    and the slices of the sub-array that correspond to them.
    """
    idx = np.nonzero(mask)
    lo = np.array([a.min() for a in idx]) - pad_kji
    hi = np.array([a.max() + 1 for a in idx]) + pad_kji
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(hi, mask.shape)
    sub = np.zeros(tuple(hi - lo), dtype=bool)
    dst = tuple(slice(int(a - l), int(b - l)) for a, b, l in zip(src_lo, src_hi, lo, strict=True))
    src = tuple(slice(int(a), int(b)) for a, b in zip(src_lo, src_hi, strict=True))
    sub[dst] = mask[src]
    return sub, src, dst


def expand_mask(
    mask: NDArray[np.bool_], spacing_mm: tuple[float, float, float], margin_mm: float
) -> NDArray[np.bool_]:
    """Mask grown by ``margin_mm`` (array order [k, j, i], spacing in the same order)."""
    m = _check_margin(margin_mm, "expansion")
    if m == 0 or not mask.any():
        return mask.copy()
    sp = np.asarray(spacing_mm, dtype=float)
    pad = np.ceil(m / sp).astype(int) + 2
    sub, src, dst = _pad_crop(mask, pad)
    dist = ndimage.distance_transform_edt(~sub, sampling=sp)
    grown = dist <= m + _EXPANSION_SURFACE_OFFSET * _mean_pitch(sp)
    out = np.zeros_like(mask)
    out[src] = grown[dst]
    return out


def contract_mask(
    mask: NDArray[np.bool_], spacing_mm: tuple[float, float, float], margin_mm: float
) -> NDArray[np.bool_]:
    """Mask shrunk by ``margin_mm``; space beyond the grid edge counts as outside."""
    m = _check_margin(margin_mm, "contraction")
    if m == 0 or not mask.any():
        return mask.copy()
    sp = np.asarray(spacing_mm, dtype=float)
    sub, src, dst = _pad_crop(mask, np.ones(3, dtype=int))
    dist = ndimage.distance_transform_edt(sub, sampling=sp)
    kept = dist > m + _CONTRACTION_SURFACE_OFFSET * _mean_pitch(sp)
    out = np.zeros_like(mask)
    out[src] = kept[dst]
    return out


def expand(
    structure: Structure,
    margin_mm: float,
    name: str | None = None,
    kind: StructureKind | str | None = None,
) -> Structure:
    """``structure`` grown isotropically by ``margin_mm`` (mm, >= 0)."""
    grown = expand_mask(structure.mask, structure.grid.spacing_mm, margin_mm)
    return structure.with_mask(grown, name or f"{structure.name}+{margin_mm:g}mm", kind)


def contract(
    structure: Structure,
    margin_mm: float,
    name: str | None = None,
    kind: StructureKind | str | None = None,
) -> Structure:
    """``structure`` shrunk isotropically by ``margin_mm`` (mm, >= 0); may be empty."""
    shrunk = contract_mask(structure.mask, structure.grid.spacing_mm, margin_mm)
    return structure.with_mask(shrunk, name or f"{structure.name}-{margin_mm:g}mm", kind)


def ring(
    structure: Structure,
    inner_margin_mm: float,
    outer_margin_mm: float,
    name: str | None = None,
    kind: StructureKind | str = StructureKind.RING,
) -> Structure:
    """Shell between ``inner_margin_mm`` and ``outer_margin_mm`` outside ``structure``."""
    inner = _check_margin(inner_margin_mm, "inner ring")
    outer = _check_margin(outer_margin_mm, "outer ring")
    if outer <= inner:
        raise GeometryError(
            f"ring outer margin ({outer} mm) must exceed its inner margin ({inner} mm)"
        )
    sp = structure.grid.spacing_mm
    shell = expand_mask(structure.mask, sp, outer) & ~expand_mask(structure.mask, sp, inner)
    if inner == 0:
        shell &= ~structure.mask
    return structure.with_mask(shell, name or f"{structure.name}_Ring{inner:g}-{outer:g}mm", kind)


def _require_same_grid(a: Structure, b: Structure, op: str) -> None:
    a.grid.require_same(b.grid, f"{op}: structure {b.name!r} (combined with {a.name!r})")


def _derived(
    first: Structure,
    mask: NDArray,
    name: str,
    kind: StructureKind | str | None,
    span: NDArray | None,
) -> Structure:
    """A structure combined from ``first`` and others: its kind (and colour) unless given."""
    new_kind = first.kind if kind is None else StructureKind.parse(kind)
    color = first.color if new_kind == first.kind else None
    return Structure(name, mask, first.grid, new_kind, color, span)


def _combined_slice_span(structures: Sequence[Structure], union: bool) -> NDArray | None:
    """Slice spans of a union (per slice the hull of the spans of the structures filling it)
    or an intersection (their overlap; the first one's span where they do not overlap)."""
    if all(s.slice_span is None for s in structures):
        return None
    nk = structures[0].grid.shape[0]
    whole = np.tile([-0.5, 0.5], (nk, 1))
    spans = [s.slice_span if s.slice_span is not None else whole for s in structures]
    filled = [s.mask.any(axis=(1, 2)) for s in structures]
    lo = np.where(filled[0], spans[0][:, 0], np.inf if union else -np.inf)
    hi = np.where(filled[0], spans[0][:, 1], -np.inf if union else np.inf)
    for span, f in zip(spans[1:], filled[1:], strict=True):
        if union:
            lo[f], hi[f] = np.minimum(lo[f], span[f, 0]), np.maximum(hi[f], span[f, 1])
        else:
            lo[f], hi[f] = np.maximum(lo[f], span[f, 0]), np.minimum(hi[f], span[f, 1])
    bad = ~np.isfinite(lo) | ~np.isfinite(hi) | (hi - lo <= 1e-9)
    lo[bad], hi[bad] = spans[0][bad, 0], spans[0][bad, 1]
    return np.stack([lo, hi], axis=1)


def union(*structures: Structure, name: str, kind: StructureKind | str | None = None) -> Structure:
    """Voxels in any of ``structures`` (partly filled slices keep the hull of their spans)."""
    if not structures:
        raise GeometryError("union needs at least one structure")
    mask = structures[0].mask.copy()
    for s in structures[1:]:
        _require_same_grid(structures[0], s, "union")
        mask |= s.mask
    first = structures[0]
    span = _combined_slice_span(structures, union=True)
    return _derived(first, mask, name, kind, span)


def intersection(
    *structures: Structure, name: str, kind: StructureKind | str | None = None
) -> Structure:
    """Voxels in every one of ``structures`` (partly filled slices keep the overlap of spans)."""
    if not structures:
        raise GeometryError("intersection needs at least one structure")
    mask = structures[0].mask.copy()
    for s in structures[1:]:
        _require_same_grid(structures[0], s, "intersection")
        mask &= s.mask
    first = structures[0]
    span = _combined_slice_span(structures, union=False)
    return _derived(first, mask, name, kind, span)


def subtract(
    base: Structure, *others: Structure, name: str, kind: StructureKind | str | None = None
) -> Structure:
    """Voxels of ``base`` in none of ``others`` (with ``base``'s slice spans)."""
    mask = base.mask.copy()
    for s in others:
        _require_same_grid(base, s, "subtract")
        mask &= ~s.mask
    return base.with_mask(mask, name, kind, keep_slice_span=True)


def connected_components(structure: Structure, connectivity: int = 3) -> list[Structure]:
    """The connected pieces of ``structure``, largest first.

    ``connectivity`` 1 joins face neighbours only, 2 also edges, 3 also corners (26-connected).
    """
    if connectivity not in (1, 2, 3):
        raise GeometryError(f"connectivity must be 1, 2 or 3, got {connectivity!r}")
    labels, n = ndimage.label(
        structure.mask, structure=ndimage.generate_binary_structure(3, connectivity)
    )
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    return [
        structure.with_mask(labels == (idx + 1), f"{structure.name}_part{rank + 1}")
        for rank, idx in enumerate(order)
    ]
