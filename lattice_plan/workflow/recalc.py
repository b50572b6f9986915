"""Independent dose of any photon RTPLAN on its CT: the secondary check of a plan.

:func:`recalc_rtplan` reads the plan's beams as control points
(:func:`lattice_plan.io.rtplan.read_rtplan_delivery`), turns each into engine
beams with the exact leaf-trajectory fluence (arcs sampled every
``gantry_step_deg``; :func:`lattice_plan.dose.delivery.beams_for_dose`) and
computes the dose of all fractions with the commissioned beam model, on the CT
or on a given grid. The plan must be on the CT's frame of reference and
patient position, and its beams of the beam model's energy.

Without a body outline the body is the CT above -400 HU (its largest
connected part, holes filled): the dose is zero in the air around the patient,
as a planning system's is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lattice_plan.analysis.comparison import standard_metrics
from lattice_plan.analysis.dvh import DVH, evaluate_metric
from lattice_plan.analysis.radiobiology import default_alpha_beta_gy
from lattice_plan.dose.beam_groups import summed_dose
from lattice_plan.dose.delivery import DEFAULT_GANTRY_STEP_DEG, beams_for_dose
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.machine import Machine, read_machine
from lattice_plan.dose.model import BeamModel
from lattice_plan.errors import DicomError, DoseError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.io.ct import CTSeries, read_ct
from lattice_plan.io.rtdose import load_rtdose, write_rtdose
from lattice_plan.io.rtplan import DeliveryPlan, read_rtplan_delivery
from lattice_plan.io.rtplan_beams import energy_of

log = logging.getLogger(__name__)

BODY_THRESHOLD_HU = -400.0
"""CT voxels above this are body when no outline is given (air -1000, lung about -800..-500)."""

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True, eq=False)
class Recalculation:
    """A recalculated plan: its dose (all fractions, Gy) and what it was computed from."""

    dose: Volume
    delivery: DeliveryPlan
    ct: CTSeries
    n_engine_beams: int


def body_from_ct(ct: Volume, threshold_hu: float = BODY_THRESHOLD_HU) -> Structure:
    """The body outline of a CT: its largest connected part above ``threshold_hu``, holes filled."""
    labels, n = ndimage.label(np.asarray(ct.array) > threshold_hu)
    if n == 0:
        raise DoseError(
            f"no CT voxel is above {threshold_hu:g} HU: the CT holds no patient; check the CT"
        )
    sizes = np.bincount(labels.ravel())[1:]
    body = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return Structure(f"BODY (CT > {threshold_hu:g} HU)", body, ct.grid, StructureKind.EXTERNAL)


def _check_plan_fits(delivery: DeliveryPlan, ct: CTSeries, model: BeamModel) -> None:
    plan = delivery.plan
    where = f"RTPLAN {plan.label or plan.sop_instance_uid!r}"
    if plan.frame_of_reference_uid and plan.frame_of_reference_uid != ct.frame_of_reference_uid:
        raise DicomError(
            f"{where} is in frame of reference {plan.frame_of_reference_uid}, the CT in "
            f"{ct.frame_of_reference_uid}; give the CT the plan was made on"
        )
    if plan.patient_position != ct.grid.patient_position:
        raise DicomError(
            f"{where} treats the patient {plan.patient_position}, but the CT was scanned "
            f"{ct.grid.patient_position}; give the CT the plan was made on"
        )
    want = energy_of(model.energy, "beam model")
    for beam in delivery.beams:
        if energy_of(beam.energy, beam.name) != want:
            raise DoseError(
                f"{where}, beam {beam.number} {beam.name!r}: {beam.energy} photons, but the beam "
                f"model is {model.energy}; commission a {beam.energy} beam model to compute it"
            )


def recalculate(
    rtplan: str | os.PathLike[str] | DeliveryPlan,
    ct: str | os.PathLike[str] | CTSeries,
    machine: Machine | str | os.PathLike[str] | None = None,
    grid: Grid | None = None,
    progress: Progress | None = None,
    *,
    body: Structure | None = None,
    model: BeamModel | None = None,
    gantry_step_deg: float = DEFAULT_GANTRY_STEP_DEG,
    dose_spacing_mm: float | None = None,
) -> Recalculation:
    """The dose of every fraction of ``rtplan`` on ``ct`` (see :func:`recalc_rtplan`)."""
    series = ct if isinstance(ct, CTSeries) else read_ct(ct)
    if machine is not None and not isinstance(machine, Machine):
        machine = read_machine(machine)
    if isinstance(rtplan, DeliveryPlan):
        delivery = rtplan
    else:
        delivery = read_rtplan_delivery(rtplan, machine)
    model = model if model is not None else BeamModel.load_default()
    _check_plan_fits(delivery, series, model)
    out_grid = series.grid if grid is None else grid
    ct_pitch = float(min(series.grid.spacing_mm))
    if dose_spacing_mm is None:
        dose_spacing_mm = max(2.5 if grid is None else float(min(grid.spacing_mm)), ct_pitch)
    if body is None:
        body = body_from_ct(series.volume)
    engine = DoseEngine(series.volume, body, model, dose_spacing_mm=dose_spacing_mm)
    engine_beams = []
    for cp_beam, mach in zip(delivery.beams, delivery.machines, strict=True):
        engine_beams += beams_for_dose(cp_beam, mach, gantry_step_deg)
    if not engine_beams:
        raise DoseError(f"RTPLAN {delivery.plan.label!r}: no beam delivers any meterset")
    report = None if progress is None else (lambda done, n: progress("recalc", done, n))
    per_fraction = summed_dose(engine, engine_beams, report)
    if not out_grid.same_as(engine.dose_grid):
        per_fraction = per_fraction.resampled(out_grid, order=1, fill_value=0.0)
    dose = Volume(per_fraction.array * delivery.n_fractions, out_grid, "Gy")
    log.info(
        "recalculated %d beams (%d engine beams), %d fractions: max %.3f Gy",
        len(delivery.beams),
        len(engine_beams),
        delivery.n_fractions,
        float(dose.array.max()),
    )
    return Recalculation(dose, delivery, series, len(engine_beams))


def recalc_rtplan(
    rtplan: str | os.PathLike[str] | DeliveryPlan,
    ct: str | os.PathLike[str] | CTSeries,
    machine: Machine | str | os.PathLike[str] | None = None,
    grid: Grid | None = None,
    progress: Progress | None = None,
    **options: object,
) -> Volume:
    """The independent dose (Gy, all fractions planned) of a photon RTPLAN on its CT.

    ``rtplan``: the RTPLAN file (or one already read); ``ct``: the CT folder
    (or series); ``machine``: a machine (or its TOML file) for every beam,
    otherwise each beam's Treatment Machine Name picks a shipped one;
    ``grid``: the grid of the result (default the CT's), e.g. a reference
    RTDOSE's for an exact comparison; ``progress(task, done, total)`` is
    called as beams are computed. ``options``: ``body`` (outline on the CT
    grid), ``model``, ``gantry_step_deg`` (arc sampling, default 2 deg),
    ``dose_spacing_mm`` (engine grid).
    """
    return recalculate(rtplan, ct, machine, grid, progress, **options).dose  # type: ignore[arg-type]


def write_recalc_rtdose(result: Recalculation, path: str | os.PathLike[str]) -> str:
    """Write the recalculated dose as a PLAN RTDOSE of the RTPLAN, on the CT's identity."""
    plan = result.delivery.plan
    return write_rtdose(
        result.dose,
        Path(path),
        result.ct.identity,
        referenced_rtplan_uid=plan.sop_instance_uid,
        summation_type="PLAN",
        series_description="lattice_plan recalc",
        comment=f"recalc of {plan.label or 'RTPLAN'}: {result.delivery.n_fractions} fractions",
    )


def reference_dose(path: str | os.PathLike[str], result: Recalculation) -> Volume:
    """A reference RTDOSE of the same plan as the recalculated dose: all fractions, Gy.

    It must be on the CT's frame of reference; a FRACTION dose is multiplied
    by the fractions planned; BEAM doses are refused (one beam is not the plan).
    """
    rd = load_rtdose(path, patient_position=result.ct.grid.patient_position)
    if rd.frame_of_reference_uid != result.ct.frame_of_reference_uid:
        raise DicomError(
            f"RTDOSE {str(path)!r} is in frame of reference {rd.frame_of_reference_uid}, the CT in "
            f"{result.ct.frame_of_reference_uid}; compare with a dose of this patient's plan"
        )
    if rd.summation_type == "FRACTION":
        return Volume(rd.volume.array * result.delivery.n_fractions, rd.grid, "Gy")
    if rd.summation_type != "PLAN":
        raise DicomError(
            f"RTDOSE {str(path)!r} is a {rd.summation_type} dose; compare with the PLAN dose"
        )
    return rd.volume


def dvh_metrics(
    doses: dict[str, Volume], structures: StructureSet, n_fractions: int
) -> dict[str, dict[str, dict[str, float]]]:
    """structure -> dose name -> metric -> value: the standard metrics of each non-empty ROI.

    A structure reaching outside a dose grid is evaluated on the part inside it.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for st in structures:
        if st.is_empty:
            continue
        metrics = standard_metrics(st)
        per_dose = {}
        for name, dose in doses.items():
            dvh = DVH.from_dose(dose, st, allow_partial=True)
            per_dose[name] = {
                m: float(evaluate_metric(dvh, m, None, n_fractions, default_alpha_beta_gy(st)))
                for m in metrics
            }
        out[st.name] = per_dose
    return out


__all__ = [
    "BODY_THRESHOLD_HU",
    "Recalculation",
    "body_from_ct",
    "dvh_metrics",
    "recalc_rtplan",
    "recalculate",
    "reference_dose",
    "write_recalc_rtdose",
]
