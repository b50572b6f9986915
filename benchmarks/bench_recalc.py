"""Time and peak memory of `recalc` of an 8-arc VMAT-like plan (728 control points) on the phantom.

Eight half arcs of 91 control points each (2 degree spacing, alternately CW
and CC, collimator 10/350 degrees), leaves opening around the GTV with a
modulation that changes along each arc, written as an RTPLAN on the built-in
phantom's CT and recalculated from the files on a 2.5 mm dose grid (arcs
sampled every 2 degrees). Target (issue 16): <= 60 s, peak memory <= 2 GB.
Prints JSON; ``recalc_cpu_s`` (process CPU time) shows the cost when other
work shares the machine; run with ``NUMBA_NUM_THREADS=1`` it is the cost on
one core (an upper bound of the wall time on a quiet machine).
"""

import json
import resource
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from lattice_plan.dose.beam import Jaws
from lattice_plan.dose.control_points import ControlPoint, ControlPointBeam
from lattice_plan.dose.machine import default_machine
from lattice_plan.io.ct import write_ct_series
from lattice_plan.io.rtplan import write_rtplan
from lattice_plan.phantoms import build_phantom
from lattice_plan.workflow.recalc import recalculate

N_ARCS = 8
N_CP = 91  # per arc: 180 degrees at 2 degrees


def vmat_plan(isocenter, machine):
    """Eight 180-degree arcs whose leaves open +/-25..40 mm around the axis, varying along the arc."""
    edges = machine.mlc.leaf_edges_mm
    centres = 0.5 * (edges[:-1] + edges[1:])
    rows = np.abs(centres) < 40.0
    jaws = Jaws(-45.0, 45.0, -42.0, 42.0)
    beams = []
    for a in range(N_ARCS):
        cw = a % 2 == 0
        start = 181.0 + 22.5 * a
        gantry = (start + (1 if cw else -1) * np.linspace(0.0, 180.0, N_CP)) % 360.0
        points = []
        for i, g in enumerate(gantry):
            half = 25.0 + 15.0 * np.abs(np.sin(0.05 * centres + 0.07 * i + a))
            shift = 5.0 * np.sin(0.11 * i + 0.3 * a)
            x1 = np.where(rows, shift - half, 0.0)
            x2 = np.where(rows, shift + half, 0.0)
            direction = ("CW" if cw else "CC") if i < N_CP - 1 else "NONE"
            w = i / (N_CP - 1)
            points.append(ControlPoint(w, g, 10.0 if cw else 350.0, 0.0, jaws, x1, x2, direction))
        beams.append(
            ControlPointBeam(f"ARC{a + 1}", isocenter, 150.0, tuple(points), edges, "DYNAMIC")
        )
    return beams


def main() -> None:
    patient = build_phantom()
    machine = default_machine("varian-120")
    iso = tuple(float(v) for v in patient.structures["GTV"].centroid_lps_mm())
    beams = vmat_plan(iso, machine)
    out = {
        "phantom_grid": list(patient.grid.shape),
        "n_arcs": N_ARCS,
        "n_control_points": sum(b.n_control_points for b in beams),
        "dose_grid_mm": 2.5,
        "gantry_step_deg": 2.0,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        series = write_ct_series(patient, root / "CT")
        t0 = time.perf_counter()
        write_rtplan(
            beams,
            root / "RP.dcm",
            series.identity,
            n_fractions=1,
            dose_per_fraction_gy=8.0,
            machine=machine,
        )
        out["write_rtplan_s"] = round(time.perf_counter() - t0, 3)
        t0, c0 = time.perf_counter(), time.process_time()
        result = recalculate(root / "RP.dcm", root / "CT", dose_spacing_mm=2.5)
        out["recalc_s"] = round(time.perf_counter() - t0, 2)
        # CPU seconds of this process (all threads): the wall time on a shared machine is longer
        out["recalc_cpu_s"] = round(time.process_time() - c0, 2)
    out["numba_threads"] = numba.get_num_threads()
    out["n_engine_beams"] = result.n_engine_beams
    out["max_dose_gy"] = round(float(result.dose.array.max()), 3)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["target"] = {"recalc_s": 60, "peak_rss_mb": 2048}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
