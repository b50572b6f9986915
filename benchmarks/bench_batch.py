"""Cohort throughput: tasks per minute with 1 and 2 local Dask workers. Prints JSON.

The cohort is 4 phantom variants x 2 arms (SCART, CRT) at a coarse setting
(5 mm phantom, 6 mm dose grid, 6 optimiser iterations) so that the figure is
about the runner and the machine, not one long plan. Each worker count runs
in a fresh output folder (no task is skipped).
"""

import json
import tempfile
import textwrap
import time
from pathlib import Path

from lattice_plan.batch import run_cohort
from lattice_plan.cohort import load_cohort

PHANTOM = "spacing_mm = [5.0, 5.0, 5.0], length_mm = 140.0"
COHORT = "\n".join(
    [
        'name = "bench"',
        'arms = ["SCART", "CRT"]',
        "[settings]",
        '"dose.spacing_mm" = 6.0',
        '"optimiser.max_iterations" = 6',
    ]
    + [
        f'[[cases]]\nid = "seed{seed}"\nphantom = {{ {PHANTOM}, seed = {seed} }}'
        for seed in range(4)
    ]
)


def main() -> None:
    out = {"benchmark": "cohort_throughput", "tasks": 8, "workers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cohort.toml"
        path.write_text(textwrap.dedent(COHORT))
        cohort = load_cohort(path)
        for workers in (1, 2):
            t0 = time.perf_counter()
            result = run_cohort(cohort, Path(tmp) / f"out{workers}", workers=workers)
            wall = time.perf_counter() - t0
            out["workers"][str(workers)] = {
                "wall_s": round(wall, 1),
                "tasks_per_minute": round(60.0 * result.counts["ok"] / wall, 2),
                "ok": result.counts["ok"],
                "failed": result.counts["failed"],
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
