"""DVHs, dose metrics, PVDR and SFRT metrics, radiobiology, plan comparison and gamma."""

from lattice_plan.analysis.dvh import DVH, DoseSamples, evaluate_metric, sample_dose
from lattice_plan.analysis.metric_strings import ACCEPTED_FORMS, MetricSpec, parse_metric
from lattice_plan.analysis.radiobiology import (
    alpha_beta_map_gy,
    bed_gy,
    bed_volume,
    default_alpha_beta_gy,
    eqd2_gy,
    eqd2_volume,
    eud_gy,
    geud_gy,
)

__all__ = [
    "ACCEPTED_FORMS",
    "DVH",
    "DoseSamples",
    "MetricSpec",
    "alpha_beta_map_gy",
    "bed_gy",
    "bed_volume",
    "default_alpha_beta_gy",
    "eqd2_gy",
    "eqd2_volume",
    "eud_gy",
    "evaluate_metric",
    "geud_gy",
    "parse_metric",
    "sample_dose",
]
