"""Time, peak memory and quality of the fluence optimisation (issue 18). Prints JSON.

The reference problem: a CT of 160 x 160 x 120 voxels at 2.5 mm centred on the
origin, a 30 x 30 x 24 cm water box (HU 0) in air (HU -1000) that is also the
BODY; a PTV sphere of radius 30 mm at (0, -50, 0) mm LPS and an OAR sphere of
radius 15 mm at (55, -50, 0); nine equally spaced coplanar beams from gantry 0,
isocentre at the PTV centre, 5 mm beamlets; objectives PTV uniform 20 Gy
(weight 1000), OAR at most 10 Gy (300), BODY at most 20 Gy (10); 20 Gy x 1 to
the PTV mean; dose grids of 2.5 and 5 mm. Also the SFRT and SCART plans of the
built-in phantom at their default settings (as ``benchmarks/bench_planning.py``).

Each plan is built twice: with the default optimiser settings (stop when the
dose has settled, single-precision maps) and fully converged
(``OptimizerOptions.converged()``: float64, L-BFGS-B's tight tests, up to
600 iterations); ``deltas`` compares their quality (PTV D95 / D5 in %, OAR
maximum in Gy, the SFRT peak-to-valley dose ratios in %). Every run is a fresh
process (its own peak memory), after one untimed warm-up plan on a 5 mm grid
(imports, Numba cache). The 1-minute load average is reported with each run:
other work on the machine slows the wall-clock times, ``cpu_s`` (user + system,
all threads) much less. ``--fast-only`` skips the converged runs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

MAX_ITERATIONS_CONVERGED = 600


def reference_patient():
    """The reference problem's patient: water box, PTV and OAR spheres (see the module docstring)."""
    from lattice_plan.geometry.grid import Grid
    from lattice_plan.geometry.patient import Patient
    from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
    from lattice_plan.geometry.volume import Volume

    shape, h = (120, 160, 160), 2.5
    origin = tuple(-(n - 1) * h / 2 for n in shape[::-1])
    grid = Grid(shape, (h, h, h), origin)
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    box = (np.abs(x) <= 150) & (np.abs(y) <= 150) & (np.abs(z) <= 120)
    ct = Volume(np.where(box, 0.0, -1000.0).astype(np.float32), grid, "HU")
    ptv = x**2 + (y + 50) ** 2 + z**2 <= 30.0**2
    oar = (x - 55) ** 2 + (y + 50) ** 2 + z**2 <= 15.0**2
    structures = StructureSet(
        (
            Structure("BODY", box, grid, StructureKind.EXTERNAL),
            Structure("PTV", ptv, grid, StructureKind.PTV),
            Structure("OAR", oar, grid, StructureKind.OAR),
        ),
        grid,
    )
    return Patient(ct, structures)


def reference_plan(patient, spacing_mm: float, options, max_iterations: int = 200):
    """The reference problem's optimised plan on a dose grid of ``spacing_mm``."""
    from lattice_plan.planning.inverse import build_optimised_plan
    from lattice_plan.planning.objectives import MaxDose, UniformDose
    from lattice_plan.planning.plan import Arm
    from lattice_plan.planning.prescription import prescription_from

    return build_optimised_plan(
        patient,
        arm=Arm.SCART,
        name="reference",
        prescription=prescription_from(20.0, 1, "PTV", "Dmean"),
        fluence_target=patient.structures["PTV"],
        structures=patient.structures,
        objectives=(
            UniformDose("PTV", 20.0, weight=1000.0),
            MaxDose("OAR", 10.0, weight=300.0),
            MaxDose("BODY", 20.0, weight=10.0),
        ),
        n_beams=9,
        arc_deg=None,
        beamlet_mm=5.0,
        engine=None,
        dose_spacing_mm=spacing_mm,
        max_iterations=max_iterations,
        progress=None,
        optimizer=options,
    )


def _doses(plan, name: str) -> np.ndarray:
    from lattice_plan.geometry.structure import structure_on_grid

    return plan.dose.array[structure_on_grid(plan.structures[name], plan.dose.grid).mask]


