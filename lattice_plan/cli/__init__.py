"""The ``lattice-plan`` command line (entry point :func:`main`); one module per command.

The package loads its modules only inside :func:`main`, so that an interrupt
(Ctrl-C) while they load ends the run with exit code 130 like one at any later
moment, not with a traceback.
"""

import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["END_CAPS", "ProgressBars", "build_parser", "main"]

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    try:
        from lattice_plan.cli.main import main as run
    except KeyboardInterrupt:
        print("lattice-plan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return run(argv)


def __getattr__(name: str) -> Any:
    if name in ("END_CAPS", "ProgressBars"):
        from lattice_plan.cli import common

        return getattr(common, name)
    if name == "build_parser":
        from lattice_plan.cli.main import build_parser

        return build_parser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
