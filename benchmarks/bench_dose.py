"""Dose-engine speed and memory on the built-in phantom (2.5 mm CT). Prints one JSON object.

- cold_s: a fresh process with an empty Numba cache: import, engine, 9-beam dose (includes compilation).
- cached_s: the same in a later process that finds the on-disk cache.
- forward_9_beams_s: warm dose of 9 coplanar 8 x 8 cm beams on the 2.5 mm dose grid.
- gradient_s: warm forward + adjoint of the beamlet operator (5 mm beamlets) for those beams.
- peak_rss_mb: peak resident memory of the process that did the above.
- scaling: warm dose time against the number of dose voxels and of beams.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from _timing import best_of

CHILD = r"""
import time
t0 = time.perf_counter()
from lattice_plan.dose.beam import Beam, Jaws, coplanar_gantry_angles
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.phantoms import build_phantom
p = build_phantom()
eng = DoseEngine(p.ct, p.structures.external(), dose_spacing_mm=2.5)
iso = tuple(p.structures["GTV"].centroid_lps_mm())
beams = [Beam(f"b{n}", g, iso, Jaws.symmetric(80, 80), mu=100) for n, g in enumerate(coplanar_gantry_angles(9))]
eng.compute(beams)
print(time.perf_counter() - t0)
"""


def _child_seconds(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import resource

    import numpy as np

    from lattice_plan.dose.beam import Beam, Jaws, coplanar_gantry_angles
    from lattice_plan.dose.engine import DoseEngine
    from lattice_plan.phantoms import build_phantom

    with tempfile.TemporaryDirectory() as cache:
        cold = _child_seconds(cache)
        cached = _child_seconds(cache)

    patient = build_phantom()
    body = patient.structures.external()
    iso = tuple(patient.structures["GTV"].centroid_lps_mm())

    def beams(n: int) -> list[Beam]:
        return [
            Beam(f"b{k}", g, iso, Jaws.symmetric(80, 80), mu=100)
            for k, g in enumerate(coplanar_gantry_angles(n))
        ]

    engine = DoseEngine(patient.ct, body, dose_spacing_mm=2.5)
    nine = beams(9)
    t0 = time.perf_counter()
    engine.compute(nine)
    first_with_geometry = time.perf_counter() - t0
    forward, _ = best_of(3, lambda: engine.compute(nine))
    op = engine.operator(nine, beamlet_mm=5.0)
    x = op.x_open() * 100.0
    target = np.full(engine.dose_grid.shape, 10.0)
    op_forward, _ = best_of(3, lambda: op.forward(x))
    # gradient of 0.5 * |dose - target|^2 with respect to the beamlet weights
    gradient, _ = best_of(3, lambda: op.adjoint(op.forward(x) - target))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    by_voxels = []
    for spacing in (5.0, 3.5, 2.5):
        eng = DoseEngine(patient.ct, body, dose_spacing_mm=spacing)
        eng.compute(nine)
        by_voxels.append(
            {
                "spacing_mm": spacing,
                "voxels": eng.n_active,
                "s": round(best_of(3, lambda e=eng: e.compute(nine))[0], 3),
            }
        )
    by_beams = []
    for n in (1, 3, 9, 18):
        bs = beams(n)
        engine.compute(bs)
        by_beams.append({"beams": n, "s": round(best_of(3, lambda b=bs: engine.compute(b))[0], 3)})

    print(
        json.dumps(
            {
                "benchmark": "dose_engine",
                "dose_grid": list(engine.dose_grid.shape),
                "dose_voxels_in_body": engine.n_active,
                "cold_s": round(cold, 2),
                "cached_s": round(cached, 2),
                "first_compute_with_ray_tracing_s": round(first_with_geometry, 3),
                "forward_9_beams_s": round(forward, 3),
                "operator_forward_s": round(op_forward, 3),
                "gradient_s": round(gradient, 3),
                "n_beamlets": op.n_beamlets,
                "peak_rss_mb": round(peak_mb, 1),
                "scaling_voxels": by_voxels,
                "scaling_beams": by_beams,
            }
        )
    )


if __name__ == "__main__":
    main()
