"""Structures (binary masks on a grid) and ordered, name-unique structure sets."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lattice_plan.errors import GeometryError, StructureNotFoundError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.volume import resample_array


def mask_bounding_box_kji(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Half-open index box (lo, hi), [k, j, i] order, of a non-empty mask.

    Found from the per-axis projections (``mask.any``), several times faster
    than ``np.nonzero`` over a large grid.
    """
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        lo.append(int(hits[0]))
        hi.append(int(hits[-1]) + 1)
    return np.array(lo), np.array(hi)


class StructureKind(enum.Enum):
    """What a structure is for; maps onto DICOM RT ROI Interpreted Type on export."""

    EXTERNAL = "EXTERNAL"
    GTV = "GTV"
    CTV = "CTV"
    PTV = "PTV"
    OAR = "OAR"
    VERTEX = "VERTEX"
    CORE = "CORE"
    VALLEY = "VALLEY"
    RING = "RING"
    AVOIDANCE = "AVOIDANCE"

    @classmethod
    def parse(cls, value: str | StructureKind) -> StructureKind:
        if isinstance(value, StructureKind):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            raise GeometryError(
                f"unknown structure kind {value!r}; use one of {', '.join(k.value for k in cls)}"
            ) from None


#: Kinds that are the target or a part of it (EQD2 with the tumour alpha/beta, target metrics).
TARGET_KINDS: tuple[StructureKind, ...] = (
    StructureKind.GTV,
    StructureKind.CTV,
    StructureKind.PTV,
    StructureKind.VERTEX,
    StructureKind.CORE,
    StructureKind.VALLEY,
)
#: Kinds whose DVHs reports and the viewer show (the body, rings and avoidance shells are left out).
DVH_KINDS: tuple[StructureKind, ...] = (*TARGET_KINDS, StructureKind.OAR)

DEFAULT_COLORS: dict[StructureKind, tuple[int, int, int]] = {
    StructureKind.EXTERNAL: (0, 200, 0),
    StructureKind.GTV: (255, 0, 0),
    StructureKind.CTV: (255, 128, 0),
    StructureKind.PTV: (255, 0, 255),
    StructureKind.OAR: (0, 128, 255),
    StructureKind.VERTEX: (255, 255, 0),
    StructureKind.CORE: (255, 64, 64),
    StructureKind.VALLEY: (0, 255, 255),
    StructureKind.RING: (160, 160, 160),
    StructureKind.AVOIDANCE: (128, 0, 255),
}


