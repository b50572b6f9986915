"""The bridge from protocol constraints to lattice_plan.analysis metric strings."""

from __future__ import annotations

from lattice_plan.analysis.metric_strings import MetricSpec, parse_metric
from lattice_plan.errors import AnalysisError, ProtocolError

# analysis output units -> protocol limit units ("" = dimensionless)
_RESULT_UNITS = {"Gy": "Gy", "cGy": "Gy", "cc": "cc", "%": "%", "1": ""}


def parse(metric: str) -> MetricSpec:
    """The analysis module's parse of ``metric``, its errors turned into ProtocolError."""
    try:
        return parse_metric(metric)
    except AnalysisError as exc:
        raise ProtocolError(str(exc)) from None


def metric_result_unit(metric: str) -> str:
    """Unit in which a constraint on ``metric`` is judged: "Gy", "cc", "%" or "" (ratio).

    A metric asked for in cGy (``Dmax[cGy]``) is judged in Gy: its limit is read
    with its own unit and converted, so ``1400 cGy`` and ``14 Gy`` are the same limit.
    """
    return _RESULT_UNITS[parse(metric).output_unit]
