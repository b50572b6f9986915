"""The photon beam model: a few parameters that the dose engine turns into dose.

Structure (a pencil-beam superposition model in the manner of Ahnesjo,
Saxner and Trepp, Med Phys 19 (1992) 263, and Bortfeld, Schlegel and Rhein,
Med Phys 20 (1993) 311):

- Fluence at the isocentre plane: the aperture (jaws and MLC with their
  transmissions, or a fluence map) times the in-air off-axis ratio
  ``1 + h2 (r/100 mm)^2 + h4 (r/100 mm)^4`` (the "horns" of a flattened beam).
- Source: a focal spot (elliptic Gaussian, sigma given at the isocentre
  plane; it sets the geometric penumbra) plus an extra-focal source (a broad
  Gaussian of relative weight ``extrafocal_weight``) that models head scatter
  from the flattening filter, which small fields see less of (Jaffray et al.,
  Med Phys 20 (1993) 1417; Zhu and Bjarngard, Med Phys 22 (1995) 1069).
- Lateral kernel: components, each a 2D radial kernel (normalised to unit
  integral) times its own depth function of radiological depth d (mm)::

      D(d) = sum over terms of  A * (1 - b * exp(-beta * d)) * exp(-mu * d)

  The first component is the primary (a narrow Gaussian: the lateral range
  of the electrons set in motion by primary photons, plus electron
  contamination near the surface); the others are phantom scatter,
  exponential kernels ``exp(-r/lambda) / (2 pi lambda r)`` as in Ahnesjo's
  two-exponential kernel.
- Absolute dose: ``gy_per_mu`` scales the model so that a 10 x 10 cm field at
  SSD 1000 mm gives 0.01 Gy per MU at the depth of maximum dose.

All lengths are mm at the isocentre plane (kernels) or mm of water (depths).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal, special

from lattice_plan.cache import BoundedCache
from lattice_plan.errors import DoseError, InputFileError

KERNEL_TYPES = ("gaussian", "exponential")
# Scatter kernels narrower than this many coarse pixels go on the fine grid (the coarse one
# would under-resolve them), cut at _FINE_REACH_WIDTHS widths (exp(-8): 0.03 % of the
# exponential kernel's integral lies beyond).
FINE_WIDTH_COARSE_PIXELS = 2.0
_FINE_REACH_WIDTHS = 8.0
DEFAULT_MODEL_RESOURCE = "beam_model_6mv.json"


@dataclass(frozen=True)
class DepthTerm:
    """One term ``amplitude * (1 - buildup_fraction * exp(-buildup_per_mm d)) * exp(-attenuation_per_mm d)``."""

    amplitude: float
    attenuation_per_mm: float
    buildup_per_mm: float = 0.0
    buildup_fraction: float = 0.0

    def __post_init__(self) -> None:
        vals = asdict(self)
        if not all(math.isfinite(v) for v in vals.values()):
            raise DoseError(f"depth term parameters must be finite, got {vals}")
        if self.attenuation_per_mm < 0 or self.buildup_per_mm < 0:
            raise DoseError(f"depth term rates must be >= 0 per mm, got {vals}")
        if not 0.0 <= self.buildup_fraction <= 1.0:
            raise DoseError(f"buildup_fraction must be in [0, 1], got {self.buildup_fraction}")

    def __call__(self, depth_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        d = np.maximum(depth_mm, 0.0)
        build = 1.0 - self.buildup_fraction * np.exp(-self.buildup_per_mm * d)
        return self.amplitude * build * np.exp(-self.attenuation_per_mm * d)


@dataclass(frozen=True)
class LateralComponent:
    """A lateral kernel (``gaussian``: sigma; ``exponential``: lambda, mm) and its depth function."""

    name: str
    kernel: str
    width_mm: float
    depth_terms: tuple[DepthTerm, ...]

    def __post_init__(self) -> None:
        if self.kernel not in KERNEL_TYPES:
            raise DoseError(
                f"component {self.name!r}: kernel {self.kernel!r} is not one of {KERNEL_TYPES}"
            )
        if not (math.isfinite(self.width_mm) and self.width_mm > 0):
            raise DoseError(
                f"component {self.name!r}: width_mm must be positive, got {self.width_mm}"
            )
        terms = tuple(
            t if isinstance(t, DepthTerm) else DepthTerm(**t)  # type: ignore[arg-type]
            for t in self.depth_terms
        )
        if not terms:
            raise DoseError(f"component {self.name!r} needs at least one depth term")
        object.__setattr__(self, "depth_terms", terms)

    def depth_function(self, depth_mm: ArrayLike) -> NDArray[np.float64]:
        """The component's depth function at radiological depths (mm), model units."""
        d = np.asarray(depth_mm, dtype=float)
        return sum((t(d) for t in self.depth_terms), start=np.zeros_like(d))