@dataclass(frozen=True, eq=False)
class Structure:
    """A named binary mask (array [k, j, i] of bool) on a grid.

    ``color`` is RGB 0-255 for display and DICOM export; by default it follows the kind.

    ``slice_span`` (nk, 2), optional: the part of each slice's thickness that the
    structure fills, as (lo, hi) offsets along k from the slice centre in voxel
    units (-0.5 <= lo <= hi <= 0.5). Contour readers set it where an end-cap
    convention fills a slice only partly (see
    :func:`lattice_plan.io.rtstruct.read_rtstruct`); volumes and dose sampling
    honour it, and ``None`` means every mask voxel is whole.
    """

    name: str
    mask: NDArray[np.bool_]
    grid: Grid
    kind: StructureKind = StructureKind.OAR
    color: tuple[int, int, int] | None = None
    slice_span: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise GeometryError(f"structure name must be a non-empty string, got {self.name!r}")
        mask = np.asarray(self.mask)
        if mask.shape != self.grid.shape:
            raise GeometryError(
                f"structure {self.name!r}: mask shape {mask.shape} does not match its grid {self.grid.shape}"
            )
        if mask.dtype != np.bool_:
            if not np.isin(mask, (0, 1)).all():
                raise GeometryError(
                    f"structure {self.name!r}: mask must be boolean (or 0/1), got {mask.dtype}"
                )
            mask = mask.astype(bool)
        elif mask.flags.writeable or mask.base is not None:
            mask = mask.copy()
        mask.setflags(write=False)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "kind", StructureKind.parse(self.kind))
        color = DEFAULT_COLORS[self.kind] if self.color is None else self.color
        if len(color) != 3 or any(not 0 <= int(c) <= 255 for c in color):
            raise GeometryError(
                f"structure {self.name!r}: color must be three integers 0-255, got {color!r}"
            )
        object.__setattr__(self, "color", tuple(int(c) for c in color))
        object.__setattr__(self, "slice_span", self._checked_span())

    def _checked_span(self) -> NDArray[np.float64] | None:
        if self.slice_span is None:
            return None
        span = np.array(self.slice_span, dtype=float)
        if span.shape != (self.grid.shape[0], 2):
            raise GeometryError(
                f"structure {self.name!r}: slice_span must have shape ({self.grid.shape[0]}, 2) "
                f"(one (lo, hi) per slice), got {span.shape}"
            )
        tol = 1e-9
        filled = self.mask.any(axis=(1, 2))
        if (
            not np.all(np.isfinite(span))
            or np.any(span[:, 0] < -0.5 - tol)
            or np.any(span[:, 1] > 0.5 + tol)
            or np.any(span[:, 0] > span[:, 1])
            or np.any(span[filled, 1] - span[filled, 0] <= tol)
        ):
            raise GeometryError(
                f"structure {self.name!r}: slice_span must hold -0.5 <= lo <= hi <= 0.5 "
                "(voxel units about each slice centre), with hi > lo on every filled slice"
            )
        span = np.clip(span, -0.5, 0.5)
        if np.all(span[filled] == (-0.5, 0.5)):
            return None  # every filled slice is whole: the plain mask says it all
        span.setflags(write=False)
        return span

    @property
    def slice_fraction(self) -> NDArray[np.float64]:
        """The filled fraction of each slice's thickness (nk,): 1 where whole (see ``slice_span``)."""
        if self.slice_span is None:
            return np.ones(self.grid.shape[0])
        return self.slice_span[:, 1] - self.slice_span[:, 0]

    @property
    def n_voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def is_empty(self) -> bool:
        return not self.mask.any()

    @property
    def volume_cc(self) -> float:
        """Volume of the mask voxels (the filled part of partly filled slices), cc."""
        if self.slice_span is None:
            return self.n_voxels * self.grid.voxel_volume_cc
        per_slice = np.count_nonzero(self.mask, axis=(1, 2))
        return float(per_slice @ self.slice_fraction) * self.grid.voxel_volume_cc

    def centroid_lps_mm(self) -> NDArray[np.float64]:
        """Centre of mass of the mask voxels, LPS mm."""
        self.require_nonempty("centroid")
        k, j, i = np.nonzero(self.mask)
        ijk = np.array([i.mean(), j.mean(), k.mean()])
        return self.grid.points_lps_mm(ijk)

    def bounding_box_kji(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Half-open index box (lo, hi) in [k, j, i] order enclosing the mask."""
        self.require_nonempty("bounding box")
        return mask_bounding_box_kji(self.mask)

    def bounding_box_lps_mm(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(min, max) LPS corners of the box through the outermost mask voxel centres."""
        lo, hi = self.bounding_box_kji()
        corners = np.array(
            [
                [i, j, k]
                for i in (lo[2], hi[2] - 1)
                for j in (lo[1], hi[1] - 1)
                for k in (lo[0], hi[0] - 1)
            ]
        )
        pts = self.grid.points_lps_mm(corners.astype(float))
        return pts.min(axis=0), pts.max(axis=0)

    def points_lps_mm(self) -> NDArray[np.float64]:
        """LPS positions (n, 3) of the mask voxel centres."""
        k, j, i = np.nonzero(self.mask)
        return self.grid.points_lps_mm(np.stack([i, j, k], axis=-1).astype(float))

    def require_nonempty(self, what: str = "this operation") -> None:
        if self.is_empty:
            raise GeometryError(
                f"structure {self.name!r} is empty; {what} needs at least one voxel"
            )

    def renamed(
        self,
        name: str,
        kind: StructureKind | str | None = None,
        color: tuple[int, int, int] | None = None,
    ) -> Structure:
        """A copy with another name (and optionally kind and colour)."""
        new_kind = self.kind if kind is None else StructureKind.parse(kind)
        new_color = color if color is not None else (self.color if new_kind == self.kind else None)
        return Structure(name, self.mask, self.grid, new_kind, new_color, self.slice_span)

    def with_mask(
        self,
        mask: NDArray[np.bool_],
        name: str | None = None,
        kind: StructureKind | str | None = None,
        keep_slice_span: bool = False,
    ) -> Structure:
        """A structure on the same grid with another mask (same name and kind unless given).

        The new mask's slices are whole unless ``keep_slice_span``: then each slice
        keeps this structure's span (right for a part of this structure, e.g. its
        edge or the part a dose grid covers).
        """
        new_kind = self.kind if kind is None else StructureKind.parse(kind)
        return Structure(
            name or self.name,
            mask,
            self.grid,
            new_kind,
            self.color if new_kind == self.kind else None,
            self.slice_span if keep_slice_span else None,
        )

    def __repr__(self) -> str:
        return f"Structure({self.name!r}, kind={self.kind.value}, {self.volume_cc:.2f} cc)"


@dataclass(frozen=True, eq=False)
class StructureSet:
    """An ordered collection of structures on one grid; names unique case-insensitively."""

    structures: tuple[Structure, ...]
    grid: Grid

    def __post_init__(self) -> None:
        structures = tuple(self.structures)
        seen: dict[str, str] = {}
        for s in structures:
            if not isinstance(s, Structure):
                raise GeometryError(f"StructureSet holds Structure objects, got {type(s).__name__}")
            self.grid.require_same(s.grid, f"structure {s.name!r}")
            key = s.name.casefold()
            if key in seen:
                raise GeometryError(
                    f"structure names must be unique (case-insensitive): {s.name!r} clashes with {seen[key]!r}"
                )
            seen[key] = s.name
        object.__setattr__(self, "structures", structures)

    @classmethod
    def from_structures(
        cls, structures: Iterable[Structure], grid: Grid | None = None
    ) -> StructureSet:
        items = tuple(structures)
        if grid is None:
            if not items:
                raise GeometryError("an empty StructureSet needs its grid")
            grid = items[0].grid
        return cls(items, grid)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.structures]

    def __iter__(self) -> Iterator[Structure]:
        return iter(self.structures)

    def __len__(self) -> int:
        return len(self.structures)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(
            s.name.casefold() == name.casefold() for s in self.structures
        )

    def __getitem__(self, name: str) -> Structure:
        return self.get(name)

    def get(self, name: str) -> Structure:
        """The structure called ``name`` (case-insensitive); a clear error lists the names present."""
        for s in self.structures:
            if s.name.casefold() == str(name).casefold():
                return s
        raise StructureNotFoundError(
            f"no structure named {name!r}; the structure set holds: {', '.join(self.names) or '(none)'}"
        )

    def find(self, name: str) -> Structure | None:
        """The structure called ``name`` (case-insensitive), or None."""
        return self.get(name) if name in self else None

    def of_kind(self, kind: StructureKind | str) -> list[Structure]:
        k = StructureKind.parse(kind)
        return [s for s in self.structures if s.kind == k]

    def external(self) -> Structure:
        """The body outline (the one EXTERNAL structure)."""
        ext = self.of_kind(StructureKind.EXTERNAL)
        if len(ext) != 1:
            raise GeometryError(
                f"expected exactly one EXTERNAL (body) structure, found {len(ext)}: {[s.name for s in ext]}; "
                "mark the body outline with kind EXTERNAL"
            )
        return ext[0]

    def with_structures(self, *new: Structure, replace_existing: bool = False) -> StructureSet:
        """A new set with ``new`` appended (or replacing same-named ones when asked)."""
        items = list(self.structures)
        for s in new:
            idx = next(
                (n for n, old in enumerate(items) if old.name.casefold() == s.name.casefold()), None
            )
            if idx is not None:
                if not replace_existing:
                    raise GeometryError(
                        f"structure {s.name!r} already exists; pass replace_existing=True to replace it"
                    )
                items[idx] = s
            else:
                items.append(s)
        return StructureSet(tuple(items), self.grid)

    def without(self, *names: str) -> StructureSet:
        for n in names:
            self.get(n)
        drop = {n.casefold() for n in names}
        return StructureSet(
            tuple(s for s in self.structures if s.name.casefold() not in drop), self.grid
        )

    def __repr__(self) -> str:
        return f"StructureSet({', '.join(self.names)})"


