"""Plan the three arms (SFRT, SCART, CRT) for a DICOM patient and compare them.

    python examples/plan_three_arms.py --ct CT_FOLDER --rtstruct RS.dcm --gtv GTV --out OUT

OUT gets an RTSTRUCT (the input's ROIs plus vertices, valley, STV, PTV), an
RTPLAN and RTDOSE per arm referencing the input CT, metrics.json, figures, 3D
images and report.html. Start from here to change the plan specs
(``--spec``), the organs at risk or the protocol the plans are checked against.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lattice_plan.demo import summary_text
from lattice_plan.workflow import ARMS, load_dicom_case, run_case


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ct", required=True, help="folder of the CT series")
    p.add_argument("--rtstruct", required=True, help="its RTSTRUCT")
    p.add_argument("--gtv", default="GTV", help="ROI name of the GTV")
    p.add_argument("--oar", nargs="+", help="ROI names of the OARs (default: ROIs of type ORGAN)")
    p.add_argument("--spec", nargs="+", help="plan-spec TOML files (one per arm to change)")
    p.add_argument("--dose-spacing", type=float, default=3.0, help="dose grid pitch, mm")
    p.add_argument("--max-iterations", type=int, default=60, help="optimiser iterations")
    p.add_argument("--no-scene", action="store_true", help="skip the 3D images")
    p.add_argument("--out", required=True, help="output folder")
    args = p.parse_args(argv)

    case = load_dicom_case(args.ct, args.rtstruct, gtv=args.gtv, oars=args.oar)
    overrides = {
        "structures.gtv": args.gtv,
        "dose.spacing_mm": args.dose_spacing,
        "optimiser.max_iterations": args.max_iterations,
    }
    if args.oar:
        overrides["structures.oars"] = list(args.oar)
    metrics = run_case(
        case.patient,
        ARMS,
        args.out,
        spec_files=args.spec,
        overrides=overrides,
        protocol="builtin",
        ct_series=case.ct,
        source_rtstruct=case.rtstruct_path,
        scene=not args.no_scene,
    )
    print(summary_text(metrics, Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
