"""``lattice-plan qa``: check an exported plan against a protocol arm."""

from __future__ import annotations

import argparse

from lattice_plan.cli.common import EXIT_OK, add_end_cap_option


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``qa`` to the command line."""
    qa = subparsers.add_parser(
        "qa",
        help="check an exported plan (RTDOSE + RTSTRUCT) against a protocol arm",
        description=(
            "Check a DICOM RTDOSE + RTSTRUCT (+ RTPLAN for the fractions) from any planning "
            "system against the constraints of one arm. Exit 0: per protocol or minor "
            "deviation; 1: major deviation or incomplete; 2: bad input."
        ),
    )
    qa.add_argument("--rtdose", required=True, metavar="FILE", help="RTDOSE of the whole plan")
    qa.add_argument("--rtstruct", required=True, metavar="FILE", help="its RTSTRUCT")
    qa.add_argument("--rtplan", metavar="FILE", help="its RTPLAN (gives the fractions)")
    qa.add_argument(
        "--protocol", metavar="FILE", help="protocol TOML (default: the built-in study template)"
    )
    qa.add_argument("--arm", required=True, help="arm of the protocol, e.g. SFRT")
    qa.add_argument("--fractions", type=int, help="number of fractions (default: RTPLAN, arm)")
    add_end_cap_option(qa)
    qa.add_argument("--json", metavar="FILE", help="write the result as JSON")
    qa.add_argument("--csv", metavar="FILE", help="write the result table as CSV")
    qa.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan qa``; returns the exit code."""
    from lattice_plan.qa import Verdict, check_dicom, load_builtin_protocol, load_protocol

    protocol = load_protocol(args.protocol) if args.protocol else load_builtin_protocol()
    result = check_dicom(
        args.rtdose,
        args.rtstruct,
        protocol,
        args.arm,
        rtplan_path=args.rtplan,
        fractions=args.fractions,
        end_cap=args.end_cap,
    )
    if args.json:
        result.write_json(args.json)
    if args.csv:
        result.write_csv(args.csv)
    if not args.quiet:
        print(result.format_table())
    return EXIT_OK if result.verdict in (Verdict.PER_PROTOCOL, Verdict.MINOR_DEVIATION) else 1
