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
