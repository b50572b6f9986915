"""Time, MU and dose figures of the default CRT plan on the built-in phantom. Prints JSON.

Default settings: GTV + 10 mm PTV, 7 mm penumbra margin, 30 Gy in 10 fractions
to the PTV D95%, 2.5 mm dose grid, arrangement chosen from the target
position. A first plan warms the Numba cache (untimed). The 1-minute load
average is reported because other work on the machine slows the timings.
"""

from __future__ import annotations

import json
import os
import resource
import time

import numpy as np

from lattice_plan.geometry.structure import structure_on_grid
from lattice_plan.phantoms import build_phantom
from lattice_plan.planning.crt import build_crt_plan


def main() -> None:
    patient = build_phantom()
    build_crt_plan(patient, dose_spacing_mm=5.0)  # warm-up: imports, Numba cache
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    plan = build_crt_plan(patient)
    wall = time.perf_counter() - t0
    dose = plan.dose
    ptv = dose.array[structure_on_grid(plan.structures["PTV"], dose.grid).mask]
    rx = plan.prescription.total_dose_gy
    print(
        json.dumps(
            {
                "benchmark": "crt_phantom",
                "wall_s": round(wall, 2),
                "timings_s": plan.info["timings_s"],
                "arrangement": plan.info["arrangement"],
                "beams": [b.name for b in plan.beams],
                "weights": plan.info["weights"],
                "mu_per_beam": {k: round(v, 1) for k, v in plan.info["mu_per_beam"].items()},
                "total_mu_per_fraction": round(plan.total_mu, 1),
                "ptv_cc": round(plan.info["ptv_volume_cc"], 1),
                "ptv_d95_pct": round(100 * float(np.percentile(ptv, 5)) / rx, 2),
                "ptv_dmax_pct": round(100 * float(ptv.max()) / rx, 2),
                "body_dmax_pct": round(100 * float(dose.array.max()) / rx, 2),
                "peak_rss_mb": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1
                ),
                "load_average_1min_at_start": round(load, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
