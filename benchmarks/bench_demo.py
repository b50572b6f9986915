"""Time of the whole demo (``lattice-plan demo``), cold and warm. Prints JSON.

Each run is a fresh process (``python -m lattice_plan.cli demo --out ...``):

- cold: with ``NUMBA_CACHE_DIR`` set to a new empty folder, so every Numba
  kernel is compiled (as on a fresh clone);
- warm: the same again with that cache filled by the cold run.

``--fast`` times the coarse demo the tests use instead. The 1-minute load
average before each run is reported, since other work on the machine slows
the wall-clock times; ``cpu_s`` (user + system time of the child, all
threads) does not depend on it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(out_dir: Path, cache_dir: Path, fast: bool) -> dict[str, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    cmd = [sys.executable, "-m", "lattice_plan.cli", "-q", "demo", "--out", str(out_dir)]
    if fast:
        cmd.append("--fast")
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_1min": round(load, 2)}


def main() -> None:
    fast = "--fast" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "numba-cache"
        cache.mkdir()
        cold = _run(root / "cold", cache, fast)
        warm = _run(root / "warm", cache, fast)
        n_files = sum(1 for p in (root / "warm").rglob("*") if p.is_file())
    print(
        json.dumps(
            {
                "benchmark": "demo",
                "settings": "fast (4 mm CT, 5 mm dose, 12 iterations)"
                if fast
                else "default (2.5 mm CT and dose grid, up to 100 iterations)",
                "cpu_count": os.cpu_count(),
                "cold": cold,
                "warm": warm,
                "output_files": n_files,
                "aim_s": {"cold": 180, "warm": 90},
            }
        )
    )


if __name__ == "__main__":
    main()
