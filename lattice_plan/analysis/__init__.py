"""DVHs, dose metrics, PVDR and SFRT metrics, radiobiology, plan comparison, gamma and dose checks."""

from lattice_plan.analysis.comparison import (
    ComparisonRow,
    ComparisonTable,
    PlanDose,
    compare_plans,
    standard_metrics,
)
from lattice_plan.analysis.dose_agreement import DoseAgreement, dose_agreement
from lattice_plan.analysis.dvh import DVH, evaluate_metric
from lattice_plan.analysis.gamma import GammaResult, gamma_index
from lattice_plan.analysis.metric_strings import ACCEPTED_FORMS, MetricSpec, parse_metric
from lattice_plan.analysis.quality import (
    PlanQuality,
    gradient_index,
    homogeneity_index,
    paddick_ci,
    plan_quality,
)
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
from lattice_plan.analysis.sfrt import (
    OnionLayer,
    ProfilePVDR,
    ScartMetrics,
    SfrtMetrics,
    combined_dvh,
    evaluate_pvdr,
    onion_layers,
    pvdr_d10_d90,
    pvdr_mean,
    pvdr_point,
    pvdr_profiles,
    scart_metrics,
    sfrt_metrics,
    vertex_count,
)
from lattice_plan.geometry.sampling import DoseSamples, sample_dose

__all__ = [
    "ACCEPTED_FORMS",
    "DVH",
    "ComparisonRow",
    "ComparisonTable",
    "DoseAgreement",
    "DoseSamples",
    "GammaResult",
    "MetricSpec",
    "OnionLayer",
    "PlanDose",
    "PlanQuality",
    "ProfilePVDR",
    "ScartMetrics",
    "SfrtMetrics",
    "alpha_beta_map_gy",
    "bed_gy",
    "bed_volume",
    "combined_dvh",
    "compare_plans",
    "default_alpha_beta_gy",
    "dose_agreement",
    "eqd2_gy",
    "eqd2_volume",
    "eud_gy",
    "evaluate_metric",
    "evaluate_pvdr",
    "gamma_index",
    "geud_gy",
    "gradient_index",
    "homogeneity_index",
    "onion_layers",
    "paddick_ci",
    "parse_metric",
    "plan_quality",
    "pvdr_d10_d90",
    "pvdr_mean",
    "pvdr_point",
    "pvdr_profiles",
    "sample_dose",
    "scart_metrics",
    "sfrt_metrics",
    "standard_metrics",
    "vertex_count",
]
