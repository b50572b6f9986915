"""Evaluating the constraints of one arm on one dose: one result row per constraint.

Metric values come from :mod:`lattice_plan.analysis` (DVHs with sub-voxel
sampling; EQD2/BED with the plan's number of fractions and the constraint's
alpha/beta; PVDR as the SFRT metrics define it).
"""

from __future__ import annotations

import numpy as np

from lattice_plan.analysis.dvh import DVH, evaluate_metric
from lattice_plan.analysis.metric_strings import MetricSpec
from lattice_plan.analysis.sfrt import evaluate_pvdr
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry.morphology import connected_components
from lattice_plan.geometry.structure import Structure
from lattice_plan.geometry.volume import Volume
from lattice_plan.qa import metric_bridge
from lattice_plan.qa.protocol_model import Constraint, Outcome, ProtocolArm
from lattice_plan.qa.resolve import StructureResolver, partial_note
from lattice_plan.qa.result import ConstraintResult


def constraint_row(
    c: Constraint, plan_structure: str | None, value: float | None, outcome: Outcome, note: str
) -> ConstraintResult:
    return ConstraintResult(
        structure=c.structure,
        plan_structure=plan_structure,
        metric=c.metric,
        comparison=c.comparison.value,
        limit=str(c.limit),
        acceptable=None if c.acceptable is None else str(c.acceptable),
        value=value,
        unit=c.result_unit,
        outcome=outcome,
        required=c.required,
        source=c.source,
        note=note,
    )


class ConstraintEvaluator:
    """Evaluates the constraints of one arm on one dose, one DVH per plan structure."""

    def __init__(
        self,
        arm: ProtocolArm,
        dose: Volume,
        resolver: StructureResolver,
        fractions: int,
        subdivisions: int | None,
    ) -> None:
        self.arm = arm
        self.dose = dose
        self.resolver = resolver
        self.outside_grid = resolver.outside_grid
        self.allow_partial = resolver.allow_partial
        self.dvhs: dict[str, DVH | str] = {} if self.allow_partial else dict(self.outside_grid)
        self.fractions = fractions
        self.subdivisions = subdivisions

    def dvh(self, protocol_name: str) -> tuple[DVH | None, str | None, str]:
        """(DVH or None, plan structure name or None, how it matched or why it cannot be used)."""
        structure, how = self.resolver.resolve(protocol_name)
        if structure is None:
            return None, None, how
        key = structure.name.casefold()
        if key not in self.dvhs:
            try:
                self.dvhs[key] = DVH.from_dose(
                    self.dose,
                    structure,
                    subdivisions=self.subdivisions,
                    allow_partial=self.allow_partial,
                )
            except AnalysisError as exc:
                self.dvhs[key] = str(exc)
        dvh = self.dvhs[key]
        if isinstance(dvh, str):
            return None, structure.name, f"not evaluable: {dvh}"
        if dvh.covered_fraction < 1.0:
            lost = 100.0 * (1.0 - dvh.covered_fraction)
            how += f"; {partial_note(f'{lost:.1f} % of it lies outside the dose grid')}"
        elif key in self.outside_grid:
            how += f"; {partial_note(self.outside_grid[key])}"
        return dvh, structure.name, how

    def row(self, c: Constraint) -> ConstraintResult:
        spec = metric_bridge.parse(c.metric)
        if spec.kind == "pvdr" and spec.pvdr_variant == "profile":
            vertices, how = self.resolver.resolve(c.structure)
            if vertices is None:
                return constraint_row(c, None, None, Outcome.NOT_EVALUATED, how)
            return self._profile_row(c, spec, vertices, how)
        dvh, plan_name, how = self.dvh(c.structure)
        if dvh is None:
            return constraint_row(c, plan_name, None, Outcome.NOT_EVALUATED, how)
        if spec.kind == "pvdr":
            return self._pvdr_row(c, spec, dvh, plan_name, how)
        prescription_gy = (
            self.arm.prescription(c.prescription).dose_gy if spec.needs_prescription else None
        )
        value = evaluate_metric(
            dvh,
            spec,
            prescription_gy=prescription_gy,
            n_fractions=self.fractions if spec.needs_fractionation else None,
            alpha_beta_gy=c.alpha_beta_gy,
        )
        if spec.output_unit == "cGy":
            value /= 100.0
        return constraint_row(c, plan_name, float(value), c.outcome(float(value)), how)

    def _pvdr_row(
        self, c: Constraint, spec: MetricSpec, peak: DVH, plan_name: str | None, how: str
    ) -> ConstraintResult:
        """PVDR as GTV D10/D90, mean vertex / mean valley dose, or max vertex / min valley dose
        (the definitions of the analysis module's SFRT metrics), from the cached DVHs; EQD2/BED
        variants map the DVH dose axes as the other EQD2/BED metrics do."""
        if spec.pvdr_variant == "D10/D90":
            dvh = self._quantity(spec, c, peak)
            high, low = dvh.dose_at_volume_percent(10.0), dvh.dose_at_volume_percent(90.0)
            what = f"{plan_name} D90"
        else:
            valley, valley_name, valley_how = self.dvh(str(c.valley))
            if valley is None:
                return constraint_row(
                    c, plan_name, None, Outcome.NOT_EVALUATED, f"valley: {valley_how}"
                )
            plan_name = f"{plan_name} / {valley_name}"
            how = f"{how}; valley {valley_how}"
            peak, valley = self._quantity(spec, c, peak), self._quantity(spec, c, valley)
            if spec.pvdr_variant == "mean":
                high, low, what = peak.mean_gy, valley.mean_gy, f"{valley_name} mean dose"
            else:
                high, low, what = peak.max_gy, valley.min_gy, f"{valley_name} minimum dose"
        if not low > 0:
            return constraint_row(
                c, plan_name, None, Outcome.NOT_EVALUATED, f"{what} is {low:g} Gy: no ratio"
            )
        value = high / low
        return constraint_row(c, plan_name, value, c.outcome(value), how)

    def _profile_row(
        self, c: Constraint, spec: MetricSpec, vertices: Structure, how: str
    ) -> ConstraintResult:
        """Profile PVDR (analysis.sfrt) between the centroids of the vertices' separate pieces."""
        pieces = connected_components(vertices)
        if len(pieces) < 2:
            return constraint_row(
                c,
                vertices.name,
                None,
                Outcome.NOT_EVALUATED,
                f"{len(pieces)} separate vertex in {vertices.name!r}; a profile needs two or more",
            )
        centres = np.array([p.centroid_lps_mm() for p in pieces])
        kwargs = {}
        if spec.needs_fractionation:
            kwargs = {"n_fractions": self.fractions, "alpha_beta_gy": float(c.alpha_beta_gy)}
        try:
            value = evaluate_pvdr(self.dose, spec, vertex_centers_lps_mm=centres, **kwargs)
        except AnalysisError as exc:
            return constraint_row(
                c, vertices.name, None, Outcome.NOT_EVALUATED, f"not evaluable: {exc}"
            )
        note = f"{how}; between {len(pieces)} vertex centres"
        return constraint_row(c, vertices.name, value, c.outcome(value), note)

    def _quantity(self, spec: MetricSpec, c: Constraint, dvh: DVH) -> DVH:
        if spec.quantity == "EQD2":
            return dvh.to_eqd2(self.fractions, float(c.alpha_beta_gy))
        if spec.quantity == "BED":
            return dvh.to_bed(self.fractions, float(c.alpha_beta_gy))
        return dvh
