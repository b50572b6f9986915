"""Plans, prescriptions, objectives, the fluence optimiser and the CRT/SFRT/SCART builders.

``lattice_plan.planning.plan_from_spec(spec, ct, structures)``, ``plan_patient``
and ``load_spec`` (plan specs, :mod:`lattice_plan.planning.spec`) are loaded on
first use, so importing a light module such as ``planning.plan`` does not load
the dose engine.
"""

from typing import Any

_SPEC_API = ("load_spec", "parse_spec", "plan_from_spec", "plan_patient")

__all__ = [
    *_SPEC_API,
    "aperture_opt",
    "apertures",
    "arc_sequencing",
    "arcs",
    "beams",
    "crt",
    "deliverable",
    "inverse",
    "layout",
    "leaf_opt",
    "objectives",
    "optimizer",
    "plan",
    "prescription",
    "scart",
    "sequencing",
    "sfrt",
    "spec",
    "spec_model",
    "spec_parse",
    "step_and_shoot",
    "vmat",
]


def __getattr__(name: str) -> Any:
    if name in _SPEC_API:
        from lattice_plan.planning import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'lattice_plan.planning' has no attribute {name!r}")