@dataclass(frozen=True, eq=False)
class BeamModel:
    """A commissioned photon beam model (see the module docstring for its structure).

    Attributes:
        name, energy: identification ("6X").
        components: the primary first, then the scatter components.
        source_sigma_mm: (sigma_x, sigma_y) of the focal spot projected to the isocentre plane.
        extrafocal_weight, extrafocal_sigma_mm: head-scatter source weight and width (isocentre plane).
        jaw_transmission, mlc_transmission: fraction of fluence passing closed jaws / leaves.
        horn_coeffs: (h2, h4) of the in-air off-axis ratio.
        gy_per_mu: absolute scale (Gy per MU per unit model dose).
        kernel_radius_mm: scatter kernels are cut off beyond this radius.
        fine_mm, coarse_mm: pixel size of the fluence maps for the primary and the broad components.
        provenance: where the parameters came from (free-form, stored in the JSON).
    """

    name: str
    components: tuple[LateralComponent, ...]
    source_sigma_mm: tuple[float, float]
    extrafocal_weight: float
    extrafocal_sigma_mm: float
    jaw_transmission: float
    mlc_transmission: float
    horn_coeffs: tuple[float, float] = (0.0, 0.0)
    gy_per_mu: float = 1.0
    energy: str = "6X"
    sad_mm: float = 1000.0
    kernel_radius_mm: float = 150.0
    fine_mm: float = 1.0
    coarse_mm: float = 2.5
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        comps = tuple(
            c
            if isinstance(c, LateralComponent)
            else LateralComponent(
                c["name"], c["kernel"], float(c["width_mm"]), tuple(c["depth_terms"])
            )
            for c in self.components  # type: ignore[union-attr]
        )
        if not comps:
            raise DoseError("a beam model needs at least one lateral component (the primary)")
        if comps[0].kernel != "gaussian":
            raise DoseError("the first (primary) component of a beam model must be gaussian")
        object.__setattr__(self, "components", comps)
        sig = tuple(float(s) for s in self.source_sigma_mm)
        if len(sig) != 2 or any(not (math.isfinite(s) and s >= 0) for s in sig):
            raise DoseError(f"source_sigma_mm must be two values >= 0, got {self.source_sigma_mm}")
        object.__setattr__(self, "source_sigma_mm", sig)
        object.__setattr__(self, "horn_coeffs", tuple(float(h) for h in self.horn_coeffs))
        checks = {
            "extrafocal_weight": 0.0 <= self.extrafocal_weight < 1.0,
            "extrafocal_sigma_mm": self.extrafocal_sigma_mm > 0,
            "jaw_transmission": 0.0 <= self.jaw_transmission < 0.2,
            "mlc_transmission": 0.0 <= self.mlc_transmission < 0.2,
            "gy_per_mu": self.gy_per_mu > 0,
            "sad_mm": self.sad_mm > 0,
            "kernel_radius_mm": self.kernel_radius_mm > 0,
            "fine_mm": 0 < self.fine_mm <= self.coarse_mm,
            "coarse_mm": self.coarse_mm > 0,
        }
        for key, ok in checks.items():
            if not ok or not math.isfinite(float(getattr(self, key))):
                raise DoseError(f"beam model {self.name!r}: invalid {key} = {getattr(self, key)!r}")

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load_default(cls) -> BeamModel:
        """The shipped 6 MV model, commissioned to the reference scans (see its provenance)."""
        text = resources.files("lattice_plan").joinpath("data", DEFAULT_MODEL_RESOURCE).read_text()
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_json(cls, path: str | Path) -> BeamModel:
        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"beam model file {p} does not exist")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise DoseError(f"beam model file {p} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(p))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "beam model") -> BeamModel:
        try:
            comps = tuple(
                LateralComponent(
                    c["name"],
                    c["kernel"],
                    float(c["width_mm"]),
                    tuple(DepthTerm(**t) for t in c["depth_terms"]),
                )
                for c in data["components"]
            )
            kwargs = {k: v for k, v in data.items() if k not in ("components", "format")}
            kwargs["source_sigma_mm"] = tuple(kwargs["source_sigma_mm"])
            kwargs["horn_coeffs"] = tuple(kwargs.get("horn_coeffs", (0.0, 0.0)))
            return cls(components=comps, **kwargs)
        except (KeyError, TypeError) as exc:
            raise DoseError(f"{source}: missing or unexpected beam-model field ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = "lattice_plan beam model v1"
        return d

    def to_json(self, path: str | Path) -> None:
        """Write the model as JSON (atomically)."""
        from lattice_plan.files import atomic_output_path

        with atomic_output_path(Path(path)) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def with_calibration(self, gy_per_mu: float) -> BeamModel:
        return replace(self, gy_per_mu=float(gy_per_mu))

    # ------------------------------------------------------------------ physics
    def depth_functions(self, depth_mm: ArrayLike) -> NDArray[np.float64]:
        """Depth functions of all components at radiological depths, shape (n_components, ...)."""
        d = np.asarray(depth_mm, dtype=float)
        return np.stack([c.depth_function(d) for c in self.components])

    def off_axis_ratio(self, r_mm: ArrayLike) -> NDArray[np.float64]:
        """In-air off-axis fluence ratio at radius r (mm at the isocentre plane)."""
        x = (np.asarray(r_mm, dtype=float) / 100.0) ** 2
        return 1.0 + self.horn_coeffs[0] * x + self.horn_coeffs[1] * x * x

    def map_kernels(self, scales: tuple[float, ...] = (1.0,)) -> MapKernels:
        """The convolution kernels the engine applies to the fluence maps (cached).

        Fine grid: the primary kernel blurred by the focal spot, and each
        short-range scatter kernel (narrower than two coarse pixels) blurred by
        it, all with weight 1 - extrafocal_weight. Coarse grid: the fine
        kernels' integrals (used only far from the field, off the fine map); the
        primary and the short-range kernels blurred by the extra-focal source;
        then each broad phantom-scatter kernel blurred by the whole source.
        Scatter kernels are built once per entry of ``scales``: their widths are
        physical (mm in the plane of the dose point), so a point at distance s
        from the source sees them narrowed by scale = s / SAD on the isocentre
        plane, and the engine interpolates between the scales it asks for.
        Kernels sum to the source weight they carry, so a broad uniform fluence
        of 1 gives sum_c D_c(d).
        """
        key = (id(self), tuple(round(float(x), 4) for x in scales))
        hit = _KERNEL_CACHE.get(key)
        if hit is not None and hit[0] is self:
            return hit[1]
        kernels = _build_map_kernels(self, key[1])
        _KERNEL_CACHE.put(key, (self, kernels))
        return kernels


@dataclass(frozen=True, eq=False)
class MapKernels:
    """Lateral kernels on the fine and coarse map grids.

    ``fine_rows[f]`` / ``coarse_rows[m]`` is a kernel's depth row;
    ``fine_planes`` / ``coarse_planes`` is -1 for a kernel that holds at every
    distance from the source, else the index of the scale (in ``scales``) it
    was built for. The first ``n_far`` coarse kernels stand in for the fine ones
    at points off the fine maps (the integral of each fine component).
    """

    fine: tuple[NDArray[np.float64], ...]
    fine_rows: NDArray[np.int64]
    fine_planes: NDArray[np.int64]
    coarse: tuple[NDArray[np.float64], ...]
    coarse_rows: NDArray[np.int64]
    coarse_planes: NDArray[np.int64]
    n_far: int
    scales: tuple[float, ...]


def _gauss_1d(sigma_mm: float, h_mm: float, radius_px: int) -> NDArray[np.float64]:
    """Pixel-integrated normalised 1D Gaussian on 2*radius_px + 1 pixels."""
    x = np.arange(-radius_px, radius_px + 1) * h_mm
    if sigma_mm <= 1e-9:
        out = np.zeros(len(x))
        out[radius_px] = 1.0
        return out
    s = sigma_mm * math.sqrt(2.0)
    g = 0.5 * (special.erf((x + h_mm / 2) / s) - special.erf((x - h_mm / 2) / s))
    return g / g.sum()


def _exponential_2d(
    lam_mm: float, h_mm: float, radius_px: int, cut_mm: float
) -> NDArray[np.float64]:
    """Pixel-averaged exp(-r/lam) / (2 pi lam r), cut at ``cut_mm``, normalised to unit sum.

    Cached (beams of one plan share their kernel distances); the array is read-only.
    """
    key = (lam_mm, h_mm, radius_px, cut_mm)
    k = _EXPONENTIAL_CACHE.get(key)
    if k is None:
        k = _make_exponential_2d(lam_mm, h_mm, radius_px, cut_mm)
        _EXPONENTIAL_CACHE.put(key, k)
    return k


def _make_exponential_2d(
    lam_mm: float, h_mm: float, radius_px: int, cut_mm: float
) -> NDArray[np.float64]:
    sub = (np.arange(4) - 1.5) / 4.0  # 4 x 4 sub-samples per pixel, never at r = 0
    ax = np.arange(-radius_px, radius_px + 1)
    X = (ax[None, :, None, None] + sub[None, None, None, :]) * h_mm
    Y = (ax[:, None, None, None] + sub[None, None, :, None]) * h_mm
    R = np.hypot(X, Y)
    k = (np.exp(-R / lam_mm) / (2 * np.pi * lam_mm * R)).mean(axis=(2, 3)) * h_mm * h_mm
    r_eq = h_mm / math.sqrt(math.pi)
    k[radius_px, radius_px] = 1.0 - math.exp(-r_eq / lam_mm)
    rc = np.hypot(*np.meshgrid(ax * h_mm, ax * h_mm, indexing="ij"))
    k[rc > cut_mm] = 0.0
    k /= k.sum()
    k.setflags(write=False)
    return k


# Exponential kernels by (lambda, pixel, radius, cut), as _exponential_2d makes them.
_EXPONENTIAL_CACHE: BoundedCache[NDArray[np.float64]] = BoundedCache(max_entries=64)
# Kernels by (model id, scales); the model is kept with them, so its id is not reused.
_KERNEL_CACHE: BoundedCache[tuple[BeamModel, MapKernels]] = BoundedCache(max_entries=64)


def _on_fine_grid(model: BeamModel, comp: LateralComponent) -> bool:
    """A scatter kernel narrower than two coarse pixels is convolved on the fine grid."""
    return comp.width_mm < FINE_WIDTH_COARSE_PIXELS * model.coarse_mm


def _scatter_kernel(comp: LateralComponent, width_mm: float, h_mm: float, radius_mm: float):
    radius_px = math.ceil(radius_mm / h_mm)
    if comp.kernel == "exponential":
        return _exponential_2d(width_mm, h_mm, radius_px, radius_mm)
    g = _gauss_1d(width_mm, h_mm, radius_px)
    return np.outer(g, g)


def _build_map_kernels(model: BeamModel, scales: tuple[float, ...]) -> MapKernels:
    hf, hc = model.fine_mm, model.coarse_mm
    w_ef = model.extrafocal_weight
    prim = model.components[0]
    multi = len(scales) > 1
    # Fine grid: the primary blurred by the focal spot, then the short-range scatter kernels
    # (one per scale) blurred by it; each carries the focal weight 1 - w_ef.
    sx = math.hypot(prim.width_mm, model.source_sigma_mm[0])
    sy = math.hypot(prim.width_mm, model.source_sigma_mm[1])
    rf = math.ceil(5.0 * max(sx, sy) / hf) + 1
    fine = [np.outer(_gauss_1d(sy, hf, rf), _gauss_1d(sx, hf, rf)) * (1.0 - w_ef)]
    fine_rows, fine_planes = [0], [-1]
    r_focal = math.ceil(5.0 * max(model.source_sigma_mm) / hf) + 1
    focal = np.outer(
        _gauss_1d(model.source_sigma_mm[1], hf, r_focal),
        _gauss_1d(model.source_sigma_mm[0], hf, r_focal),
    )
    for plane, scale in enumerate(scales):
        for n, comp in enumerate(model.components[1:], start=1):
            if _on_fine_grid(model, comp):
                width = comp.width_mm / scale
                reach = min(_FINE_REACH_WIDTHS * width, model.kernel_radius_mm)
                k = _scatter_kernel(comp, width, hf, reach)
                fine.append(signal.fftconvolve(k, focal) * (1.0 - w_ef))
                fine_rows.append(n)
                fine_planes.append(plane if multi else -1)
    # Coarse grid: each fine component's integral (used off the fine maps, where the
    # fluence is smooth); the extra-focal blur of the primary and of the short-range kernels
    # (a 35 mm blur of a few-mm kernel: built at the isocentre-plane width only); the broad
    # kernels blurred by the whole source, per scale.
    fine_components = [
        n for n, c in enumerate(model.components) if n == 0 or _on_fine_grid(model, c)
    ]
    coarse = [np.array([[1.0 - w_ef]]) for _ in fine_components]
    rows, planes = list(fine_components), [-1] * len(fine_components)
    rc = math.ceil(model.kernel_radius_mm / hc)
    s_ef = math.hypot(prim.width_mm, model.extrafocal_sigma_mm)
    r_ef = min(rc, math.ceil(4.0 * s_ef / hc) + 1)
    ef = np.outer(
        _gauss_1d(model.extrafocal_sigma_mm, hc, r_ef),
        _gauss_1d(model.extrafocal_sigma_mm, hc, r_ef),
    )
    if w_ef > 0:
        coarse.append(np.outer(_gauss_1d(s_ef, hc, r_ef), _gauss_1d(s_ef, hc, r_ef)) * w_ef)
        rows.append(0)
        planes.append(-1)
        for n in fine_components[1:]:
            comp = model.components[n]
            k = _scatter_kernel(comp, comp.width_mm, hc, model.kernel_radius_mm)
            coarse.append(np.ascontiguousarray(signal.fftconvolve(k, ef, mode="same") * w_ef))
            rows.append(n)
            planes.append(-1)
    r_src = min(r_ef, 2)
    source = np.outer(
        _gauss_1d(model.source_sigma_mm[1], hc, r_src),
        _gauss_1d(model.source_sigma_mm[0], hc, r_src),
    ) * (1.0 - w_ef)
    source = np.pad(source, r_ef - r_src) + w_ef * ef
    for plane, scale in enumerate(scales):
        for n, comp in enumerate(model.components[1:], start=1):
            if n in fine_components:
                continue
            k = _scatter_kernel(comp, comp.width_mm / scale, hc, model.kernel_radius_mm)
            coarse.append(np.ascontiguousarray(signal.fftconvolve(k, source, mode="same")))
            rows.append(n)
            planes.append(plane if multi else -1)
    fine = [np.ascontiguousarray(k) for k in fine]
    for k in (*fine, *coarse):  # cached and shared between engines: read-only
        k.setflags(write=False)
    return MapKernels(
        tuple(fine),
        np.array(fine_rows, dtype=np.int64),
        np.array(fine_planes, dtype=np.int64),
        tuple(coarse),
        np.array(rows, dtype=np.int64),
        np.array(planes, dtype=np.int64),
        len(fine_components),
        tuple(scales),
    )
