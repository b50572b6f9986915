"""Time and peak memory of the optimised plans (SFRT and SCART) on the built-in phantom. Prints JSON.

Default settings: 9 coplanar beams, 2.5 mm dose grid, 5 mm beamlets, at most
200 iterations (the optimiser stops earlier when the objective stalls). Each
arm runs in a fresh process so that its peak resident memory is its own; the
Numba kernels come from the on-disk cache (one warm-up plan on a 5 mm grid
runs first in each process, untimed). The 1-minute load average is reported
because other work on the machine slows the wall-clock timings; ``cpu_s`` (user +
system time of the process, all threads) is a bound that does not depend on it:
on an idle 2-core machine the wall time is roughly between cpu_s / 2 and cpu_s.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _metrics(plan) -> dict[str, float]:
    from lattice_plan.geometry.structure import structure_on_grid

    dose = plan.dose

    def voxels(name: str) -> np.ndarray:
        return dose.array[structure_on_grid(plan.structures[name], dose.grid).mask]

    gtv = voxels("GTV")
    out = {
        "gtv_d10_over_d90": float(np.percentile(gtv, 90) / np.percentile(gtv, 10)),
        "cauda_max_gy": float(voxels("CaudaEquina").max()),
        "spinal_canal_max_gy": float(voxels("SpinalCanal").max()),
    }
    if "Vertices" in plan.structures:
        out["mean_vertex_gy"] = float(voxels("Vertices").mean())
        out["mean_vertex_over_mean_valley"] = float(
            voxels("Vertices").mean() / voxels("Valley").mean()
        )
    if "STV" in plan.structures:
        out["stv_d95_gy"] = float(np.percentile(voxels("STV"), 5))
        out["gtv_edge_mean_gy"] = float(voxels("GTV_Edge").mean())
    return {k: round(v, 3) for k, v in out.items()}


def run_arm(arm: str) -> dict[str, object]:
    from lattice_plan.phantoms import build_phantom
    from lattice_plan.planning.scart import build_scart_plan
    from lattice_plan.planning.sfrt import build_sfrt_plan

    build = build_sfrt_plan if arm == "sfrt" else build_scart_plan
    patient = build_phantom()
    build(patient, dose_spacing_mm=5.0, max_iterations=2)  # warm-up: imports, Numba cache
    load = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    plan = build(patient)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    opt = plan.info["optimizer"]
    return {
        "arm": arm.upper(),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "timings_s": plan.info["timings_s"],
        "iterations": opt["iterations"],
        "evaluations": opt["evaluations"],
        "time_per_iteration_s": opt["time_per_iteration_s"],
        "stop_reason": opt["stop_reason"],
        "final_objective": round(opt["final_objective"], 6),
        "optimisation_voxels": plan.info["optimisation_voxels"],
        "n_active_beamlets": plan.info["n_active_beamlets"],
        "total_mu": round(plan.total_mu, 1),
        "modulation": round(plan.info["modulation"], 3),
        "sliding_window_mu": round(plan.info["sliding_window_mu"], 1),
        "sliding_window_modulation": round(plan.info["sliding_window_modulation"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "load_average_1min_at_start": round(load, 2),
        "metrics": _metrics(plan),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--arm":
        print(json.dumps(run_arm(sys.argv[2])))
        return
    results = []
    for arm in ("sfrt", "scart"):
        out = subprocess.run(
            [sys.executable, __file__, "--arm", arm], capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {
                "benchmark": "optimised_plans",
                "settings": "phantom, 9 coplanar beams, 2.5 mm dose grid, 5 mm beamlets, max 200 iterations",
                "cpu_count": os.cpu_count(),
                "plans": results,
            }
        )
    )


if __name__ == "__main__":
    main()
