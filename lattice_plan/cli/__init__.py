"""The ``lattice-plan`` command line (entry point :func:`main`); one module per command.

An interrupt (Ctrl-C) while the command line loads ends the run with exit
code 130 and "interrupted", as one at any later moment does (see :func:`main`).
"""

import sys

EXIT_INTERRUPTED = 130

try:
    from lattice_plan.cli.common import END_CAPS, ProgressBars
    from lattice_plan.cli.main import build_parser, main
except KeyboardInterrupt:
    print("lattice-plan: interrupted", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None

__all__ = ["END_CAPS", "EXIT_INTERRUPTED", "ProgressBars", "build_parser", "main"]
