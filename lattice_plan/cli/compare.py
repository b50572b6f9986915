"""``lattice-plan compare``: a side-by-side table of plans (output folders or RTDOSE files)."""

from __future__ import annotations

import argparse

from lattice_plan.cli.common import (
    EXIT_OK,
    add_end_cap_option,
    format_value,
    metric_list,
    require_file,
    text_table,
    write_json,
)
from lattice_plan.errors import InputFileError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare`` to the command line."""
    cmp_ = subparsers.add_parser(
        "compare",
        help="side-by-side table of plans (output folders or RTDOSE files)",
        description=(
            "The comparison table of plan folders written by 'plan' or 'demo' (their "
            "metrics.json), or DVH metrics of several RTDOSE files on one RTSTRUCT."
        ),
    )
    cmp_.add_argument("dirs", nargs="*", metavar="DIR", help="plan output folders")
    cmp_.add_argument("--rtdose", nargs="+", metavar="FILE", help="RTDOSE files to compare")
    cmp_.add_argument("--rtstruct", metavar="FILE", help="RTSTRUCT of the --rtdose files")
    cmp_.add_argument(
        "--names", nargs="+", metavar="NAME", help="column names of the --rtdose files"
    )
    cmp_.add_argument("--metrics", metavar="LIST", help="metrics for --rtdose (as in evaluate)")
    add_end_cap_option(cmp_)
    cmp_.add_argument("--json", metavar="FILE", help="write the table as JSON")
    cmp_.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan compare``; returns the exit code."""
    from lattice_plan.workflow.compare import compare_folders, compare_rtdose

    if args.dirs and args.rtdose:
        raise InputFileError("give either plan folders or --rtdose files, not both")
    if args.dirs:
        table = compare_folders(args.dirs)
    elif args.rtdose:
        if args.rtstruct is None:
            raise InputFileError("--rtdose needs --rtstruct (the structure set of the doses)")
        rtstruct = require_file(args.rtstruct, "RTSTRUCT")
        table = compare_rtdose(
            args.rtdose,
            rtstruct,
            names=args.names,
            metrics=metric_list(args.metrics),
            end_cap=args.end_cap,
        )
    else:
        raise InputFileError("give plan folders (lattice-plan compare DIR...) or --rtdose files")
    if args.json:
        write_json(args.json, table.rows)
    if not args.quiet:
        header = ["metric", *table.columns]
        rows = [
            [m, *(format_value(per.get(c)) for c in table.columns)] for m, per in table.rows.items()
        ]
        print(text_table(header, rows))
    return EXIT_OK
