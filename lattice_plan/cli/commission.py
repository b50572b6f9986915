"""``lattice-plan commission``: fit the beam model to measured water-tank scans."""

from __future__ import annotations

import argparse

from lattice_plan.cli.common import EXIT_OK
from lattice_plan.errors import DoseError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``commission`` to the command line."""
    com = subparsers.add_parser(
        "commission",
        help="fit the photon beam model to measured water-tank scans",
        description=(
            "Fit the 6 MV pencil-beam model to PTW mcc scans (a 10 x 10 cm PDD at SSD 1000 mm "
            "and profiles), and to measured output factors if given (they set the head "
            "scatter, which 10 x 10 cm scans cannot show), and write the calibrated model as JSON."
        ),
    )
    com.add_argument("scans", nargs="+", metavar="SCANS", help="PTW .mcc files")
    com.add_argument("--out", required=True, metavar="FILE", help="model JSON to write")
    com.add_argument("--name", default="6X commissioned", help="name stored in the model")
    com.add_argument(
        "--output-factors",
        metavar="CSV",
        help=(
            "measured output factors of square fields, rows of (side mm, output factor relative "
            "to 10 x 10 cm); the head scatter is then fitted to them"
        ),
    )
    com.add_argument(
        "--output-factor-ssd",
        type=float,
        metavar="MM",
        help="SSD of the output-factor measurements (default 900)",
    )
    com.add_argument(
        "--output-factor-depth",
        type=float,
        metavar="MM",
        help="depth of the output-factor measurements (default 100)",
    )
    com.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan commission``; returns the exit code."""
    from lattice_plan.dose.commission import (
        OUTPUT_FACTOR_DEPTH_MM,
        OUTPUT_FACTOR_SSD_MM,
        commission_files,
    )

    setup_given = args.output_factor_ssd is not None or args.output_factor_depth is not None
    if setup_given and args.output_factors is None:
        raise DoseError(
            "--output-factor-ssd and --output-factor-depth describe an output-factor file: "
            "give it with --output-factors CSV"
        )
    model, report = commission_files(
        args.scans,
        name=args.name,
        output_factor_file=args.output_factors,
        output_factor_setup_mm=(
            OUTPUT_FACTOR_SSD_MM if args.output_factor_ssd is None else args.output_factor_ssd,
            OUTPUT_FACTOR_DEPTH_MM
            if args.output_factor_depth is None
            else args.output_factor_depth,
        ),
    )
    model.to_json(args.out)
    if not args.quiet:
        print(
            f"fitted {len(report['parameters'])} parameters to {len(args.scans)} scan file(s): "
            f"RMS residual {100 * report['rms_residual']:.2f} %, "
            f"max {100 * report['max_abs_residual']:.2f} %; wrote {args.out}"
        )
        for of in report.get("output_factors", []):
            fx, fy = of["field_mm"]
            print(
                f"  output factor {fx:g} x {fy:g} mm: measured {of['measured']:.3f}, "
                f"model {of['model']:.3f} ({100 * (of['model'] / of['measured'] - 1):+.1f} %)"
            )
    return EXIT_OK
