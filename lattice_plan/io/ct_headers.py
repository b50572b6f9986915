"""CT slice headers: finding them in a folder and checking that they form one axial series.

Used by :func:`lattice_plan.io.ct.read_ct`: slices are collected by header only,
then their orientation (axial, no tilt), their belonging to one series (one frame
of reference, Series Number and set of Instance Numbers, acquisitions that do
not interleave) and their rescale to HU are checked, each refusal naming the
file and the fix.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from lattice_plan.errors import DicomError
from lattice_plan.io.dicom_common import CT_IMAGE_STORAGE, decimal_value, modality_of, read_dataset

log = logging.getLogger(__name__)

AXIS_TOL = 1e-3  # direction cosines within this of a unit axis count as axis aligned


@dataclass(frozen=True)
class CTSlice:
    """One CT file with its header (pixels not read)."""

    path: Path
    ds: Dataset


def _dicom_files(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and not p.name.startswith("."))


def scan_ct_headers(
    folder: Path, recursive: bool
) -> tuple[list[CTSlice], dict[str, int], list[Path]]:
    """CT slice headers in ``folder``, a count of the other objects found, and the files that
    could not be read as DICOM (empty, truncated or not DICOM)."""
    cts: list[CTSlice] = []
    unreadable: list[Path] = []
    others: dict[str, int] = defaultdict(int)
    for path in _dicom_files(folder, recursive):
        try:
            ds = read_dataset(path, header_only=True)
        except DicomError as exc:
            log.debug("skipping %s: %s", path, exc)
            others["not DICOM or unreadable"] += 1
            unreadable.append(path)
            continue
        modality = modality_of(ds)
        if str(ds.SOPClassUID) == CT_IMAGE_STORAGE:
            cts.append(CTSlice(path, ds))
        elif modality == "CT":
            others["CT of another SOP class (e.g. enhanced multi-frame CT, not supported)"] += 1
        else:
            others[modality or "other"] += 1
    return cts, dict(others), unreadable


def orientation(ds: Dataset, path: Path) -> NDArray[np.float64]:
    try:
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    except (AttributeError, TypeError, ValueError):
        raise DicomError(
            f"CT slice {str(path)!r} lacks Image Orientation/Position (Patient); cannot place it"
        ) from None
    if iop.shape != (6,) or ipp.shape != (3,):
        raise DicomError(f"CT slice {str(path)!r} has malformed Image Orientation/Position")
    return iop


def check_axial(iop: NDArray[np.float64], where: str) -> NDArray[np.float64]:
    """The 3x3 direction matrix of an axial image; refuse oblique, sagittal, coronal."""
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    axial = (
        abs(abs(normal[2]) - 1.0) < AXIS_TOL
        and np.allclose(np.abs(row), np.round(np.abs(row)), atol=AXIS_TOL)
        and np.allclose(np.abs(col), np.round(np.abs(col)), atol=AXIS_TOL)
    )
    if not axial:
        raise DicomError(
            f"{where}: image orientation {np.round(iop, 4).tolist()} is not axial (oblique, "
            "sagittal or coronal); this tool plans on axial CTs only: reconstruct the CT "
            "axially (or resample it) and export again"
        )
    return np.stack([np.round(row), np.round(col), np.round(normal)], axis=1)


def rescale(ds: Dataset, path: Path) -> tuple[float, float]:
    """Rescale Slope and Intercept of a CT slice (Type 1 in the CT Image module, PS3.3
    C.8.2.1): both present and finite, the slope positive; a default would misread the HU."""
    fix = "export the CT again with its rescale tags (HU = pixel x slope + intercept)"
    slope, intercept = decimal_value(ds, "RescaleSlope"), decimal_value(ds, "RescaleIntercept")
    if slope is None or intercept is None:
        raise DicomError(
            f"CT slice {str(path)!r} has no Rescale Slope/Intercept, so its HU are unknown; {fix}"
        )
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope <= 0:
        raise DicomError(
            f"CT slice {str(path)!r}: Rescale Slope {slope:g} and Intercept {intercept:g} do not "
            f"give HU (the slope must be positive, both finite); {fix}"
        )
    return slope, intercept


def check_one_series(slices: list[CTSlice], where: str) -> None:
    """Refuse slices that share one SeriesInstanceUID but come from two series or acquisitions.

    Their positions would interleave into one finer stack that was never acquired.
    The signs: several frames of reference or Series Numbers, an Instance Number
    used twice, or acquisitions whose slice ranges overlap.
    """
    fix = "the folder mixes series under one SeriesInstanceUID: keep one series in the folder"
    for tag, what in (
        ("FrameOfReferenceUID", "frames of reference"),
        ("SeriesNumber", "Series Numbers"),
    ):
        values = sorted({str(s.ds.get(tag, "")) for s in slices})
        if len(values) > 1:
            raise DicomError(
                f"{where}: slices with {len(values)} {what} ({', '.join(values[:3])}); {fix}"
            )
    numbers: dict[str, str] = {}
    for s in slices:
        n = str(s.ds.get("InstanceNumber", "") or "")
        if n and n in numbers:
            raise DicomError(
                f"{where}: Instance Number {n} in {numbers[n]} and {s.path.name}; {fix}"
            )
        numbers[n] = s.path.name
    ranges: dict[str, list[float]] = defaultdict(list)
    for s in slices:
        ranges[str(s.ds.get("AcquisitionNumber", "") or "")].append(
            float(s.ds.ImagePositionPatient[2])
        )
    spans = sorted((min(z), max(z), a) for a, z in ranges.items())
    for (lo_a, hi_a, a), (lo_b, _hi_b, b) in itertools.pairwise(spans):
        if lo_b <= hi_a:
            raise DicomError(
                f"{where}: acquisitions {a} and {b} overlap ({lo_a:.1f}..{hi_a:.1f} mm and from "
                f"{lo_b:.1f} mm); {fix}"
            )


def describe_groups(groups: dict[tuple, list[CTSlice]]) -> str:
    parts = []
    for key, slices in groups.items():
        ds = slices[0].ds
        parts.append(
            f"series {key[0]} ({len(slices)} slices, thickness {key[1]} mm, "
            f"'{ds.get('SeriesDescription', '')}')"
        )
    return "; ".join(parts)
