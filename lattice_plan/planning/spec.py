"""Plan specs: a TOML file that describes one candidate plan, and the dispatcher that builds it.

A spec names the arm, the prescription, the structures, the geometry
parameters of the arm, the beams, the objectives and the dose grid, so that
candidate plans are scripted and versioned. Every field is validated; a
message names the file, the key and what was expected. Example (CRT)::

    [plan]
    name = "CRT 30 Gy/10"
    arm = "CRT"                      # CRT, SFRT or SCART

    [structures]
    gtv = "GTV"
    oars = ["CaudaEquina", "Kidney_L"]   # SFRT/SCART objectives; default: every OAR

    [prescription]
    dose_gy = 30.0                   # whole course (or dose_per_fraction_gy)
    fractions = 10
    target = "PTV"                   # optional; default per arm (PTV, Vertices, STV)
    method = "D95%"                  # optional; default per arm (D95%, Dmean, D95%)

    [crt]                            # CRT only (lattice_plan.planning.crt_spec)
    ptv_margin_mm = 10.0
    penumbra_margin_mm = 7.0
    schedule = "30Gy/10"             # or "20Gy/5", "8Gy/1" (instead of [prescription])
    arrangements = ["single", "opposed", "near-obliques", "three-field", "box"]
    max_segments_per_beam = 2        # field-in-field segments per field (0: open fields)

    [beams]
    gantry_deg = [0.0, 180.0]        # CRT: any angles (default: chosen from the target)
    weights = [1.0, 1.0]             # CRT: relative dose at the isocentre
    # count = 9, arc_deg = 200.0, beamlet_mm = 5.0   (SFRT and SCART)

    [dose]
    spacing_mm = 2.5

SFRT specs take a ``[lattice]`` table (the fields of
:class:`lattice_plan.geometry.lattice.LatticeParameters`), SCART specs a
``[scart]`` table (the fields of
:class:`lattice_plan.planning.scart.ScartParameters`), both an
``[optimiser]`` table (``max_iterations``) and ``[[objectives]]`` entries::

    [[objectives]]
    type = "max_dose"                # a kind of lattice_plan.planning.objectives
    structure = "CaudaEquina"
    dose_gy = 8.0
    weight = 5.0

Both also take a ``[delivery]`` table (the fields of
:class:`lattice_plan.planning.deliverable.DeliverySpec`): how the optimised
fluence maps are delivered, and so what the plan's dose is::

    [delivery]
    method = "sliding_window"        # or "step_and_shoot" (with levels) or "ideal" (no sequencing)
    levels = 10                      # step-and-shoot intensity levels
    machine = "varian-120"           # a shipped machine (varian-120, mlc-80) or a machine TOML file
    gantry_step_deg = 2.0
    min_segment_mu = 1.0             # step-and-shoot: fewer levels are needed below this MU per level
    min_segment_area_mm2 = 0.0       # step-and-shoot: smaller segments are dropped (MU reported)

``method = "vmat"`` plans arcs instead (:func:`lattice_plan.planning.vmat.build_vmat_plan`:
the arm's objectives re-optimised on arcs, sequenced and aperture-optimised), on the
default two full arcs or on ``[[arcs]]`` (the fields of
:class:`lattice_plan.planning.arcs.Arc`)::

    [[arcs]]
    name = "Arc1"
    start_deg = 181.0
    stop_deg = 179.0
    direction = "CW"                 # or "CC"
    collimator_deg = 30.0
    couch_deg = 0.0
    cp_spacing_deg = 3.0             # 0.5-10 deg; VMAT uses 2-4

Objective types: min_dose, max_dose, uniform_dose, mean_dose, dvh, geud,
peak, valley, edge, falloff; their keys are the constructor arguments of the
matching class (``dose_gy``, ``volume_pct``, ``sense``, ``a``, ``target``,
``high_gy``, ``low_gy``, ``distance_mm``, ``smoothing_gy``, ``weight``).

Modules: :mod:`lattice_plan.planning.spec_model` (the spec objects and per-arm
defaults), :mod:`lattice_plan.planning.spec_parse` (reading and validation, with
:class:`lattice_plan.tables.TomlTable`); this module hands a spec to the arm's
builder (:func:`plan_patient`, :func:`plan_from_spec`) and re-exports both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import SpecError
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.crt import build_crt_plan
from lattice_plan.planning.crt_limits import LimitSet
from lattice_plan.planning.plan import Arm, Plan
from lattice_plan.planning.scart import build_scart_plan
from lattice_plan.planning.sfrt import (
    build_sfrt_plan,
)
from lattice_plan.planning.spec_model import (
    CREATED_STRUCTURES,
    DEFAULT_PRESCRIPTION_TARGETS,
    OBJECTIVE_TYPES,
    BeamSpec,
    PlanSpec,
    PrescriptionSpec,
)
from lattice_plan.planning.spec_parse import as_spec, load_spec, parse_spec
from lattice_plan.planning.vmat import build_vmat_plan

__all__ = [
    "CREATED_STRUCTURES",
    "DEFAULT_PRESCRIPTION_TARGETS",
    "OBJECTIVE_TYPES",
    "BeamSpec",
    "PlanSpec",
    "PrescriptionSpec",
    "build_crt_plan",
    "build_scart_plan",
    "build_sfrt_plan",
    "load_spec",
    "parse_spec",
    "plan_from_spec",
    "plan_patient",
]

log = logging.getLogger(__name__)


def plan_patient(
    patient: Patient,
    spec: PlanSpec | str | os.PathLike[str] | Mapping[str, Any],
    *,
    engine: DoseEngine | None = None,
    progress: Callable[[int, float], None] | None = None,
    crt_limits: LimitSet | None = None,
) -> Plan:
    """Build the plan that ``spec`` describes for ``patient`` with the arm's builder.

    ``engine`` (a DoseEngine bound to the patient's CT) is reused when given;
    ``progress(iteration, objective)`` is passed to the optimised arms; ``crt_limits``
    (e.g. :func:`lattice_plan.qa.planning_limits` of the protocol arm) to the CRT builder.
    """
    s = as_spec(spec)
    s.check_structures(patient.structures)
    kwargs = s.builder_kwargs()
    if engine is not None:
        kwargs["engine"] = engine
    log.info("building %s plan %r from %s", s.arm.value, s.name, s.source)
    if s.arm is Arm.CRT:
        plan = build_crt_plan(patient, s.gtv, limits=crt_limits, **kwargs)
    elif s.arm is Arm.SFRT:
        plan = build_sfrt_plan(patient, s.gtv, progress=progress, **kwargs)
    else:
        plan = build_scart_plan(patient, s.gtv, progress=progress, **kwargs)
    if s.delivery is not None and s.delivery.method == "vmat":
        plan = build_vmat_plan(
            patient,
            plan,
            arcs=s.arcs,
            machine=s.delivery.load_machine(),
            engine=engine,
            gantry_step_deg=s.delivery.gantry_step_deg,
            name=s.name,
        )
    return replace(plan, info={**plan.info, "spec_source": s.source})


def plan_from_spec(
    spec: PlanSpec | str | os.PathLike[str] | Mapping[str, Any],
    ct: Volume,
    structures: StructureSet,
    *,
    engine: DoseEngine | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Plan:
    """Build the plan of ``spec`` on a CT (HU) and its structure set (same grid)."""
    if ct.unit != "HU":
        raise SpecError(f"plan_from_spec needs the CT in HU, got a volume in {ct.unit!r}")
    return plan_patient(Patient(ct, structures), spec, engine=engine, progress=progress)
