"""Time to build the built-in phantom (default 2.5 mm grid). Prints JSON."""

import json
import time

from lattice_plan.phantoms import build_phantom


def main() -> None:
    build_phantom()  # warm imports and caches
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        patient = build_phantom()
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "benchmark": "phantom_build",
                "shape": patient.grid.shape,
                "best_s": round(min(times), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
