"""The ``lattice-plan`` command line (entry point :func:`main`); one module per command."""

from lattice_plan.cli.common import END_CAPS, ProgressBars
from lattice_plan.cli.main import build_parser, main

__all__ = ["END_CAPS", "ProgressBars", "build_parser", "main"]
