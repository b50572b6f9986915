"""``lattice-plan evaluate``: DVH metrics, PVDR and protocol QA of any plan's RTDOSE + RTSTRUCT."""

from __future__ import annotations

import argparse

from lattice_plan.cli.common import (
    EXIT_OK,
    add_end_cap_option,
    format_value,
    metric_list,
    require_dir,
    require_file,
    structure_table,
    write_json,
)
from lattice_plan.errors import ProtocolError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the command line."""
    ev = subparsers.add_parser(
        "evaluate",
        help="DVH metrics, PVDR and protocol QA of any plan's RTDOSE + RTSTRUCT",
        description=(
            "DVH metrics of every ROI of an exported plan from any planning system, PVDR, and "
            "with --arm a protocol check. Without --ct the ROIs are rasterised on the dose grid. "
            "D-metrics are in Gy, V-metrics in the unit asked for (V20Gy in %, V20Gy[cc] in cc)."
        ),
    )
    ev.add_argument("--rtdose", required=True, metavar="FILE", help="RTDOSE (plan dose)")
    ev.add_argument("--rtstruct", required=True, metavar="FILE", help="its RTSTRUCT")
    ev.add_argument("--ct", metavar="DIR", help="CT folder: rasterise the ROIs on the CT")
    ev.add_argument("--rtplan", metavar="FILE", help="RTPLAN (fractions and prescription)")
    ev.add_argument(
        "--metrics",
        metavar="LIST",
        help="comma-separated metrics (default: Dmin,Dmean,Dmax,D98%%,D95%%,D50%%,D2%%,D0.03cc); "
        "e.g. 'Dmean,D95%%,V20Gy[cc],EQD2:Dmax'",
    )
    ev.add_argument("--fractions", type=int, help="number of fractions (default: RTPLAN)")
    ev.add_argument(
        "--prescription-gy", type=float, metavar="GY", help="prescription (default: RTPLAN)"
    )
    ev.add_argument("--protocol", metavar="NAME|FILE", help="protocol (default: built-in)")
    ev.add_argument("--arm", help="protocol arm to check the plan against, e.g. SFRT")
    add_end_cap_option(ev)
    ev.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan evaluate``; returns the exit code."""
    from lattice_plan.workflow import evaluate_dicom

    rtdose = require_file(args.rtdose, "RTDOSE")
    rtstruct = require_file(args.rtstruct, "RTSTRUCT")
    if args.ct is not None:
        require_dir(args.ct, "CT folder")
    if args.rtplan is not None:
        require_file(args.rtplan, "RTPLAN")
    if args.protocol is not None and args.arm is None:
        raise ProtocolError("--protocol needs --arm (the protocol arm to check the plan against)")
    result = evaluate_dicom(
        rtdose,
        rtstruct,
        ct_dir=args.ct,
        rtplan_path=args.rtplan,
        metrics=metric_list(args.metrics),
        protocol=args.protocol,
        arm=args.arm,
        fractions=args.fractions,
        prescription_gy=args.prescription_gy,
        end_cap=args.end_cap,
    )
    if args.json:
        write_json(args.json, result)
    if not args.quiet:
        print(
            f"{result['plan']}: dose max {result['dose']['max_gy']:.3f} Gy, "
            f"{result['fractions'] or '?'} fraction(s), prescription "
            f"{format_value(result['prescription_gy'])} Gy"
        )
        print(structure_table(result))
        for variant, p in result["pvdr"].items():
            which = p.get("structure") or " / ".join(p["structures"])
            print(f"PVDR {variant} ({which}): {p['value']:.3f}")
        for note in result["notes"]:
            print(f"note: {note}")
        for name, entry in result["structures"].items():
            if "note" in entry:
                print(f"note: {name}: {entry['note']}")
        if "qa" in result:
            qa = result["qa"]
            print(f"QA {qa['protocol']} arm {qa['arm']}: {qa['verdict']} ({qa['counts']})")
    return EXIT_OK
