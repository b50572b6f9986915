"""Protocol QA of a plan exported as DICOM-RT from any planning system.

The RTDOSE gives the dose grid; the RTSTRUCT's ROIs are rasterised on that
grid (the CT is not needed, which suits partial exports); the RTPLAN, when
given, gives the number of fractions for EQD2/BED metrics and the
fractionation check. An ROI whose contours reach outside the dose grid would
lose that part when rasterised, so its constraints are "not evaluated" with
the reason rather than judged on part of the organ.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from lattice_plan.geometry.grid import Grid
from lattice_plan.io.dicom_common import read_dataset
from lattice_plan.io.exported_plan import load_exported_plan
from lattice_plan.io.rtstruct import contour_points, read_rtstruct, roi_table, structure_name
from lattice_plan.qa.check import CheckResult, check
from lattice_plan.qa.protocol_model import Protocol, ProtocolArm

log = logging.getLogger(__name__)


def check_dicom(
    rtdose_path: str | os.PathLike[str],
    rtstruct_path: str | os.PathLike[str],
    protocol: Protocol,
    arm: str | ProtocolArm,
    *,
    rtplan_path: str | os.PathLike[str] | None = None,
    fractions: int | None = None,
    subdivisions: int | None = None,
    allow_partial: bool = False,
    end_cap: str = "half-slice",
) -> CheckResult:
    """Check an exported plan (RTDOSE + RTSTRUCT, optionally RTPLAN) against an arm.

    The dose of the course and the number of fractions (``fractions``, else the
    RTPLAN's, else the arm's) follow :func:`~lattice_plan.io.exported_plan.load_exported_plan`
    (a BEAM or other partial dose is refused: a protocol judges the whole course). ROIs whose contours reach
    outside the dose grid are "not evaluated", unless ``allow_partial``: then they
    are judged on their part inside it, with a note. ``end_cap`` is the contour
    end-cap convention of :func:`~lattice_plan.io.rtstruct.read_rtstruct`
    (``"none"`` for systems whose stacks stop at their end planes).
    """
    # A wrong arm fails before reading.
    arm = arm if isinstance(arm, ProtocolArm) else protocol.arm(arm)
    exported = load_exported_plan(rtdose_path, rtplan_path, fractions=fractions)
    dose = exported.dose
    structures = read_rtstruct(
        rtstruct_path,
        dose.grid,
        frame_of_reference_uid=exported.frame_of_reference_uid,
        end_cap=end_cap,
    )
    return check(
        dose,
        structures,
        protocol,
        arm,
        fractions=exported.fractions,
        plan_name=exported.plan_name,
        subdivisions=subdivisions,
        unusable=rois_outside_grid(rtstruct_path, dose.grid),
        allow_partial=allow_partial,
    )


def rois_outside_grid(rtstruct_path: str | os.PathLike[str], grid: Grid) -> dict[str, str]:
    """ROI name -> how much of it lies outside ``grid``, for ROIs with contour points beyond
    its voxels (more than half a voxel past the outermost voxel centres)."""
    ds = read_dataset(rtstruct_path, what="RTSTRUCT")
    out = {}
    used: set[str] = set()
    # The same table, names and contour parsing as read_rtstruct, so the keys are the
    # names of the structures it returns.
    for info, contours in roi_table(ds):
        if info.skip_reason:
            continue
        name = structure_name(info, used)
        pts = np.concatenate([contour_points(c, name) for c in contours])
        outside = int(np.count_nonzero(~grid.contains_lps(pts)))
        if outside:
            out[name] = (
                f"{outside} of its {len(pts)} contour points lie outside the dose grid; "
                "export a dose grid that covers it"
            )
            log.warning("RTSTRUCT %s: ROI %r %s", str(rtstruct_path), name, out[name])
    return out