def structure_on_grid(structure: Structure, grid: Grid) -> Structure:
    """``structure`` rasterised on another grid: voxels whose centre is at least half inside.

    The mask is interpolated trilinearly (as a 0/1 field, partly filled slices
    counting their filled fraction) at the new voxel centres and thresholded at
    0.5; the result's slices are whole. On the same grid the structure is
    returned as is. For DVHs of small structures on coarse grids use the analysis
    module's sub-voxel sampling instead.

    Only the part of ``grid`` around the structure's bounding box (plus one
    empty voxel) is resampled; everywhere else the interpolated mask is zero
    anyway, so the result equals a resampling of the whole grid.
    """
    if structure.grid.same_as(grid):
        return structure
    out = np.zeros(grid.shape, dtype=bool)
    if structure.is_empty:
        return Structure(structure.name, out, grid, structure.kind, structure.color)
    lo, hi = structure.bounding_box_kji()
    lo = np.maximum(lo - 1, 0)
    hi = np.minimum(hi + 1, structure.grid.shape)
    sub_grid = structure.grid.crop(lo, hi)
    sub_field = structure.mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32)
    sub_field *= structure.slice_fraction[lo[0] : hi[0], None, None].astype(np.float32)
    # Index box of ``grid`` that the cropped box covers, one voxel wider on each side.
    box_lo, box_hi = sub_grid.bounds_lps_mm()
    corners = np.array(
        [
            [x, y, z]
            for x in (box_lo[0], box_hi[0])
            for y in (box_lo[1], box_hi[1])
            for z in (box_lo[2], box_hi[2])
        ]
    )
    ijk = grid.continuous_ijk(corners)
    lo_d = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - 1, 0)[::-1]
    hi_d = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, np.array(grid.shape[::-1]))[::-1]
    if np.all(hi_d > lo_d):
        frac = resample_array(sub_field, sub_grid, grid.crop(lo_d, hi_d), order=1, fill_value=0.0)
        out[lo_d[0] : hi_d[0], lo_d[1] : hi_d[1], lo_d[2] : hi_d[2]] = frac >= 0.5
    return Structure(structure.name, out, grid, structure.kind, structure.color)
