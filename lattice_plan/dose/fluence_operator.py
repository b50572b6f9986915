"""Dose as a linear map of beamlet weights, with its exact adjoint (for gradients).

:class:`FluenceOperator` is the dose engine's computation
(:mod:`lattice_plan.dose.superpose`) as a linear function of the beamlet
weights of a set of beams; :class:`VoxelOperator` is the same on a fixed voxel
subset, for the many calls of an optimisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.dose.beam import Beam, FluenceMap
from lattice_plan.dose.fluence import modulation_factor, paint_matrices
from lattice_plan.dose.map_convolution import MapConvolver, support_of
from lattice_plan.dose.point_geometry import PointGeometry
from lattice_plan.dose.superpose import gather, map_grids
from lattice_plan.errors import DoseError
from lattice_plan.kernels.superposition import scatter_beam

if TYPE_CHECKING:
    from lattice_plan.dose.engine import DoseEngine


class FluenceOperator:
    """Dose as a linear function of the beamlet weights of a set of beams.

    ``x`` (all beams' beamlet weights concatenated, each beam's map row-major
    [ny, nx] with rows along +Y_b) is the MU-weighted relative fluence: a
    beamlet of weight 1 delivers the fluence of one MU of open field over its
    square. ``forward(x)`` gives dose in Gy; a beam's own ``mu`` is ignored
    (use :meth:`beams_from_x` to turn weights back into beams with MU and a
    fluence map). ``adjoint(g)`` gives (d dose / d x)^T g, so the gradient of a
    scalar objective f(dose) is ``adjoint(df/ddose)``.

    Beams that carry a :class:`FluenceMap` keep its beamlet grid; the others get
    a map of ``beamlet_mm`` squares covering their jaws.

    The weights are the primary fluence only: ``forward`` leaves out the MLC leaf
    transmission of a sliding-window delivery, which depends on each row's
    beam-on time, the sum of its rising steps, and so is not linear in x. The
    final dose, :meth:`DoseEngine.compute` of :meth:`beams_from_x`, adds it
    (:func:`lattice_plan.dose.fluence.delivered_map`; about T = model.mlc_transmission
    times the row's beam-on time under closed beamlets), and ``Plan.normalised()``
    then rescales the plan to its prescription, absorbing the extra dose at the
    target. With ``mlc_transmission = 0`` the two agree to rounding.

    :meth:`on_voxels` gives the same operator on a fixed voxel subset, faster
    for the many calls of an optimisation.
    """

    def __init__(self, engine: DoseEngine, beams: Sequence[Beam], beamlet_mm: float = 5.0) -> None:
        if not (math.isfinite(beamlet_mm) and beamlet_mm > 0):
            raise DoseError(f"beamlet_mm must be positive, got {beamlet_mm}")
        beams = list(beams)
        if not beams:
            raise DoseError("the fluence operator needs at least one beam")
        self.engine = engine
        self.model = engine.model
        self.beams: list[Beam] = []
        self._parts: list[dict] = []
        sizes = []
        for b in beams:
            engine.check_beam(b)
            fmap = b.fluence if b.fluence is not None else FluenceMap.covering(b.jaws, beamlet_mm)
            beam = replace(b, fluence=fmap)
            geom = engine.voxel_geometry(beam)
            fine_grid, coarse_grid = map_grids(beam, geom, self.model)
            paint = []
            supports = []
            for g in (fine_grid, coarse_grid):
                oy, ox = paint_matrices(fmap, g)
                paint.append((oy, ox, modulation_factor(beam, self.model, g)))
                supports.append(support_of(np.outer(oy.any(axis=0), ox.any(axis=0))))
            self.beams.append(beam)
            self._parts.append(
                {
                    "geom": geom,
                    "grids": (fine_grid, coarse_grid),
                    "paint": paint,
                    "kernels": self.model.map_kernels(geom.scales),
                    "supports": tuple(supports),
                    "shape": fmap.shape,
                }
            )
            sizes.append(fmap.values.size)
        self.sizes = np.array(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self._n_chunks = max(1, numba.get_num_threads())
        self._convolvers: dict[type, list[MapConvolver]] = {}

    @property
    def n_beamlets(self) -> int:
        return int(self.offsets[-1])

    def split(self, x: ArrayLike) -> list[NDArray[np.float64]]:
        """Per-beam beamlet maps [ny, nx] (views of x)."""
        x = self._check_x(x)
        return [
            x[self.offsets[n] : self.offsets[n + 1]].reshape(p["shape"])
            for n, p in enumerate(self._parts)
        ]

    def join(self, maps: Sequence[ArrayLike]) -> NDArray[np.float64]:
        """Concatenate per-beam maps into one weight vector (inverse of :meth:`split`)."""
        if len(maps) != len(self._parts):
            raise DoseError(f"expected {len(self._parts)} beam maps, got {len(maps)}")
        out = []
        for m, p in zip(maps, self._parts, strict=True):
            a = np.asarray(m, dtype=float)
            if a.shape != p["shape"]:
                raise DoseError(f"beam map has shape {a.shape}, expected {p['shape']}")
            out.append(a.ravel())
        return np.concatenate(out)

    def x_open(self) -> NDArray[np.float64]:
        """Weights of 1 MU of open fluence in every beamlet (or each beam's own map values)."""
        return self.join([b.fluence.values for b in self.beams])  # type: ignore[union-attr]

    def beams_from_x(self, x: ArrayLike) -> list[Beam]:
        """Beams whose MU is the largest weight and whose fluence map is x / MU (zero-weight beams get MU 0)."""
        out = []
        for b, m in zip(self.beams, self.split(x), strict=True):
            mu = float(m.max())
            fm = b.fluence.with_values(m / mu) if mu > 0 else b.fluence  # type: ignore[union-attr]
            out.append(replace(b, fluence=fm, mu=mu))
        return out

    def _check_x(self, x: ArrayLike) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_beamlets,):
            raise DoseError(f"x must have shape ({self.n_beamlets},), got {x.shape}")
        return x

    def forward(self, x: ArrayLike, voxels: ArrayLike | None = None) -> NDArray[np.float64]:
        """Dose (Gy) of weights x: the dose-grid array, or 1D over ``voxels`` (mask or flat indices)."""
        x = self._check_x(x)
        sel, where, n_out = self.engine.selection(voxels)
        geoms = [p["geom"] for p in self._parts]
        out = np.zeros(n_out)
        out[where] = self._forward(x, geoms, sel, np.float64)
        return out.reshape(self.engine.dose_grid.shape) if voxels is None else out

    def adjoint(self, g: ArrayLike, voxels: ArrayLike | None = None) -> NDArray[np.float64]:
        """(d dose / d x)^T g for g shaped like :meth:`forward`'s output with the same ``voxels``."""
        sel, where, n_out = self.engine.selection(voxels)
        g = np.asarray(g, dtype=np.float64)
        expected = self.engine.dose_grid.shape if voxels is None else (n_out,)
        if g.shape != expected:
            raise DoseError(f"g must have shape {expected}, got {g.shape}")
        g_sel = np.ascontiguousarray(g.reshape(-1)[where])
        geoms = [p["geom"] for p in self._parts]
        return self._adjoint(g_sel, geoms, sel, np.float64, self._n_chunks)

    def on_voxels(self, voxels: ArrayLike, single_precision: bool = False) -> VoxelOperator:
        """This operator on fixed voxels (mask or flat indices; see :class:`VoxelOperator`)."""
        return VoxelOperator(self, voxels, single_precision)

    def _convolvers_for(self, dtype: type) -> list[MapConvolver]:
        if dtype not in self._convolvers:
            self._convolvers[dtype] = [
                MapConvolver(p["kernels"], *p["grids"], dtype=dtype, supports=p["supports"])
                for p in self._parts
            ]
        return self._convolvers[dtype]

    def _forward(
        self, x: NDArray, geoms: Sequence[PointGeometry], sel: NDArray[np.int64], dtype: type
    ) -> NDArray[np.float64]:
        acc = np.zeros(len(sel))
        scale = float(self.model.gy_per_mu)
        convs = self._convolvers_for(dtype)
        for xb, part, conv, geom in zip(self.split(x), self._parts, convs, geoms, strict=True):
            if not np.any(xb):
                continue
            painted = [
                ((oy.T @ xb @ ox) * factor).astype(dtype, copy=False)
                for oy, ox, factor in part["paint"]
            ]
            fine, coarse = conv.forward(painted[0], painted[1])
            gather(fine, coarse, *part["grids"], conv, geom, sel, scale, acc)
        return acc

    def _adjoint(
        self,
        g_sel: NDArray,
        geoms: Sequence[PointGeometry],
        sel: NDArray[np.int64],
        dtype: type,
        n_chunks: int,
    ) -> NDArray[np.float64]:
        scale = float(self.model.gy_per_mu)
        out = []
        convs = self._convolvers_for(dtype)
        for part, conv, geom in zip(self._parts, convs, geoms, strict=True):
            fine_grid, coarse_grid = part["grids"]
            fine_buf = np.zeros(
                (n_chunks, len(conv.fine_rows), fine_grid.ny, fine_grid.nx), dtype=dtype
            )
            coarse_buf = np.zeros(
                (n_chunks, len(conv.rows), coarse_grid.ny, coarse_grid.nx), dtype=dtype
            )
            fine_layout, coarse_layout = conv.layouts(fine_grid, coarse_grid)
            scatter_beam(
                g_sel,
                *fine_layout,
                *coarse_layout,
                *geom.kernel_args(),
                sel,
                scale,
                fine_buf,
                coarse_buf,
            )
            back = conv.adjoint(fine_buf.sum(axis=0), coarse_buf.sum(axis=0))
            xb = np.zeros(part["shape"])
            for (oy, ox, factor), b in zip(part["paint"], back, strict=True):
                xb += oy @ (b * factor) @ ox.T
            out.append(xb.ravel())
        return np.concatenate(out)


class VoxelOperator:
    """A :class:`FluenceOperator` on fixed dose-grid voxels: dose at those voxels only.

    The per-voxel geometry of the subset is copied into compact arrays once, so
    each call reads memory in order rather than picking the subset out of the
    whole grid's arrays. Its kernels run on one thread: for the tens of
    thousands of voxels of an optimisation, thread start-up and synchronisation
    cost more than they save (on 2 cores, 9 beams at 60 k voxels: 0.035 CPU-s
    per call on one thread, 0.07 on two, and no faster in wall time on a busy
    machine), and one thread makes the result independent of the thread count.

    ``single_precision``: the fluence maps, their convolutions and the
    adjoint's map buffers in float32 (the sums over voxels and beamlets stay
    float64), about 1.5x faster; the dose and the gradient then differ from the
    float64 operator's by about 1e-7 of their maximum (measured 5e-8 and 9e-8
    on issue 18's reference problem), far below what moves a plan. The final
    dose of a plan comes from the float64 engine.
    """

    def __init__(
        self, operator: FluenceOperator, voxels: ArrayLike, single_precision: bool = False
    ) -> None:
        self._flat = operator.engine.flat_indices(voxels)
        sel, where, n_out = operator.engine.selection(self._flat)
        self.operator = operator
        self._where = where
        self._n_out = n_out
        self._sel = np.arange(len(sel), dtype=np.int64)
        self._dtype = np.float32 if single_precision else np.float64
        self._geoms = [p["geom"].subset(sel) for p in operator._parts]

    @property
    def n_beamlets(self) -> int:
        return self.operator.n_beamlets

    @property
    def n_voxels(self) -> int:
        return self._n_out

    def rows(self, rows: ArrayLike) -> VoxelOperator:
        """This operator on some of its voxels: ``rows`` are positions in its output."""
        flat = self._flat[np.asarray(rows, dtype=np.int64)]
        return VoxelOperator(self.operator, flat, single_precision=self._dtype == np.float32)

    def forward(self, x: ArrayLike) -> NDArray[np.float64]:
        """Dose (Gy) at the voxels, (n_voxels,)."""
        x = self.operator._check_x(x)
        out = np.zeros(self._n_out)
        with _one_thread():
            out[self._where] = self.operator._forward(x, self._geoms, self._sel, self._dtype)
        return out

    def adjoint(self, g: ArrayLike) -> NDArray[np.float64]:
        """(d dose / d x)^T g for g of shape (n_voxels,)."""
        g = np.asarray(g, dtype=np.float64)
        if g.shape != (self._n_out,):
            raise DoseError(f"g must have shape ({self._n_out},), got {g.shape}")
        g_sel = np.ascontiguousarray(g[self._where])
        with _one_thread():
            return self.operator._adjoint(g_sel, self._geoms, self._sel, self._dtype, 1)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Numba's parallel kernels on one thread inside the block (the caller's setting restored)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