def _quality(case: str, plan) -> dict[str, float]:
    if case == "reference":
        ptv = _doses(plan, "PTV")
        out = {
            "ptv_d95_gy": float(np.percentile(ptv, 5)),
            "ptv_d5_gy": float(np.percentile(ptv, 95)),
            "oar_max_gy": float(_doses(plan, "OAR").max()),
        }
    else:
        gtv = _doses(plan, "GTV")
        out = {
            "pvdr_d10_over_d90": float(np.percentile(gtv, 90) / np.percentile(gtv, 10)),
            "cauda_max_gy": float(_doses(plan, "CaudaEquina").max()),
        }
        if case == "sfrt":
            out["pvdr_vertex_over_valley"] = float(
                _doses(plan, "Vertices").mean() / _doses(plan, "Valley").mean()
            )
        else:
            out["stv_d95_gy"] = float(np.percentile(_doses(plan, "STV"), 5))
            out["gtv_edge_mean_gy"] = float(_doses(plan, "GTV_Edge").mean())
    return {k: round(v, 4) for k, v in out.items()}


def run_one(case: str, spacing_mm: float, converged: bool) -> dict[str, object]:
    """One plan in this process: warm-up, then the timed build."""
    from lattice_plan.planning.optimizer import OptimizerOptions

    options = OptimizerOptions.converged() if converged else OptimizerOptions()
    max_it = MAX_ITERATIONS_CONVERGED if converged else 200
    if case == "reference":
        patient = reference_patient()
        reference_plan(patient, 5.0, OptimizerOptions(), max_iterations=2)
        timed = lambda: reference_plan(patient, spacing_mm, options, max_iterations=max_it)  # noqa: E731
    else:
        from lattice_plan.phantoms import build_phantom
        from lattice_plan.planning.scart import build_scart_plan
        from lattice_plan.planning.sfrt import build_sfrt_plan

        builder = build_sfrt_plan if case == "sfrt" else build_scart_plan
        patient = build_phantom()
        builder(patient, dose_spacing_mm=5.0, max_iterations=2)
        timed = lambda: builder(patient, max_iterations=max_it, optimizer=options)  # noqa: E731
    load = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    plan = timed()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    opt = plan.info["optimizer"]
    t = plan.info["timings_s"]
    return {
        "case": case,
        "dose_spacing_mm": plan.info["dose_spacing_mm"],
        "settings": "converged" if converged else "default",
        "wall_s": round(wall, 2),
        "cpu_s": round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 2),
        "setup_s": round(t["total"] - t["optimisation"] - t["final_dose"], 3),
        "optimisation_s": t["optimisation"],
        "final_dose_s": t["final_dose"],
        "timings_s": t,
        "iterations": opt["iterations"],
        "evaluations": opt["evaluations"],
        "time_per_iteration_s": opt["time_per_iteration_s"],
        "stop_reason": opt["stop_reason"],
        "final_objective": round(opt["final_objective"], 7),
        "optimisation_voxels": plan.info["optimisation_voxels"],
        "n_active_beamlets": plan.info["n_active_beamlets"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "load_average_1min_at_start": round(load, 2),
        "quality": _quality(case, plan),
    }


def _deltas(fast: dict, ref: dict) -> dict[str, float]:
    """Default minus converged: % for doses at the PTV and ratios, Gy for maxima."""
    out = {}
    for k, v in fast["quality"].items():
        r = ref["quality"][k]
        if k.endswith("max_gy") or k == "gtv_edge_mean_gy":
            out[f"{k}_diff_gy"] = round(v - r, 3)
        else:
            out[f"{k}_diff_pct"] = round(100.0 * (v / r - 1.0), 3)
    return out


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], float(sys.argv[3]), sys.argv[4] == "converged")))
        return
    fast_only = "--fast-only" in sys.argv[1:]
    cases = [("reference", 2.5), ("reference", 5.0), ("sfrt", 2.5), ("scart", 2.5)]
    results = []
    for case, spacing in cases:
        runs = {}
        for settings in ("default",) if fast_only else ("default", "converged"):
            out = subprocess.run(
                [sys.executable, __file__, "--one", case, str(spacing), settings],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[settings] = json.loads(out.stdout.strip().splitlines()[-1])
        entry = {"case": case, "dose_spacing_mm": spacing, **runs}
        if "converged" in runs:
            entry["deltas"] = _deltas(runs["default"], runs["converged"])
        results.append(entry)
    print(
        json.dumps(
            {
                "benchmark": "optimizer",
                "cpu_count": os.cpu_count(),
                "aims": {
                    "reference_2.5mm_total_s": 8,
                    "reference_5mm_total_s": 4,
                    "peak_memory_gb": 1,
                    "sfrt_total_s": 5,
                    "scart_total_s": 8,
                    "quality": "PTV D95/D5 within 0.5 %, OAR max within 0.1 Gy, SFRT PVDR within 1 %",
                },
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
