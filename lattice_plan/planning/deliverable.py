"""The deliverable plan: optimised fluence maps sequenced into control points, dose recomputed.

After optimisation each fluence-map beam is sequenced (sliding window or
step-and-shoot, :mod:`lattice_plan.planning.sequencing`), the dose is computed
from the control points (:mod:`lattice_plan.dose.delivery`) and renormalised
to the prescription: that is the plan's dose (DESIGN.md "Delivery physics").
The ideal (fluence-map) dose is kept in ``Plan.ideal_dose`` and both are
compared in ``plan.info["delivery"]`` so the sequencing loss is visible.
``method = "ideal"`` keeps the fluence-map dose (no sequencing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lattice_plan.dose.control_points import ControlPointBeam
from lattice_plan.dose.delivery import control_point_dose, delivery_time_s
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.machine import Machine, default_machine, read_machine
from lattice_plan.errors import PlanningError
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.plan import Plan
from lattice_plan.planning.sequencing import SequencingReport, sliding_window
from lattice_plan.planning.step_and_shoot import step_and_shoot

METHODS = ("sliding_window", "step_and_shoot", "ideal", "vmat")  # vmat: planning/vmat.py


@dataclass(frozen=True)
class DeliverySpec:
    """How optimised beams are delivered (the plan spec's ``[delivery]`` table)."""

    method: str = "sliding_window"
    levels: int = 10  # step-and-shoot intensity levels
    machine: str = "varian-120"  # a shipped machine name or a machine TOML file
    gantry_step_deg: float = 2.0
    min_segment_mu: float = 1.0  # step-and-shoot: a level below this MU is refused
    min_segment_area_mm2: float = 0.0  # step-and-shoot: smaller segments are dropped (reported)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PlanningError(f"delivery method must be one of {METHODS}, got {self.method!r}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 1:
            raise PlanningError(f"delivery levels must be a positive integer, got {self.levels!r}")
        if not (np.isfinite(self.gantry_step_deg) and self.gantry_step_deg > 0):
            raise PlanningError(f"gantry_step_deg must be positive, got {self.gantry_step_deg!r}")
        if not (np.isfinite(self.min_segment_mu) and self.min_segment_mu >= 0):
            raise PlanningError(f"min_segment_mu must be >= 0, got {self.min_segment_mu!r}")
        if not (np.isfinite(self.min_segment_area_mm2) and self.min_segment_area_mm2 >= 0):
            raise PlanningError(
                f"min_segment_area_mm2 must be >= 0, got {self.min_segment_area_mm2!r}"
            )

    def load_machine(self) -> Machine:
        if self.machine.endswith(".toml") or Path(self.machine).exists():
            return read_machine(self.machine)
        return default_machine(self.machine)


def sequence_beams(
    plan: Plan, machine: Machine, spec: DeliverySpec
) -> tuple[tuple[ControlPointBeam, ...], tuple[SequencingReport, ...]]:
    """Every fluence-map beam of the plan as a control-point beam (MU per fraction), and its report."""
    out = []
    reports = []
    for b in plan.beams:
        if b.fluence is None:
            raise PlanningError(
                f"plan {plan.name!r}, beam {b.name!r}: only fluence-map beams are sequenced; "
                "use delivery method 'ideal' for aperture plans"
            )
        if b.mu == 0:
            continue
        if spec.method == "sliding_window":
            cp, report = sliding_window(b, machine)
        else:
            cp, report = step_and_shoot(
                b, machine, spec.levels, spec.min_segment_mu, spec.min_segment_area_mm2
            )
        out.append(cp)
        reports.append(report)
    return tuple(out), tuple(reports)


def make_deliverable(plan: Plan, engine: DoseEngine, spec: DeliverySpec) -> Plan:
    """The plan with its deliverable dose (normalised), its control-point beams and the ideal dose."""
    if spec.method == "ideal":
        return replace(plan, info={**plan.info, "delivery": {"method": "ideal"}})
    t0 = time.perf_counter()
    machine = spec.load_machine()
    cp_beams, reports = sequence_beams(plan, machine, spec)
    dropped_mu = {r.beam: r.dropped_mu for r in reports}
    t_seq = time.perf_counter() - t0
    dose_fx = control_point_dose(engine, cp_beams, machine, spec.gantry_step_deg)
    n_fx = plan.fractions
    dose = Volume(dose_fx.array * n_fx, dose_fx.grid, "Gy")
    t_dose = time.perf_counter() - t0 - t_seq
    deliverable = replace(plan, dose=dose, delivery_beams=cp_beams, ideal_dose=None).normalised()
    beams_report = {
        cp.name: {
            "mu": cp.mu,
            "technique": cp.technique,
            "control_points": cp.n_control_points,
            "segments": cp.n_control_points // 2 if cp.beam_type == "STATIC" else 0,
            "delivery_time_s": delivery_time_s(cp, machine),
            # MU of step-and-shoot segments dropped below the minimum area (before renormalising)
            "dropped_mu": dropped_mu[cp.name],
        }
        for cp in deliverable.delivery_beams
    }
    info = {
        **plan.info,
        # MU and modulation are the delivered ones; the fluence maps' are kept as ideal_*
        "ideal_total_mu": plan.total_mu,
        "total_mu": deliverable.total_mu,
        "mu_per_beam": {b.name: b.mu for b in deliverable.delivery_beams},
        **(
            {
                "ideal_modulation": plan.info["modulation"],
                "modulation": plan.info["modulation"] * deliverable.total_mu / plan.total_mu,
            }
            if "modulation" in plan.info
            else {}
        ),
        "delivery": {
            "method": spec.method,
            "machine": machine.name,
            **(
                {"levels": spec.levels, "min_segment_area_mm2": spec.min_segment_area_mm2}
                if spec.method == "step_and_shoot"
                else {}
            ),
            "gantry_step_deg": spec.gantry_step_deg,
            "normalisation_factor": deliverable.info["normalisation_factor"],
            "total_mu": deliverable.total_mu,
            "ideal_sliding_window_mu_estimate": plan.info.get("sliding_window_mu"),
            "delivery_time_s": float(sum(r["delivery_time_s"] for r in beams_report.values())),
            "beams": beams_report,
            "timings_s": {"sequencing": round(t_seq, 3), "dose": round(t_dose, 3)},
        },
    }
    return replace(deliverable, ideal_dose=plan.dose, info=info)
