"""Commission the 6 MV beam model from measured water-tank scans and compare it with them.

    python examples/commission_beam_model.py SCAN.mcc [SCAN.mcc ...] [--output-factors CSV] --out OUT

Fits the pencil-beam model to the PDD and profiles (PTW mcc files) and, given
the machine's output factors (rows of square-field side mm, output factor at
SSD 900 mm, 100 mm depth), its head scatter to them; writes the calibrated model
(``OUT/beam_model.json``, usable as
``DoseEngine(ct, body, model=BeamModel.from_json(...))``) and
``OUT/commissioning.png`` with measured and modelled PDD and profiles, and
prints the fit residuals, the model's PDD at 10 and 20 cm against the British
Journal of Radiology Supplement 25 values (67.5 % and 39.3 %) and its output
factors against the IROC values for 6 MV (Elekta; PMC5718235 Table 2).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lattice_plan.dose import water
from lattice_plan.dose.commission import (
    PARAMETER_NAMES,
    commission,
    file_provenance,
    read_mcc,
    read_output_factors,
)
from lattice_plan.dose.model import BeamModel

BJR25_PDD_PERCENT = {100.0: 67.5, 200.0: 39.3}  # 6 MV, 10 x 10 cm, SSD 100 cm
IROC_OUTPUT_FACTORS = {60.0: 0.930, 40.0: 0.878, 30.0: 0.842, 20.0: 0.790}  # SSD 90, 10 cm deep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scans", nargs="+", help="PTW .mcc scan files (a 10 x 10 cm PDD and profiles)")
    p.add_argument("--max-evaluations", type=int, default=400, help="least-squares evaluations")
    p.add_argument(
        "--start",
        choices=("default", "shipped"),
        default="default",
        help="initial parameters: the fit's defaults, or the shipped model's fitted values",
    )
    p.add_argument(
        "--output-factors",
        metavar="CSV",
        help="the machine's output factors (side mm, value) at SSD 900 mm, 100 mm depth",
    )
    p.add_argument("--out", required=True, help="output folder")
    args = p.parse_args(argv)

    scans = [s for path in args.scans for s in read_mcc(path)]
    initial = None
    if args.start == "shipped":
        fitted = BeamModel.load_default().provenance["fit"]["parameters"]
        initial = [fitted[n] for n in PARAMETER_NAMES]
    factors = read_output_factors(args.output_factors) if args.output_factors else []
    model, report = commission(
        scans, initial=initial, max_nfev=args.max_evaluations, output_factors=factors
    )
    inputs = [*args.scans, *([args.output_factors] if args.output_factors else [])]
    model = replace(
        model,
        name="6X commissioned (example)",
        provenance={**model.provenance, "fitted_to": file_provenance(inputs), "fit": report},
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.to_json(out / "beam_model.json")
    print(
        f"fit: RMS residual {100 * report['rms_residual']:.2f} %, max "
        f"{100 * report['max_abs_residual']:.2f} %, {report['n_evaluations']} evaluations"
    )
    ref = water.pdd((100.0, 100.0), 1000.0, np.arange(5.0, 40.0, 0.5), model=model).max()
    for depth, published in BJR25_PDD_PERCENT.items():
        value = 100 * float(water.pdd((100.0, 100.0), 1000.0, [depth], model=model)[0]) / ref
        print(f"PDD({depth / 10:g} cm) = {value:.1f} % (BJR Suppl. 25: {published} %)")
    for side, published in IROC_OUTPUT_FACTORS.items():
        value = water.output_factor((side, side), 900.0, 100.0, model=model)
        print(
            f"output factor {side / 10:g} x {side / 10:g} cm = {value:.3f} "
            f"(IROC: {published}, {100 * (value / published - 1):+.1f} %)"
        )

    fig = Figure(figsize=(6 * len(scans), 4), layout="constrained")
    for ax, scan in zip(np.atleast_1d(fig.subplots(1, len(scans))), scans, strict=True):
        scan = scan.centred()
        measured = scan.normalised()
        if scan.kind == "pdd":
            calc = water.pdd(scan.field_mm, scan.ssd_mm, scan.positions_mm, model=model)
            calc = calc / calc.max()
            ax.set_xlabel("depth, mm")
        else:
            calc = water.profile(
                scan.field_mm, scan.ssd_mm, scan.depth_mm, scan.positions_mm, scan.kind, model=model
            )
            calc = calc / float(np.interp(0.0, scan.positions_mm, calc))
            ax.set_xlabel(f"{scan.kind} position at {scan.depth_mm:g} mm depth, mm")
        ax.plot(scan.positions_mm, 100 * measured, ".", ms=3, label="measured")
        ax.plot(scan.positions_mm, 100 * calc, "-", label="model")
        ax.set_ylabel("relative dose, %")
        ax.set_title(
            f"{scan.kind}, {scan.field_mm[0] / 10:g} x {scan.field_mm[1] / 10:g} cm, SSD {scan.ssd_mm / 10:g} cm"
        )
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(out / "commissioning.png", dpi=100)
    print(f"wrote {out / 'beam_model.json'} and {out / 'commissioning.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
