"""The ``[crt]`` table of a plan spec: margins, schedule, candidate arrangements, segments.

[crt]
ptv_margin_mm = 10.0
penumbra_margin_mm = 7.0
schedule = "30Gy/10"             # or "20Gy/5", "8Gy/1" (instead of [prescription])
arrangements = ["single", "opposed", "near-obliques", "three-field", "box"]
max_segments_per_beam = 2        # field-in-field segments per field (0: open fields)
"""

from __future__ import annotations

from dataclasses import dataclass

from lattice_plan.errors import LatticePlanError, SpecError
from lattice_plan.planning.crt import schedule_prescription
from lattice_plan.planning.crt_arrangements import check_arrangement_names
from lattice_plan.tables import TomlTable


@dataclass(frozen=True)
class CrtTable:
    """The ``[crt]`` keys a spec sets (None: the builder's default)."""

    ptv_margin_mm: float | None = None
    penumbra_margin_mm: float | None = None
    schedule: str | None = None
    arrangements: tuple[str, ...] | None = None
    max_segments_per_beam: int | None = None


def parse_crt_table(
    t: TomlTable, rx_per_fraction_gy: float | None, rx_fractions: int | None
) -> CrtTable:
    """Read ``[crt]``; a schedule must agree with a [prescription] given beside it."""
    ptv_margin = t.number("ptv_margin_mm", None, minimum=0.0)
    penumbra = t.number("penumbra_margin_mm", None, minimum=0.0)
    schedule = t.string("schedule", None)
    arrangements = t.raw("arrangements", None)
    segments = t.integer("max_segments_per_beam", None, minimum=0)
    t.finish()
    where = f"{t.source}: [{t.path}]"
    if arrangements is not None:
        if not isinstance(arrangements, list) or not all(isinstance(a, str) for a in arrangements):
            raise t.fail("arrangements", "a list of arrangement names", arrangements)
        try:
            arrangements = check_arrangement_names(arrangements)
        except LatticePlanError as exc:
            raise SpecError(f"{where} arrangements: {exc}") from None
    if schedule is not None:
        try:
            rx = schedule_prescription(schedule)
        except LatticePlanError as exc:
            raise SpecError(f"{where} schedule: {exc}") from None
        if rx_fractions is not None and (
            rx_fractions != rx.fractions or abs(rx_per_fraction_gy - rx.dose_per_fraction_gy) > 1e-9  # type: ignore[operator]
        ):
            raise SpecError(
                f"{where} schedule {schedule!r} disagrees with [prescription] "
                f"({rx_per_fraction_gy * rx_fractions:g} Gy in {rx_fractions}); "  # type: ignore[operator]
                "give one of them"
            )
    return CrtTable(ptv_margin, penumbra, schedule, arrangements, segments)
