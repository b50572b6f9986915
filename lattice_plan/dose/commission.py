"""Commissioning: read measured water-tank scans and fit the beam model to them.

Readers: PTW mcc (``read_mcc``) and plain two-column CSV (``read_csv``).
The fit (``commission``) adjusts the depth functions, kernel widths, source
size, off-axis ratio and jaw transmission by scipy least squares so that the
engine's water scans (:mod:`lattice_plan.dose.water`, the same engine as for
patients) match the measured relative PDD and profiles; then it sets the
absolute calibration (0.01 Gy/MU at the depth of maximum of a 10 x 10 cm
field at SSD 1000 mm).

Parameters that a 10 x 10 cm scan set cannot determine well are bounded
by, or held at, literature values recorded in the model's provenance: the
extra-focal (head-scatter) source weight and width (Jaffray et al., Med Phys
20 (1993) 1417: extra-focal fluence of order 8 % for 6 MV, spread over the
flattening filter; several cm wide projected to the isocentre), the jaw leakage (IEC 60976 limit 2 %) and the MLC
transmission (LoSasso et al., Med Phys 25 (1998) 1919: 1.5-2 % for 6 MV).

Head scatter sets how the output falls for small fields, and only output
factors of the machine show it. Given measured output factors
(``read_output_factors``), a second stage fits the extra-focal weight and width
to them and the scans, the kernels held, as two-source head-scatter models are
commissioned (Jursinic, Med Phys 24 (1997) 1677).

Modules: :mod:`lattice_plan.dose.beam_data` (the readers),
:mod:`lattice_plan.dose.commission_fit` (parameters and the fit); this module
fits files (:func:`commission_files`, with provenance) and re-exports both.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lattice_plan.dose.beam_data import (
    OUTPUT_FACTOR_DEPTH_MM,
    OUTPUT_FACTOR_SSD_MM,
    SCAN_KINDS,
    OutputFactor,
    Scan,
    read_csv,
    read_mcc,
    read_output_factors,
)
from lattice_plan.dose.commission_fit import (
    EXTRAFOCAL_SIGMA_MM,
    EXTRAFOCAL_WEIGHT,
    HEAD_SCATTER_NAMES,
    MLC_TRANSMISSION,
    OUTPUT_FACTOR_WEIGHT,
    PARAMETER_NAMES,
    commission,
    model_from_parameters,
)
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DoseError

__all__ = [
    "EXTRAFOCAL_SIGMA_MM",
    "EXTRAFOCAL_WEIGHT",
    "HEAD_SCATTER_NAMES",
    "MLC_TRANSMISSION",
    "OUTPUT_FACTOR_DEPTH_MM",
    "OUTPUT_FACTOR_SSD_MM",
    "OUTPUT_FACTOR_WEIGHT",
    "PARAMETER_NAMES",
    "SCAN_KINDS",
    "OutputFactor",
    "Scan",
    "commission",
    "commission_files",
    "file_provenance",
    "model_from_parameters",
    "read_csv",
    "read_mcc",
    "read_output_factors",
]


def file_provenance(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    """Name and SHA-256 of each input file, for the model's provenance."""
    out = []
    for p in paths:
        path = Path(p)
        out.append({"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return out


def commission_files(
    paths: Sequence[str | Path],
    name: str = "6X commissioned",
    output_factor_file: str | Path | None = None,
    output_factor_setup_mm: tuple[float, float] = (OUTPUT_FACTOR_SSD_MM, OUTPUT_FACTOR_DEPTH_MM),
) -> tuple[BeamModel, dict]:
    """Read mcc files (and optionally an output-factor CSV), fit, and attach provenance.

    ``output_factor_setup_mm``: (SSD, depth) of the output factors in the CSV.
    """
    scans: list[Scan] = []
    for p in paths:
        if Path(p).suffix.lower() != ".mcc":
            raise DoseError(
                f"{p}: the commission command reads PTW .mcc files; load CSV with read_csv"
            )
        scans.extend(read_mcc(p))
    factors: list[OutputFactor] = []
    if output_factor_file is not None:
        factors = read_output_factors(output_factor_file, *output_factor_setup_mm)
    model, report = commission(scans, output_factors=factors)
    inputs = [*paths, *([output_factor_file] if output_factor_file is not None else [])]
    fixed = {}
    if not factors:
        fixed["extrafocal_weight"] = (
            f"{EXTRAFOCAL_WEIGHT} (Jaffray et al., Med Phys 20 (1993) 1417)"
        )
        fixed["extrafocal_sigma_mm"] = f"{EXTRAFOCAL_SIGMA_MM} at the isocentre plane (same source)"
    fixed["mlc_transmission"] = f"{MLC_TRANSMISSION} (LoSasso et al., Med Phys 25 (1998) 1919)"
    fixed["kernel_radius_mm"] = "150"
    command = "lattice-plan commission " + " ".join(Path(p).name for p in paths)
    if output_factor_file is not None:
        ssd, depth = output_factor_setup_mm
        command += (
            f" --output-factors {Path(output_factor_file).name}"
            f" --output-factor-ssd {ssd:g} --output-factor-depth {depth:g}"
        )
    provenance = {
        "fitted_to": file_provenance(inputs),
        "scans": [s.source for s in scans],
        "fit": report,
        "fitted_on": _dt.date.today().isoformat(),
        "command": command + " --out MODEL.json",
        "structure": (
            "pencil-beam superposition: Gaussian primary kernel with electron contamination, two "
            "exponential scatter kernels exp(-r/l)/(2 pi l r) (Ahnesjo et al. 1992), each with a "
            "depth function A(1 - b exp(-beta d)) exp(-mu d) of radiological depth"
        ),
        "bounded_by_literature": {
            "jaw_transmission": "0-1 % (IEC 60976 limit 2 %, linac jaws about 0.5 %)",
            "horn_h2": "-0.02-0.08 (in-air off-axis ratio of a flattened 6 MV beam)",
            "primary_mu": "0.0049-0.0051 /mm (zero-area TMR of 6 MV, Bjarngard and Petti 1988)",
            "s1_lambda": "1-4.5 mm (6 MV primary kernel, 98 % within about 13 mm: Nyholm et al. "
            "2006)",
            **(
                {
                    "extrafocal_weight": "0-0.15 (Jaffray et al. 1993), fitted to the output factors "
                    "and the scans in a second stage, the other parameters held",
                    "extrafocal_sigma_mm": "5-80 mm at the isocentre plane, fitted likewise",
                }
                if factors
                else {}
            ),
        },
        "fixed_from_literature": fixed,
        "not_used_in_fit": "BJR Supplement 25 PDD values and IROC output factors (kept for validation)",
        "calibration": "0.01 Gy/MU at d_max, 10 x 10 cm, SSD 1000 mm",
    }
    model = replace(model, name=name, provenance=provenance)
    if not math.isfinite(model.gy_per_mu):
        raise DoseError(
            "commissioning failed: the fitted model gives no dose at the reference point"
        )
    return model, report
