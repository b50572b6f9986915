"""The ``lattice-plan`` command line: parses arguments, calls the library, prints.

Bad input ends with exit code 2 and one line on stderr that names the
problem; ``-v`` shows the library's log, ``-q`` only errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lattice_plan import __version__
from lattice_plan.errors import LatticePlanError

log = logging.getLogger("lattice_plan.cli")

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from lattice_plan.demo import run_demo

    summary = run_demo(Path(args.out), progress=not args.quiet)
    if not args.quiet:
        print(summary)
    return EXIT_OK


def _cmd_qa(args: argparse.Namespace) -> int:
    from lattice_plan.qa import Verdict, check_dicom, load_builtin_protocol, load_protocol

    protocol = load_protocol(args.protocol) if args.protocol else load_builtin_protocol()
    result = check_dicom(
        args.rtdose,
        args.rtstruct,
        protocol,
        args.arm,
        rtplan_path=args.rtplan,
        fractions=args.fractions,
    )
    if args.json:
        result.write_json(args.json)
    if args.csv:
        result.write_csv(args.csv)
    if not args.quiet:
        print(result.format_table())
    return EXIT_OK if result.verdict in (Verdict.PER_PROTOCOL, Verdict.MINOR_DEVIATION) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lattice-plan",
        description=(
            "Dose planning for spatially fractionated (lattice/SFRT) and SCART radiotherapy, "
            "compared against a conventional (CRT) plan. Units: mm, Gy, degrees."
        ),
    )
    parser.add_argument("--version", action="version", version=f"lattice-plan {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="show progress details and the library log"
    )
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the whole job on the built-in phantom",
        description="Build the built-in lumbar-metastasis phantom and write its summary and figures to DIR.",
    )
    demo.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created if missing)"
    )
    demo.set_defaults(func=_cmd_demo)

    qa = sub.add_parser(
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
    qa.add_argument("--json", metavar="FILE", help="write the result as JSON")
    qa.add_argument("--csv", metavar="FILE", help="write the result table as CSV")
    qa.set_defaults(func=_cmd_qa)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    level = logging.DEBUG if args.verbose else (logging.ERROR if args.quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except LatticePlanError as exc:
        print(f"lattice-plan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"lattice-plan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
