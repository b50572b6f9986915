"""The ``lattice-plan`` command line: parses arguments, calls the library, prints.

Bad input ends with exit code 2 and one line on stderr that names the
problem; ``-v`` shows the library's log, ``-q`` only errors. Each command is a
module of this package with ``add_parser(subparsers)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lattice_plan import __version__
from lattice_plan.cli import (
    batch,
    commission,
    compare,
    demo,
    evaluate,
    plan,
    qa,
    recalc,
    vertices,
    view,
)
from lattice_plan.cli.common import EXIT_BAD_INPUT
from lattice_plan.errors import LatticePlanError

#: The commands in the order ``--help`` lists them.
COMMANDS = (demo, plan, vertices, evaluate, compare, view, qa, recalc, commission, batch)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``lattice-plan``: the global options and one subparser per command."""
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
    for command in COMMANDS:
        command.add_parser(sub)
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
