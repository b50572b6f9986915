"""Time to build the built-in phantom (default 2.5 mm grid). Prints JSON."""

import json

from _timing import best_of

from lattice_plan.phantoms import build_phantom


def main() -> None:
    build_phantom()  # warm imports and caches
    best_s, patient = best_of(3, build_phantom)
    print(
        json.dumps(
            {
                "benchmark": "phantom_build",
                "shape": patient.grid.shape,
                "best_s": round(best_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
