"""Analysis speed: breast-boost DVHs + standard metrics, and a 3D gamma of 10^6 points. Prints JSON.

1. The breast-boost plan in ../shared/reference (RTDOSE 194 x 129 x 98, structures
   rasterised on the dose grid): DVHs and the standard metric set of every
   structure, timed after loading (target < 1 s), with the default half-slice end
   caps and with the planning system's convention (no end caps: partly filled end
   slices).
2. Gamma 3 %/3 mm global, 10 % threshold, of two 2.5 mm grids with 10^6
   reference voxels above threshold: a smooth dose and a copy scaled by 1 %
   and shifted by 1 mm (target < 10 s). Timed after a warm-up call (Numba
   compilation is cached on disk).
"""

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
from _timing import best_of

from lattice_plan.analysis.comparison import standard_metrics
from lattice_plan.analysis.dvh import DVH
from lattice_plan.analysis.gamma import gamma_index
from lattice_plan.geometry import Grid, Volume
from lattice_plan.io.dicom_common import DicomWarning
from lattice_plan.io.rtdose import read_rtdose
from lattice_plan.io.rtstruct import read_rtstruct

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def bench_dvh(end_cap: str) -> dict:
    base = REFERENCE / "dicom" / "breast-boost-plan"
    dose = read_rtdose(base / "rtdose.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        structures = read_rtstruct(base / "rtss.dcm", dose.grid, end_cap=end_cap)

    def all_metrics() -> int:
        n_metrics = 0
        for s in structures:
            dvh = DVH.from_dose(dose, s)
            for m in standard_metrics(s):
                dvh.metric(m, prescription_gy=14.0, n_fractions=7, alpha_beta_gy=3.0)
                n_metrics += 1
        return n_metrics

    best_s, n_metrics = best_of(3, all_metrics)
    return {
        "dose_grid": list(dose.grid.shape),
        "structures": len(structures),
        "metrics": n_metrics,
        "best_s": round(best_s, 3),
    }


def _dose(grid: Grid, shift_mm: float = 0.0, scale: float = 1.0) -> Volume:
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    r = np.sqrt((x - shift_mm) ** 2 + y**2 + z**2)
    ripple = 1.0 + 0.1 * np.cos(x / 12.0) * np.cos(y / 15.0)  # lattice-like peaks and valleys
    return Volume(scale * 10.0 * ripple / (1.0 + np.exp((r - 150.0) / 8.0)), grid, "Gy")


def bench_gamma() -> dict:
    grid = Grid.from_extent((-175, -175, -175), (175, 175, 175), 2.5)
    ref = _dose(grid)
    ev = _dose(grid, shift_mm=1.0, scale=1.01)
    small = Grid.from_extent((-20, -20, -20), (20, 20, 20), 2.5)
    gamma_index(_dose(small), _dose(small, 1.0, 1.01))  # compile / load the cached kernel
    t0 = time.perf_counter()
    res = gamma_index(ref, ev, 3.0, 3.0, threshold_percent=10.0)
    elapsed = time.perf_counter() - t0
    return {
        "grid": list(grid.shape),
        "points_above_threshold": res.n_evaluated,
        "pass_rate_percent": round(res.pass_rate_percent, 2),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    print(
        json.dumps(
            {
                "benchmark": "analysis",
                "cpus": os.cpu_count(),
                "dvh_breast_boost": bench_dvh("half-slice"),
                "dvh_breast_boost_no_end_caps": bench_dvh("none"),
                "gamma_3pct_3mm": bench_gamma(),
            }
        )
    )


if __name__ == "__main__":
    main()
