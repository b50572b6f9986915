"""A protocol arm's dose constraints as the dose limits a forward planner plans against.

The CRT builder (planning layer) cannot read protocols; this turns one arm's
constraints into :class:`~lattice_plan.planning.crt_limits.DoseLimit` objects
on the patient's structures, matched as the protocol check matches them
(names, synonyms, TG-263 keys, unions such as Kidneys = Kidney_L + Kidney_R).
Constraints the planner cannot act on are left out and listed with the reason:
those on structures the patient lacks (the PTV, which the builder makes and
holds to D95% = Rx and Dmax <= 107 % itself, or an organ not contoured) and
PVDR metrics.
"""

from __future__ import annotations

from lattice_plan.analysis.metric_strings import parse_metric
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.planning.crt_limits import DoseLimit, LimitSet
from lattice_plan.qa.protocol import Comparison, Protocol
from lattice_plan.qa.resolve import StructureResolver


def planning_limits(protocol: Protocol, arm: str, structures: StructureSet) -> LimitSet:
    """The dose limits of ``protocol``'s arm ``arm`` on ``structures`` (see the module docstring)."""
    arm_obj = protocol.arm(arm)
    resolver = StructureResolver(protocol, structures, {}, False)
    limits: list[DoseLimit] = []
    left_out: list[tuple[str, str]] = []
    for c in arm_obj.constraints:
        structure, why = resolver.resolve(c.structure)
        if structure is None:
            left_out.append((c.text, why))
            continue
        try:
            m = parse_metric(c.metric)
        except AnalysisError as exc:  # the protocol parser accepted it; be safe anyway
            left_out.append((c.text, str(exc)))
            continue
        if m.kind == "pvdr" or m.output_unit == "cGy":
            left_out.append((c.text, "not a dose limit a forward planner weights against"))
            continue
        kind = m.stat if m.kind == "dose_stat" else m.kind
        label = (
            c.text
            if structure.name == c.structure
            else f"{c.structure} [{structure.name}] {c.metric} {c.comparison.value} {c.limit}"
        )
        limits.append(
            DoseLimit(
                label=label,
                structure=structure,
                kind=kind,  # type: ignore[arg-type]
                unit=c.limit.unit,
                upper=c.comparison.is_upper_bound,
                limit=c.limit.value,
                acceptable=None if c.acceptable is None else c.acceptable.value,
                strict=c.comparison in (Comparison.LT, Comparison.GT),
                volume=m.volume,
                volume_unit=m.volume_unit,
                dose=m.dose,
                dose_unit=m.dose_unit,
                quantity=m.quantity,
                alpha_beta_gy=c.alpha_beta_gy,
                source=c.source,
            )
        )
    return LimitSet(f"{protocol.name}: {arm_obj.name}", tuple(limits), tuple(left_out))
