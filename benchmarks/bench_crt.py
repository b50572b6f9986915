"""Time and result of the CRT plan of the demo phantom and the example cohort's phantoms. JSON.

Each case: the CRT plan (30 Gy in 10 fractions to the PTV D95%, all five
candidate arrangements, up to two field-in-field segments per field) made
against the built-in protocol's CRT_30Gy_10fx arm, as ``lattice-plan demo``
and ``lattice-plan batch examples/cohort_phantom_sweep.toml`` make it: the demo
phantom on its 2.5 mm dose grid, the three cohort phantoms on the cohort's
3 mm grid. ``wall_s`` is the builder's time (dose engine made inside it); the
phantom build and the protocol check are not timed. A first plan warms the
Numba cache (untimed). The 1-minute load average and CPU count are reported
because other work on the machine slows the timings.
"""

from __future__ import annotations

import json
import os
import time

from lattice_plan.phantoms import build_phantom
from lattice_plan.planning.crt import build_crt_plan
from lattice_plan.qa import check, load_builtin_protocol
from lattice_plan.qa.planning_limits import planning_limits

ARM = "CRT_30Gy_10fx"
CASES = {
    "demo": ({}, 2.5),
    "cohort phantom-default": ({}, 3.0),
    "cohort phantom-large-mass": ({"mass_diameters_mm": (76.0, 66.0, 80.0), "seed": 1}, 3.0),
    "cohort phantom-small-mass": ({"mass_diameters_mm": (52.0, 46.0, 56.0), "seed": 2}, 3.0),
}


def main() -> None:
    protocol = load_builtin_protocol()
    warm = build_phantom(spacing_mm=(4.0, 4.0, 4.0), length_mm=160.0)
    build_crt_plan(warm, dose_spacing_mm=5.0, arrangements=["box"])
    for case, (params, spacing) in CASES.items():
        patient = build_phantom(**params)
        limits = planning_limits(protocol, ARM, patient.structures)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        plan = build_crt_plan(patient, limits=limits, dose_spacing_mm=spacing)
        wall = time.perf_counter() - t0
        result = check(plan, None, protocol, ARM, allow_partial=True)
        info = plan.info
        print(
            json.dumps(
                {
                    "benchmark": "crt_plan",
                    "case": case,
                    "dose_spacing_mm": spacing,
                    "wall_s": round(wall, 2),
                    "timings_s": info["timings_s"],
                    "plan": info["crt_plan"],
                    "meets_limits": info["meets_limits"],
                    "qa_verdict": result.verdict.value,
                    "qa": {
                        f"{r.structure} {r.metric}": None if r.value is None else round(r.value, 2)
                        for r in result.rows
                    },
                    "candidates": info["candidate_lines"],
                    "load_average_1min_at_start": round(load, 2),
                    "cpus": os.cpu_count(),
                }
            )
        )


if __name__ == "__main__":
    main()
