"""``lattice-plan batch``: plan and evaluate a cohort on Dask."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lattice_plan.cli.common import EXIT_OK
from lattice_plan.errors import SpecError

if TYPE_CHECKING:
    from lattice_plan.batch import TaskRow


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``batch`` to the command line."""
    batch = subparsers.add_parser(
        "batch",
        help="plan and evaluate a cohort (cases x arms x parameter sweeps) on Dask",
        description=(
            "Plan and evaluate every case, arm and parameter set of a cohort TOML file "
            "(see examples/cohort_phantom_sweep.toml) on a local Dask cluster sized to this "
            "machine, or on a running cluster (--scheduler). Outputs go to DIR/<case>/<arm>/"
            "<params>/, the results table to DIR/results.csv and results.json. Re-running skips "
            "completed tasks and redoes interrupted ones. Exit code 1 if any task failed."
        ),
    )
    batch.add_argument("cohort", metavar="COHORT.toml", help="cohort file")
    batch.add_argument("--out", required=True, metavar="DIR", help="output folder")
    where = batch.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes (default: one per core, memory permitting)",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786"
    )
    batch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan batch``; returns the exit code."""
    from tqdm import tqdm

    from lattice_plan.batch import run_cohort
    from lattice_plan.cohort import load_cohort

    if args.workers is not None and args.workers < 1:
        raise SpecError(f"--workers must be at least 1, got {args.workers}")
    cohort = load_cohort(args.cohort)
    bar = tqdm(
        total=len(cohort.tasks()),
        desc=cohort.name,
        unit="task",
        disable=True if args.quiet else None,
    )

    def progress(done: int, total: int, row: TaskRow) -> None:
        bar.update(1)
        if row.status == "failed":
            bar.write(f"{row.case}/{row.arm}: failed: {row.error}")

    try:
        result = run_cohort(
            cohort, args.out, workers=args.workers, scheduler=args.scheduler, progress=progress
        )
    finally:
        bar.close()
    if not args.quiet:
        counts = result.counts
        print(
            f"{len(result.rows)} tasks: {counts['ok']} done, {counts['skipped']} already complete, "
            f"{counts['failed']} failed; results in {result.table_csv} and {result.table_json}"
        )
    return EXIT_OK if result.counts["failed"] == 0 else 1
