"""``lattice-plan recalc``: the independent dose of any photon RTPLAN, and its check against an RTDOSE."""

from __future__ import annotations

import argparse
from pathlib import Path

from lattice_plan.cli.common import (
    EXIT_OK,
    format_value,
    progress_bars,
    require_dir,
    require_file,
    text_table,
    write_json,
)
from lattice_plan.errors import InputFileError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``recalc`` to the command line."""
    rc = subparsers.add_parser(
        "recalc",
        help="independent dose of an RTPLAN (ours or another system's) on its CT",
        description=(
            "Recompute the dose of a photon RTPLAN from its control points (static, "
            "step-and-shoot, sliding window, arcs) with the commissioned beam model, and write "
            "it as a PLAN RTDOSE (all fractions) on the CT or on another dose's grid. With "
            "--compare: gamma (global and local) and dose differences against that RTDOSE, and "
            "with --rtstruct the DVH metrics of both."
        ),
    )
    rc.add_argument("--rtplan", required=True, metavar="FILE", help="the RTPLAN to recalculate")
    rc.add_argument("--ct", required=True, metavar="DIR", help="folder of the plan's CT series")
    rc.add_argument("--out", required=True, metavar="RTDOSE.dcm", help="RTDOSE file to write")
    rc.add_argument(
        "--machine",
        metavar="FILE",
        help="machine TOML (MLC, transmission, leaf ends) for every beam; default: the "
        "shipped machine named by the plan, else the default machine with the plan's leaves",
    )
    rc.add_argument(
        "--grid-like",
        metavar="RTDOSE",
        help="write the dose on this RTDOSE's grid (exact comparison)",
    )
    rc.add_argument("--compare", metavar="RTDOSE", help="reference dose to check against")
    rc.add_argument(
        "--gamma", metavar="CRITERION", help="gamma criterion of --compare (default 3%%/2mm)"
    )
    rc.add_argument("--rtstruct", metavar="FILE", help="RTSTRUCT: body outline and DVH metrics")
    rc.add_argument(
        "--gantry-step", type=float, default=2.0, metavar="DEG", help="arc sampling (default 2)"
    )
    rc.add_argument("--json", metavar="FILE", help="write the check's numbers as JSON")
    rc.set_defaults(func=run)


def _check_out(path: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise InputFileError(f"--out {path!r} is a folder; give the RTDOSE file name to write")
    if not out.parent.is_dir():
        raise InputFileError(f"--out {path!r}: folder {str(out.parent)!r} does not exist")
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan recalc``; returns the exit code."""
    from lattice_plan.analysis.dose_agreement import dose_agreement, parse_gamma_criterion
    from lattice_plan.dose.machine import read_machine
    from lattice_plan.io.ct import read_ct
    from lattice_plan.io.rtdose import load_rtdose
    from lattice_plan.io.rtstruct import read_rtstruct
    from lattice_plan.workflow.recalc import (
        dvh_metrics,
        recalculate,
        reference_dose,
        write_recalc_rtdose,
    )

    rtplan = require_file(args.rtplan, "RTPLAN")
    ct_dir = require_dir(args.ct, "CT folder")
    out = _check_out(args.out)
    if args.gamma is not None and args.compare is None:
        raise InputFileError("--gamma needs --compare RTDOSE (the dose to check against)")
    criterion = parse_gamma_criterion(args.gamma or "3%/2mm")
    for option in ("machine", "grid_like", "compare", "rtstruct"):
        if getattr(args, option) is not None:
            require_file(getattr(args, option), f"--{option.replace('_', '-')}")
    machine = read_machine(args.machine) if args.machine else None
    ct = read_ct(ct_dir)
    structures = read_rtstruct(args.rtstruct, ct) if args.rtstruct else None
    body = None
    if structures is not None and structures.of_kind("EXTERNAL"):
        body = structures.external()
    grid = None
    if args.grid_like:
        grid_dose = load_rtdose(args.grid_like, patient_position=ct.grid.patient_position)
        if grid_dose.frame_of_reference_uid != ct.frame_of_reference_uid:
            raise InputFileError(
                f"--grid-like {args.grid_like!r} is in another frame of reference than the CT"
            )
        grid = grid_dose.grid
    bars = progress_bars(args)
    try:
        result = recalculate(
            rtplan,
            ct,
            machine,
            grid,
            bars,
            body=body,
            gantry_step_deg=args.gantry_step,
        )
    finally:
        bars.close()
    reference = reference_dose(args.compare, result) if args.compare else None
    report: dict = {
        "rtplan": str(rtplan),
        "out": str(out),
        "n_fractions": result.delivery.n_fractions,
        "n_beams": len(result.delivery.beams),
        "n_engine_beams": result.n_engine_beams,
        "max_dose_gy": float(result.dose.array.max()),
    }
    lines = [
        f"wrote {out}: {report['n_beams']} beams, {report['n_fractions']} fractions, "
        f"max {report['max_dose_gy']:.3f} Gy"
    ]
    if reference is not None:
        agreement = dose_agreement(reference, result.dose, *criterion)
        report["check"] = agreement.as_dict()
        lines.append(agreement.summary())
        if structures is not None:
            table = dvh_metrics(
                {"recalc": result.dose, "reference": reference},
                structures,
                result.delivery.n_fractions,
            )
            report["dvh"] = table
            rows = [
                [
                    name,
                    metric,
                    format_value(per["recalc"][metric]),
                    format_value(per["reference"][metric]),
                ]
                for name, per in table.items()
                for metric in per["recalc"]
            ]
            lines.append(text_table(["structure", "metric", "recalc", "reference"], rows))
    # everything that can fail is done: now write (nothing is written on bad input)
    write_recalc_rtdose(result, out)
    if args.json:
        write_json(args.json, report)
    if not args.quiet:
        print("\n".join(lines))
    return EXIT_OK
