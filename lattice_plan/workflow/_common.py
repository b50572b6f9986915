"""What the jobs of the workflow share: progress reports, the metrics reported, JSON-safe values."""

from __future__ import annotations

from collections.abc import Callable

from lattice_plan.geometry.structure import DVH_KINDS, Structure, StructureKind, StructureSet
from lattice_plan.io.atomic import safe_file_part

Progress = Callable[[str, int, "int | None"], None]

#: The DVH metrics reported for every structure (and the default of ``lattice-plan evaluate``).
DEFAULT_METRICS: tuple[str, ...] = (
    "Dmin",
    "Dmean",
    "Dmax",
    "D98%",
    "D95%",
    "D50%",
    "D2%",
    "D0.03cc",
)
#: EQD2 metrics (alpha/beta per structure, see radiobiology.default_alpha_beta_gy).
EQD2_METRICS: tuple[str, ...] = ("EQD2:Dmean", "EQD2:D2%", "EQD2:D0.03cc")

#: Kinds whose DVHs the comparison reports (the body, rings and helper shells are left out).
REPORTED_KINDS: tuple[StructureKind, ...] = DVH_KINDS


def report_progress(progress: Progress | None, task: str, done: int, total: int | None) -> None:
    """Call ``progress(task, done, total)`` if there is a progress callback."""
    if progress is not None:
        progress(task, done, total)


def reported_structures(structures: StructureSet) -> list[Structure]:
    """The non-empty structures of the kinds whose DVHs are reported."""
    return [s for s in structures if s.kind in REPORTED_KINDS and not s.is_empty]


def first_of_kind(structures: StructureSet, kind: StructureKind) -> Structure | None:
    """The first non-empty structure of ``kind``, or None."""
    return next((s for s in structures.of_kind(kind) if not s.is_empty), None)


def safe_name(name: str) -> str:
    """A plan name as a file-name part (RTPLAN_<name>.dcm, slices_<name>.png)."""
    return safe_file_part(name, "plan")
