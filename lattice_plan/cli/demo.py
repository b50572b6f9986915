"""``lattice-plan demo``: the whole job on the built-in phantom."""

from __future__ import annotations

import argparse
from pathlib import Path

from lattice_plan.cli.common import EXIT_OK, add_crt_schedule_option, progress_bars


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the command line."""
    demo = subparsers.add_parser(
        "demo",
        help="run the whole job on the built-in phantom",
        description=(
            "Plan the built-in lumbar-metastasis phantom in the three arms (SFRT, SCART, CRT), "
            "compare the plans and check them against the built-in study protocol. DIR gets the "
            "CT series, one RTSTRUCT, an RTPLAN and RTDOSE per plan, metrics.json, figures, 3D "
            "images and report.html."
        ),
    )
    demo.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created if missing)"
    )
    demo.add_argument(
        "--fast",
        action="store_true",
        help="coarse and quick: 4 mm CT, 5 mm dose grid, 12 optimiser iterations",
    )
    demo.add_argument(
        "--delivery",
        choices=["sliding_window", "step_and_shoot", "ideal", "vmat"],
        help="how the SFRT and SCART plans are delivered (vmat: two full arcs); default sliding_window",
    )
    add_crt_schedule_option(demo)
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan demo``; returns the exit code."""
    from lattice_plan.demo import run_demo

    bars = progress_bars(args)
    try:
        summary = run_demo(
            Path(args.out),
            fast=args.fast,
            delivery=args.delivery,
            progress=bars,
            crt_schedule=args.crt_schedule,
        )
    finally:
        bars.close()
    if not args.quiet:
        print(summary)
    return EXIT_OK
