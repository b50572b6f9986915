"""Time of lattice vertex placement and SCART core on the built-in phantom (2.5 mm grid). Prints JSON."""

import json

from _timing import best_of

from lattice_plan.geometry.lattice import LatticeParameters, place_vertices_in
from lattice_plan.geometry.scart import scart_core
from lattice_plan.phantoms import build_phantom

OARS = ("CaudaEquina", "SpinalCanal", "Kidney_L", "Kidney_R", "Bowel", "Liver", "Skin")


def main() -> None:
    patient = build_phantom()
    ss = patient.structures
    gtv = ss["GTV"]
    results = {}
    for pattern in ("hcp", "fcc", "simple_cubic", "alternating_cubic"):
        params = LatticeParameters(pattern=pattern)
        t, res = best_of(3, lambda p=params: place_vertices_in(ss, "GTV", OARS, p))
        results[pattern] = {
            "best_s": round(t, 3),
            "n_vertices": res.n_vertices,
            "offsets": res.search.n_evaluated,
        }
    rot = LatticeParameters(rotation_step_deg=10.0)
    t_rot, res_rot = best_of(1, lambda: place_vertices_in(ss, "GTV", OARS, rot))
    t_scart, _ = best_of(3, lambda: scart_core(gtv, "volume_fraction", volume_fraction=0.3))
    print(
        json.dumps(
            {
                "benchmark": "lattice_placement",
                "grid_shape": patient.grid.shape,
                "gtv_cc": round(gtv.volume_cc, 1),
                "patterns": results,
                "hcp_rotation_10deg": {
                    "best_s": round(t_rot, 3),
                    "n_vertices": res_rot.n_vertices,
                    "evaluated": res_rot.search.n_evaluated,
                },
                "scart_volume_fraction_best_s": round(t_scart, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
