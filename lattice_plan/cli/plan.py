"""``lattice-plan plan``: plan a DICOM patient (CT + RTSTRUCT) in one or more arms."""

from __future__ import annotations

import argparse
from pathlib import Path

from lattice_plan.cli.common import (
    EXIT_OK,
    add_crt_schedule_option,
    parse_overrides,
    progress_bars,
    require_dir,
    require_file,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plan`` to the command line."""
    plan = subparsers.add_parser(
        "plan",
        help="plan a DICOM patient (CT + RTSTRUCT) in one or more arms",
        description=(
            "Plan a patient from a CT folder and its RTSTRUCT: SFRT, SCART and/or CRT plans, "
            "their comparison and protocol QA. DIR gets an RTSTRUCT (the input's ROIs plus "
            "the planning structures: vertices, valley, STV, PTV...), an RTPLAN and RTDOSE per "
            "plan referencing the input CT, metrics.json, figures, 3D images and report.html."
        ),
    )
    plan.add_argument("--ct", required=True, metavar="DIR", help="folder of the CT series")
    plan.add_argument("--rtstruct", required=True, metavar="FILE", help="its RTSTRUCT")
    plan.add_argument("--gtv", required=True, metavar="NAME", help="ROI name of the GTV")
    plan.add_argument(
        "--arm",
        action="append",
        type=str.lower,
        choices=["sfrt", "scart", "crt"],
        help="arm to plan (repeat for several; default: all three)",
    )
    plan.add_argument(
        "--spec",
        action="append",
        metavar="FILE.toml",
        help="plan-spec TOML for the arm it names (repeat for several arms)",
    )
    plan.add_argument(
        "--oar",
        nargs="+",
        metavar="NAME",
        help="ROI names of the organs at risk (default: every ROI of type ORGAN)",
    )
    plan.add_argument(
        "--external", metavar="NAME", help="ROI name of the body outline (default: type EXTERNAL)"
    )
    plan.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a plan-spec key, e.g. --set dose.spacing_mm=3 --set lattice.spacing_mm=25",
    )
    add_crt_schedule_option(plan)
    plan.add_argument(
        "--protocol",
        default="builtin",
        metavar="NAME|FILE",
        help="protocol for QA: 'builtin' (default), a built-in name or a TOML file",
    )
    plan.add_argument("--no-qa", action="store_true", help="skip the protocol QA")
    plan.add_argument("--no-figures", action="store_true", help="skip the figures")
    plan.add_argument("--no-scene", action="store_true", help="skip the 3D images")
    plan.add_argument("--out", required=True, metavar="DIR", help="output folder")
    plan.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan plan``; returns the exit code."""
    from lattice_plan.demo import summary_text
    from lattice_plan.planning.spec import load_spec
    from lattice_plan.workflow import load_dicom_case, run_case

    ct_dir = require_dir(args.ct, "CT folder")
    rtstruct = require_file(args.rtstruct, "RTSTRUCT")
    for f in args.spec or ():
        load_spec(f)  # a missing or invalid spec fails before the CT is read
    overrides = parse_overrides(args.set)
    if args.crt_schedule:
        overrides["crt.schedule"] = args.crt_schedule
    overrides["structures.gtv"] = args.gtv
    if args.oar:
        overrides["structures.oars"] = list(args.oar)
    case = load_dicom_case(ct_dir, rtstruct, gtv=args.gtv, oars=args.oar, external=args.external)
    arms = [a.upper() for a in (args.arm or ["SFRT", "SCART", "CRT"])]
    bars = progress_bars(args)
    try:
        metrics = run_case(
            case.patient,
            arms,
            args.out,
            spec_files=args.spec,
            overrides=overrides,
            protocol=None if args.no_qa else args.protocol,
            write_ct=False,
            progress=bars,
            ct_series=case.ct,
            source_rtstruct=case.rtstruct_path,
            figures=not args.no_figures,
            scene=not args.no_scene,
        )
    finally:
        bars.close()
    if not args.quiet:
        print(summary_text(metrics, Path(args.out)))
    return EXIT_OK
