"""Dose-volume histograms and the clinical metrics read from them.

A :class:`DVH` is built from a dose :class:`Volume` (Gy) and a :class:`Structure`
whose mask may live on another grid (e.g. the CT). The dose is sampled at
points inside the structure: ``s^3`` points spread evenly through each mask
voxel (:func:`lattice_plan.geometry.sampling.subvoxel_offsets`), where the dose is interpolated trilinearly. For a
structure on the dose grid with ``s = 1`` this is the plain voxel dose; larger
``s`` resolves the dose gradient inside the voxels of small structures (15 mm
vertices, 2.5 mm dose voxels). By default ``s`` is chosen so that a structure
gets about 10^5 samples (1 to 4 per axis).

Doses are binned with a fixed width (0.01 Gy by default). The cumulative curve
is piecewise linear between bin edges (dose uniform within a bin), so D-values
are interpolated on it rather than snapped to a bin edge, and clipped to the
sampled minimum and maximum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.analysis.metric_strings import MetricSpec, Quantity, parse_metric
from lattice_plan.analysis.radiobiology import bed_gy, eqd2_gy
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.sampling import sample_dose
from lattice_plan.geometry.structure import Structure
from lattice_plan.geometry.volume import Volume

log = logging.getLogger(__name__)

DEFAULT_BIN_WIDTH_GY = 0.01
_MAX_BINS = 200_000


@dataclass(frozen=True, eq=False)
class DVH:
    """A dose-volume histogram of one structure.

    Attributes:
        name: structure name.
        dose_edges_gy: bin edges (n + 1,), increasing, Gy.
        differential_cc: volume in each bin (n,), cc.
        bin_mean_gy: mean dose of the volume in each bin (n,), Gy (the centre for empty bins).
        min_gy, max_gy, mean_gy: of the sampled dose, Gy.
        quantity: "physical", "EQD2" or "BED".
        covered_fraction: fraction of the structure inside the dose grid (1 unless partial).
    """

    name: str
    dose_edges_gy: NDArray[np.float64]
    differential_cc: NDArray[np.float64]
    bin_mean_gy: NDArray[np.float64]
    min_gy: float
    max_gy: float
    mean_gy: float
    quantity: Quantity = "physical"
    covered_fraction: float = 1.0
    _cumulative: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        edges = np.array(self.dose_edges_gy, dtype=float)
        diff = np.array(self.differential_cc, dtype=float)
        means = np.array(self.bin_mean_gy, dtype=float)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise AnalysisError(f"DVH {self.name!r}: dose edges must be increasing (n + 1 values)")
        if diff.shape != (len(edges) - 1,) or means.shape != diff.shape:
            raise AnalysisError(
                f"DVH {self.name!r}: {len(edges)} edges need {len(edges) - 1} bin volumes and "
                f"bin means, got {diff.shape} and {means.shape}"
            )
        if np.any(diff < 0) or not np.all(np.isfinite(diff)) or diff.sum() <= 0:
            raise AnalysisError(
                f"DVH {self.name!r}: bin volumes must be finite, non-negative and not all zero"
            )
        cum = np.concatenate([np.cumsum(diff[::-1])[::-1], [0.0]])
        for name, arr in (
            ("dose_edges_gy", edges),
            ("differential_cc", diff),
            ("bin_mean_gy", means),
        ):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        cum.setflags(write=False)
        object.__setattr__(self, "_cumulative", cum)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_samples(
        cls,
        name: str,
        dose_gy: ArrayLike,
        weight_cc: float | ArrayLike,
        bin_width_gy: float | None = None,
        quantity: Quantity = "physical",
        covered_fraction: float = 1.0,
    ) -> DVH:
        """DVH of point doses (Gy), each standing for ``weight_cc`` (one value or one per sample)."""
        d = np.asarray(dose_gy, dtype=float).ravel()
        if d.size == 0:
            raise AnalysisError(f"DVH {name!r}: no dose samples")
        w = np.broadcast_to(np.asarray(weight_cc, dtype=float), d.shape)
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise AnalysisError(f"DVH {name!r}: sample weights must be positive volumes (cc)")
        if not np.all(np.isfinite(d)):
            raise AnalysisError(f"DVH {name!r}: the dose holds NaN or infinite values")
        if np.any(d < 0):
            raise AnalysisError(
                f"DVH {name!r}: negative dose ({d.min():.4g} Gy); a physical dose is >= 0"
            )
        dmax = float(d.max())
        width = _bin_width(name, dmax, bin_width_gy)
        n_bins = int(np.floor(dmax / width + 1e-6)) + 1
        # A dose within 1e-6 bin widths below an edge (interpolation round-off) counts as on it.
        idx = np.minimum(np.floor(d / width + 1e-6).astype(np.int64), n_bins - 1)
        volumes = np.bincount(idx, weights=w, minlength=n_bins)
        sums = np.bincount(idx, weights=w * d, minlength=n_bins)
        edges = np.arange(n_bins + 1) * width
        centres = 0.5 * (edges[:-1] + edges[1:])
        filled = volumes > 0
        means = centres.copy()
        means[filled] = sums[filled] / volumes[filled]
        return cls(
            name,
            edges,
            volumes,
            means,
            float(d.min()),
            dmax,
            float(np.sum(w * d) / np.sum(w)),
            quantity,
            covered_fraction,
        )

    @classmethod
    def from_dose(
        cls,
        dose: Volume,
        structure: Structure,
        bin_width_gy: float | None = None,
        subdivisions: int | None = None,
        allow_partial: bool = False,
    ) -> DVH:
        """DVH of ``structure`` in ``dose`` (Gy); see :func:`sample_dose` for the options."""
        samples = sample_dose(dose, structure, subdivisions, allow_partial)
        return cls.from_samples(
            structure.name,
            samples.dose_gy,
            samples.weight_cc,
            bin_width_gy,
            covered_fraction=samples.covered_fraction,
        )

    @classmethod
    def from_cumulative(
        cls,
        name: str,
        dose_edges_gy: ArrayLike,
        cumulative_cc: ArrayLike,
        quantity: Quantity = "physical",
    ) -> DVH:
        """DVH from a cumulative curve: ``cumulative_cc[m]`` receives at least ``dose_edges_gy[m]``.

        Both arrays have the same length; the curve must not increase. The last
        value is the volume above the last edge (usually 0); a non-zero tail is
        placed in one extra bin of the last bin's width.
        """
        edges = np.asarray(dose_edges_gy, dtype=float)
        cum = np.asarray(cumulative_cc, dtype=float)
        if edges.shape != cum.shape or edges.ndim != 1 or len(edges) < 2:
            raise AnalysisError(
                f"DVH {name!r}: dose edges and cumulative volumes must be 1-D of equal length, "
                f"got {edges.shape} and {cum.shape}"
            )
        if np.any(np.diff(cum) > 1e-9 * max(cum[0], 1.0)):
            raise AnalysisError(f"DVH {name!r}: a cumulative DVH must not increase with dose")
        if cum[-1] > 0:
            edges = np.append(edges, 2 * edges[-1] - edges[-2])
            cum = np.append(cum, 0.0)
        diff = np.maximum(-np.diff(cum), 0.0)
        return cls.from_differential(name, edges, diff, quantity)

    @classmethod
    def from_differential(
        cls,
        name: str,
        dose_edges_gy: ArrayLike,
        differential_cc: ArrayLike,
        quantity: Quantity = "physical",
    ) -> DVH:
        """DVH from bin edges (n + 1) and bin volumes (n); bins stand for their centres."""
        edges = np.asarray(dose_edges_gy, dtype=float)
        diff = np.asarray(differential_cc, dtype=float)
        if diff.shape != (len(edges) - 1,):
            raise AnalysisError(
                f"DVH {name!r}: {len(edges)} edges need {len(edges) - 1} bin volumes, got {diff.shape}"
            )
        centres = 0.5 * (edges[:-1] + edges[1:])
        nz = np.nonzero(diff > 0)[0]
        if nz.size == 0:
            raise AnalysisError(f"DVH {name!r}: all bin volumes are zero")
        mean = float((centres * diff).sum() / diff.sum())
        return cls(
            name,
            edges,
            diff,
            centres,
            float(edges[nz[0]]),
            float(edges[nz[-1] + 1]),
            mean,
            quantity,
        )

    # ------------------------------------------------------------------ views
    @property
    def volume_cc(self) -> float:
        """Volume of the structure sampled, cc."""
        return float(self._cumulative[0])

    @property
    def bin_width_gy(self) -> NDArray[np.float64]:
        return np.diff(self.dose_edges_gy)

    @property
    def bin_centers_gy(self) -> NDArray[np.float64]:
        return 0.5 * (self.dose_edges_gy[:-1] + self.dose_edges_gy[1:])

    @property
    def cumulative_cc(self) -> NDArray[np.float64]:
        """Volume receiving at least each bin edge (n + 1,), cc."""
        return self._cumulative

    @property
    def cumulative_percent(self) -> NDArray[np.float64]:
        """Cumulative DVH at the bin edges, % of the structure volume."""
        return 100.0 * self._cumulative / self.volume_cc

    @property
    def differential_percent(self) -> NDArray[np.float64]:
        """Volume in each bin, % of the structure volume."""
        return 100.0 * self.differential_cc / self.volume_cc

    # ------------------------------------------------------------------ point queries
    def dose_at_volume_cc(self, volume_cc: float) -> float:
        """Minimum dose (Gy) of the hottest ``volume_cc`` (D at volume), interpolated.

        A volume at least the structure's gives the minimum dose; 0 gives the maximum.
        """
        v = float(volume_cc)
        if not np.isfinite(v) or v < 0:
            raise AnalysisError(f"volume must be >= 0 cc, got {volume_cc!r}")
        total = self.volume_cc
        if v >= total:
            if v > total * (1 + 1e-9):
                log.info(
                    "%s: D at %.4g cc exceeds the structure volume %.4g cc; returning Dmin",
                    self.name,
                    v,
                    total,
                )
            return self.min_gy
        if v <= 0:
            return self.max_gy
        # cumulative is non-increasing along edges; find the last edge with cum >= v.
        cum = self._cumulative
        m = int(np.searchsorted(-cum, -v, side="right")) - 1
        lo_d, hi_d = self.dose_edges_gy[m], self.dose_edges_gy[m + 1]
        drop = cum[m] - cum[m + 1]
        d = lo_d + (cum[m] - v) / drop * (hi_d - lo_d)
        return float(min(max(d, self.min_gy), self.max_gy))

    def dose_at_volume_percent(self, percent: float) -> float:
        """D at ``percent`` % of the structure volume (Gy)."""
        p = float(percent)
        if not 0 <= p <= 100:
            raise AnalysisError(f"volume percentage must lie in 0-100, got {percent!r}")
        return self.dose_at_volume_cc(p / 100.0 * self.volume_cc)

    def volume_at_dose_cc(self, dose_gy: float) -> float:
        """Volume (cc) receiving at least ``dose_gy``, interpolated within the bin."""
        d = float(dose_gy)
        if not np.isfinite(d):
            raise AnalysisError(f"dose threshold must be finite, got {dose_gy!r}")
        if d <= self.min_gy:
            return self.volume_cc
        if d > self.max_gy:
            return 0.0
        return float(np.interp(d, self.dose_edges_gy, self._cumulative))

    # ------------------------------------------------------------------ transforms and metrics
    def to_eqd2(self, n_fractions: int, alpha_beta_gy: float) -> DVH:
        """The same volumes on an EQD2 dose axis (a monotone map of every edge and bin mean)."""
        return self._mapped("EQD2", lambda d: eqd2_gy(d, n_fractions, alpha_beta_gy))

    def to_bed(self, n_fractions: int, alpha_beta_gy: float) -> DVH:
        """The same volumes on a BED dose axis."""
        return self._mapped("BED", lambda d: bed_gy(d, n_fractions, alpha_beta_gy))

    def _mapped(self, quantity: Quantity, f) -> DVH:
        if self.quantity != "physical":
            raise AnalysisError(
                f"DVH {self.name!r} is already {self.quantity}; convert the physical DVH instead"
            )
        means = f(self.bin_mean_gy)
        diff = self.differential_cc
        return DVH(
            self.name,
            f(self.dose_edges_gy),
            diff,
            means,
            float(f(self.min_gy)),
            float(f(self.max_gy)),
            float((means * diff).sum() / diff.sum()),
            quantity,
            self.covered_fraction,
        )

    def metric(
        self,
        text: str | MetricSpec,
        prescription_gy: float | None = None,
        n_fractions: int | None = None,
        alpha_beta_gy: float | None = None,
    ) -> float:
        """Value of a clinical metric string (``D95%``, ``V20Gy[cc]``...); see :func:`evaluate_metric`."""
        return evaluate_metric(self, text, prescription_gy, n_fractions, alpha_beta_gy)

    def __repr__(self) -> str:
        return (
            f"DVH({self.name!r}, {self.quantity}, {self.volume_cc:.3f} cc, "
            f"min/mean/max {self.min_gy:.3f}/{self.mean_gy:.3f}/{self.max_gy:.3f} Gy)"
        )


def _bin_width(name: str, dmax: float, bin_width_gy: float | None) -> float:
    if bin_width_gy is None:
        return max(DEFAULT_BIN_WIDTH_GY, dmax / _MAX_BINS * 2)
    w = float(bin_width_gy)
    if not np.isfinite(w) or w <= 0:
        raise AnalysisError(f"DVH {name!r}: bin_width_gy must be positive, got {bin_width_gy!r}")
    if dmax / w > _MAX_BINS:
        raise AnalysisError(
            f"DVH {name!r}: bin width {w:g} Gy gives more than {_MAX_BINS} bins up to "
            f"{dmax:.4g} Gy; use a wider bin"
        )
    return w


def evaluate_metric(
    dvh: DVH,
    text: str | MetricSpec,
    prescription_gy: float | None = None,
    n_fractions: int | None = None,
    alpha_beta_gy: float | None = None,
) -> float:
    """Value of a metric string on a physical-dose DVH, in ``parse_metric(text).output_unit``.

    ``prescription_gy`` (total physical dose) is needed for % dose thresholds
    (``V95%``) and % outputs (``D2%[%]``). ``EQD2:`` and ``BED:`` metrics need
    ``n_fractions`` and ``alpha_beta_gy``; their % thresholds are relative to
    the prescription converted the same way. PVDR metrics need several
    structures: use :func:`lattice_plan.analysis.sfrt.evaluate_pvdr`.
    """
    spec = parse_metric(text)
    if spec.kind == "pvdr":
        raise AnalysisError(
            f"metric {spec.text!r} needs the vertex and valley structures, not one DVH; "
            "use lattice_plan.analysis.sfrt.evaluate_pvdr"
        )
    rx = None
    if spec.needs_prescription:
        if prescription_gy is None or not np.isfinite(prescription_gy) or prescription_gy <= 0:
            raise AnalysisError(
                f"metric {spec.text!r} is relative to the prescription; pass prescription_gy > 0 "
                f"(got {prescription_gy!r})"
            )
        rx = float(prescription_gy)
    if spec.quantity != "physical":
        if n_fractions is None or alpha_beta_gy is None:
            raise AnalysisError(
                f"metric {spec.text!r} needs n_fractions and alpha_beta_gy to convert the dose "
                f"to {spec.quantity}"
            )
        if dvh.quantity != "physical":
            raise AnalysisError(
                f"metric {spec.text!r} converts a physical DVH, but DVH {dvh.name!r} is {dvh.quantity}"
            )
        convert = eqd2_gy if spec.quantity == "EQD2" else bed_gy
        dvh = (
            dvh.to_eqd2(n_fractions, alpha_beta_gy)
            if spec.quantity == "EQD2"
            else dvh.to_bed(n_fractions, alpha_beta_gy)
        )
        if rx is not None:
            rx = float(convert(rx, n_fractions, alpha_beta_gy))
    elif dvh.quantity != "physical":
        log.debug("metric %s read from a %s DVH as given", spec.text, dvh.quantity)

    if spec.kind in ("dose_stat", "dose_at_volume"):
        if spec.kind == "dose_stat":
            value = {"max": dvh.max_gy, "min": dvh.min_gy, "mean": dvh.mean_gy}[spec.stat]
        elif spec.volume_unit == "%":
            value = dvh.dose_at_volume_percent(spec.volume)
        else:
            value = dvh.dose_at_volume_cc(spec.volume)
        if spec.output_unit == "%":
            return 100.0 * value / rx
        if spec.output_unit == "cGy":
            return 100.0 * value
        return float(value)
    threshold = spec.dose if spec.dose_unit == "Gy" else spec.dose / 100.0 * rx
    above_cc = dvh.volume_at_dose_cc(threshold)
    vol_cc = above_cc if spec.kind == "volume_at_dose" else dvh.volume_cc - above_cc
    return 100.0 * vol_cc / dvh.volume_cc if spec.output_unit == "%" else float(vol_cc)
