"""What a plan is prescribed to, and how its dose is normalised to it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import PlanningError

# The normalisation point of a prescription: a D-metric of the target structure
# ("D95%", "D50%", "Dmean") or "point" (the dose at a reference point).
_D_PERCENT = re.compile(r"^D(\d+(?:\.\d+)?)%$")
NORMALISATION_METHODS = ("D<p>%", "Dmean", "point")


@dataclass(frozen=True)
class Prescription:
    """Dose per fraction (Gy) times fractions, prescribed to ``target`` by ``method``.

    ``method``: "D95%" (the target's D95 equals the prescription; any "D<p>%"
    with 0 < p < 100 works), "Dmean" (the target's mean dose), or "point" (the
    dose at ``reference_point_lps_mm``). Examples: CRT 3 Gy x 10 to PTV D95%;
    SFRT 15 Gy x 1 to the mean dose of the vertices; SCART 15 Gy x 1 to STV D95%.
    """

    dose_per_fraction_gy: float
    fractions: int
    target: str
    method: str = "D95%"
    reference_point_lps_mm: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.dose_per_fraction_gy) and self.dose_per_fraction_gy > 0):
            raise PlanningError(
                f"prescription dose per fraction must be positive Gy, got {self.dose_per_fraction_gy!r}"
            )
        if int(self.fractions) != self.fractions or self.fractions < 1:
            raise PlanningError(
                f"prescription fractions must be a positive integer, got {self.fractions!r}"
            )
        object.__setattr__(self, "fractions", int(self.fractions))
        if not isinstance(self.target, str) or not self.target:
            raise PlanningError(f"prescription target must name a structure, got {self.target!r}")
        if self.method == "point":
            if self.reference_point_lps_mm is None or np.shape(self.reference_point_lps_mm) != (3,):
                raise PlanningError(
                    "a 'point' prescription needs reference_point_lps_mm (x, y, z in mm)"
                )
        elif self.method != "Dmean":
            m = _D_PERCENT.match(self.method)
            if m is None or not 0 < float(m.group(1)) < 100:
                raise PlanningError(
                    f"prescription method {self.method!r} is not understood; use 'D95%' (any D<p>% with "
                    "0 < p < 100), 'Dmean' or 'point'"
                )

    @property
    def total_dose_gy(self) -> float:
        return self.dose_per_fraction_gy * self.fractions

    def describe(self) -> str:
        how = (
            "at the reference point"
            if self.method == "point"
            else f"to {self.target} {self.method}"
        )
        return (
            f"{self.dose_per_fraction_gy:g} Gy x {self.fractions} = {self.total_dose_gy:g} Gy {how}"
        )

    def achieved_gy(
        self,
        target_dose_gy: NDArray[np.float64] | None = None,
        point_dose_gy: float | None = None,
        target_weight_cc: NDArray[np.float64] | None = None,
    ) -> float:
        """The normalisation quantity of a dose: the metric over the target's voxel doses, or the point dose.

        ``target_dose_gy`` holds the dose (Gy) at sample points of the target, of
        equal volumes unless ``target_weight_cc`` gives each one's volume.
        D<p>% is the minimum dose of the hottest p % of the volume (the DVH
        convention: the inverted empirical CDF at 100 - p %, no interpolation
        between samples), so that a DVH of the same samples reports it.
        """
        if self.method == "point":
            if point_dose_gy is None:
                raise PlanningError("a 'point' prescription needs the dose at the reference point")
            return float(point_dose_gy)
        if target_dose_gy is None or np.size(target_dose_gy) == 0:
            raise PlanningError(
                f"cannot normalise: the prescription target {self.target!r} has no voxels on the dose grid"
            )
        values = np.asarray(target_dose_gy, dtype=float)
        weights = None if target_weight_cc is None else np.asarray(target_weight_cc, dtype=float)
        if self.method == "Dmean":
            return float(np.average(values, weights=weights))
        p = float(_D_PERCENT.match(self.method).group(1))  # type: ignore[union-attr]
        return float(np.percentile(values, 100.0 - p, method="inverted_cdf", weights=weights))

    def reference_point(self) -> NDArray[np.float64] | None:
        return (
            None
            if self.reference_point_lps_mm is None
            else np.asarray(self.reference_point_lps_mm, dtype=float)
        )


def prescription_from(
    dose_gy: float,
    fractions: int,
    target: str,
    method: str = "D95%",
    point: ArrayLike | None = None,
) -> Prescription:
    """Prescription from a total course dose (Gy) split over ``fractions``."""
    if fractions < 1:
        raise PlanningError(f"fractions must be a positive integer, got {fractions!r}")
    pt = None if point is None else tuple(float(v) for v in np.asarray(point, dtype=float))
    return Prescription(dose_gy / fractions, fractions, target, method, pt)  # type: ignore[arg-type]
