"""The ``lattice-plan`` command line: parses arguments, calls the library, prints.

Bad input ends with exit code 2 and one line on stderr that names the
problem; ``-v`` shows the library's log, ``-q`` only errors. Each command is a
module of this package with ``add_parser(subparsers)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from lattice_plan import __version__
from lattice_plan.cli import (
    EXIT_INTERRUPTED,
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


#: Library advice in Python terms -> the same advice in command-line options
#: (pattern, replacement), applied to the error line.
CLI_WORDING: tuple[tuple[str, str], ...] = (
    (r"give the RTPLAN or the (number of )?fractions", "give --rtplan or --fractions"),
    (
        r"give an RTPLAN with a target prescription dose, or the prescription in Gy",
        "give --rtplan with a target prescription dose, or --prescription-gy",
    ),
    (r"pass prescription_gy > 0", "give --prescription-gy"),
    (r"\bfractions=(\d+)", r"--fractions \1"),
    (r"leave fractions out", "leave --fractions out"),
    (
        r"pass (series_uid|slice_thickness_mm)= to choose one",
        "give --ct a folder that holds only the series to use",
    ),
    (
        r"give the folder of the CT series or pass recursive=True",
        "give --ct the folder that holds the CT slices themselves",
    ),
    (
        r"or rasterise the structures on another grid that covers them, "
        r"e\.g\. read_rtstruct\(path, read_rtdose\(dose_path\)\.grid\)",
        "or leave out --ct to rasterise them on the dose grid (evaluate)",
    ),
)


def cli_wording(message: str) -> str:
    """``message`` with the library's Python-level advice said in command-line options."""
    for pattern, replacement in CLI_WORDING:
        message = re.sub(pattern, replacement, message)
    return message


class _Interrupts:
    """SIGINT raises KeyboardInterrupt and is remembered, so that an error it causes
    (e.g. an ImportError of a module whose import it broke) is reported as the interrupt."""

    received = False

    def handle(self, signum: int, frame: object) -> None:
        self.received = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def watched(self) -> Iterator[None]:
        """Watch SIGINT in the block where Python's default handler is in place."""
        self.received = False
        own = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        if own:
            signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            if own:
                signal.signal(signal.SIGINT, signal.default_int_handler)


_INTERRUPTS = _Interrupts()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    command = "lattice-plan"
    try:
        with _INTERRUPTS.watched():
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
                return int(exc.code or 0)
            command = f"lattice-plan {args.command}"
            level = (
                logging.DEBUG
                if args.verbose
                else (logging.ERROR if args.quiet else logging.WARNING)
            )
            logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
            return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _INTERRUPTS.received:  # an error the interrupt caused, not a fault of its own
            print(f"{command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(exc, LatticePlanError):
            print(f"{command}: error: {cli_wording(str(exc))}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
