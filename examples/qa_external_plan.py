"""Check a plan exported from another planning system: DVH metrics, PVDR and protocol QA.

    python examples/qa_external_plan.py --rtdose RD.dcm --rtstruct RS.dcm --rtplan RP.dcm \
        --arm CRT_30Gy_10fx --json qa.json

Prints the DVH metrics of every ROI (rasterised on the dose grid, or on the
CT with --ct), the PVDR variants the structures allow, and the protocol check
of one arm; writes everything as JSON. The protocol is the built-in study
template unless --protocol names a TOML file (start from
``lattice_plan.qa.builtin_protocol_text()``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lattice_plan.workflow import DEFAULT_METRICS, evaluate_dicom


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtdose", required=True, help="RTDOSE of the plan")
    p.add_argument("--rtstruct", required=True, help="its RTSTRUCT")
    p.add_argument("--rtplan", help="its RTPLAN (fractions and prescription)")
    p.add_argument("--ct", help="CT folder (default: ROIs rasterised on the dose grid)")
    p.add_argument("--metrics", nargs="+", default=[*DEFAULT_METRICS, "V95%", "EQD2:Dmean"])
    p.add_argument("--arm", required=True, help="protocol arm, e.g. SFRT or CRT_30Gy_10fx")
    p.add_argument("--protocol", default="builtin", help="'builtin' or a protocol TOML file")
    p.add_argument("--json", help="write the result as JSON")
    args = p.parse_args(argv)

    result = evaluate_dicom(
        args.rtdose,
        args.rtstruct,
        ct_dir=args.ct,
        rtplan_path=args.rtplan,
        metrics=args.metrics,
        protocol=args.protocol,
        arm=args.arm,
    )
    print(
        f"plan {result['plan']}: {result['fractions']} fraction(s), dose max {result['dose']['max_gy']:.2f} Gy"
    )
    for roi, values in result["structures"].items():
        shown = ", ".join(
            f"{m} {values[m]:.3g}" for m in result["metrics"] if values.get(m) is not None
        )
        print(f"  {roi} ({values['volume_cc']:.1f} cc): {shown or values.get('note', '')}")
    for variant, pvdr in result["pvdr"].items():
        print(f"  PVDR {variant}: {pvdr['value']:.2f}")
    qa = result["qa"]
    print(f"QA against {qa['protocol']}, arm {qa['arm']}: {qa['verdict']}")
    for row in qa["rows"]:
        value = "-" if row["value"] is None else f"{row['value']:.3g} {row['unit']}"
        print(
            f"  {row['structure']:<14} {row['metric']:<10} {row['comparison']} {row['limit']:<8} {value:<12} {row['outcome']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
