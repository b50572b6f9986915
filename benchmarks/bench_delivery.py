"""Leaf sequencing plus deliverable dose of the 9-beam SFRT plan on the built-in phantom. Prints JSON.

The ideal plan is built once (2.5 mm CT and dose grid, 40 optimiser
iterations, delivery "ideal"); then :func:`make_deliverable` is timed: sliding
window (and step-and-shoot, 10 levels) sequencing of the 9 beams, the dose
from their control points on the whole dose grid and the renormalisation
(target <= 3 s on 2 cores). Timed after one warm-up call (Numba kernels are
cached on disk, the engine's ray-trace geometry is cached per beam as in the
planning run). Peak resident memory of the process is reported.
"""

import json
import resource

from _timing import timed_runs

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.phantoms import build_phantom
from lattice_plan.planning.deliverable import DeliverySpec, make_deliverable
from lattice_plan.planning.sfrt import build_sfrt_plan


def main() -> None:
    patient = build_phantom(spacing_mm=(2.5, 2.5, 2.5), length_mm=200.0)
    engine = DoseEngine(patient.ct, patient.structures.external(), dose_spacing_mm=2.5)
    plan = build_sfrt_plan(
        patient, engine=engine, max_iterations=40, delivery=DeliverySpec("ideal")
    )
    out = {"beams": len(plan.beams), "dose_grid": list(engine.dose_grid.shape)}
    for spec in (DeliverySpec("sliding_window"), DeliverySpec("step_and_shoot", levels=10)):
        make_deliverable(plan, engine, spec)  # warm-up
        times, d = timed_runs(3, lambda s=spec: make_deliverable(plan, engine, s))
        info = d.info["delivery"]
        out[spec.method] = {
            "time_s_best": round(min(times), 3),
            "time_s_all": [round(t, 3) for t in times],
            "sequencing_s": info["timings_s"]["sequencing"],
            "dose_s": info["timings_s"]["dose"],
            "total_mu": round(info["total_mu"], 1),
            "control_points": sum(b["control_points"] for b in info["beams"].values()),
            "delivery_time_s": round(info["delivery_time_s"], 1),
        }
    out["target_s"] = 3.0
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
