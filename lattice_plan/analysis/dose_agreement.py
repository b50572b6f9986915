"""Agreement of a computed dose with a reference dose: gamma (global and local) and differences.

What a secondary dose check reports: the gamma pass rates at one criterion
(global: % of the reference maximum; local: % of the reference dose at the
point; 10 % threshold), and on the reference grid, above that threshold, the
dose difference in % of the reference maximum (mean, mean absolute, 2nd and
98th percentiles) and the median ratio evaluated / reference in the
high-dose region (reference >= 50 % of its maximum), where the absolute
calibration of a plan shows.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from lattice_plan.analysis.gamma import gamma_index
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.volume import Volume

HIGH_DOSE_PERCENT = 50.0
"""The high-dose region of the median dose ratio: reference >= this % of its maximum."""


def parse_gamma_criterion(text: str) -> tuple[float, float]:
    """('3%/2mm') -> (3.0, 2.0): dose difference in % and distance to agreement in mm."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*/\s*(\d+(?:\.\d+)?)\s*mm\s*", text)
    if not m or float(m.group(1)) <= 0 or float(m.group(2)) <= 0:
        raise AnalysisError(f"gamma criterion {text!r} is not understood; write it as e.g. 3%/2mm")
    return float(m.group(1)), float(m.group(2))


@dataclass(frozen=True)
class DoseAgreement:
    """Gamma pass rates (%) and dose differences (% of the reference maximum) of a dose check."""

    dose_percent: float
    dta_mm: float
    threshold_percent: float
    gamma_global_pass_percent: float
    gamma_local_pass_percent: float
    n_evaluated: int
    reference_max_gy: float
    evaluated_max_gy: float
    mean_difference_percent: float
    mean_abs_difference_percent: float
    difference_p2_percent: float
    difference_p98_percent: float
    median_ratio_high_dose: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for a terminal."""
        crit = f"{self.dose_percent:g} %/{self.dta_mm:g} mm"
        return "\n".join(
            [
                f"gamma {crit} (threshold {self.threshold_percent:g} %, {self.n_evaluated} points): "
                f"global {self.gamma_global_pass_percent:.2f} % pass, "
                f"local {self.gamma_local_pass_percent:.2f} % pass",
                f"max dose: computed {self.evaluated_max_gy:.4g} Gy, "
                f"reference {self.reference_max_gy:.4g} Gy",
                f"difference (computed - reference, % of reference max): mean "
                f"{self.mean_difference_percent:+.2f}, mean |d| {self.mean_abs_difference_percent:.2f}, "
                f"2nd..98th percentile {self.difference_p2_percent:+.2f}..{self.difference_p98_percent:+.2f}",
                f"median ratio computed/reference where reference >= {HIGH_DOSE_PERCENT:g} % of max: "
                f"{self.median_ratio_high_dose:.4f}",
            ]
        )


def dose_agreement(
    reference: Volume,
    evaluated: Volume,
    dose_percent: float = 3.0,
    dta_mm: float = 2.0,
    threshold_percent: float = 10.0,
) -> DoseAgreement:
    """Compare ``evaluated`` with ``reference`` (dose Volumes in Gy, grids may differ).

    Differences and ratios are taken at the reference voxels (the evaluated dose
    interpolated trilinearly there, zero outside its grid).
    """
    kw = {"dose_percent": dose_percent, "dta_mm": dta_mm, "threshold_percent": threshold_percent}
    g_global = gamma_index(reference, evaluated, **kw)
    g_local = gamma_index(reference, evaluated, local=True, **kw)
    ref = np.asarray(reference.array, dtype=float)
    ev = evaluated.resampled(reference.grid, order=1, fill_value=0.0).array
    ref_max = float(ref.max())
    inside = ref >= threshold_percent / 100.0 * ref_max
    diff = (ev[inside] - ref[inside]) / ref_max * 100.0
    high = ref >= HIGH_DOSE_PERCENT / 100.0 * ref_max
    if not np.any(high):
        raise AnalysisError("the reference dose has no high-dose region (is it all zero?)")
    return DoseAgreement(
        dose_percent=float(dose_percent),
        dta_mm=float(dta_mm),
        threshold_percent=float(threshold_percent),
        gamma_global_pass_percent=g_global.pass_rate_percent,
        gamma_local_pass_percent=g_local.pass_rate_percent,
        n_evaluated=g_global.n_evaluated,
        reference_max_gy=ref_max,
        evaluated_max_gy=float(np.max(evaluated.array)),
        mean_difference_percent=float(diff.mean()),
        mean_abs_difference_percent=float(np.abs(diff).mean()),
        difference_p2_percent=float(np.percentile(diff, 2)),
        difference_p98_percent=float(np.percentile(diff, 98)),
        median_ratio_high_dose=float(np.median(ev[high] / ref[high])),
    )


__all__ = ["HIGH_DOSE_PERCENT", "DoseAgreement", "dose_agreement", "parse_gamma_criterion"]
