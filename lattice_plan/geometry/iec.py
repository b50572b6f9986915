"""IEC 61217 machine frames and their relation to the DICOM patient frame (LPS).

Frames (all right-handed, mm, origin at the isocentre unless noted):

- ``lps``: DICOM patient coordinates (x patient left, y posterior, z superior).
- ``iec_patient``: X_p patient left, Y_p towards the head, Z_p anterior.
- ``iec_fixed``: X_f to the right of an observer facing the gantry, Y_f from the
  isocentre towards the gantry, Z_f up (towards the source at gantry 0).
- ``iec_gantry``: rotates with the gantry about Y_f; Z_g points to the source.
- ``bld`` (beam-limiting device, the beam's-eye view): rotates with the
  collimator about Z_g; X_b, Y_b span the isocentre plane (jaws X1/X2 move
  along X_b, Y1/Y2 along Y_b; MLC leaves travel along X_b), Z_b points to the
  source, which sits at (0, 0, SAD).

Angles (degrees at this interface, radians inside): the gantry turns clockwise
seen from the isocentre looking at the gantry, so at 90 degrees the source is
at +X_f (the patient's left for head-first supine); the collimator turns
counter-clockwise seen from the source; the patient support (couch) turns
counter-clockwise seen from above.

The patient position (DICOM PatientPosition of the CT) fixes how the patient
lies on the couch: head-first supine (HFS) has X_p = X_f, Y_p = Y_f, Z_p = Z_f,
so gantry 0 enters anteriorly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lattice_plan.errors import GeometryError

# Rotation taking LPS directions to IEC patient directions: X_p = x, Y_p = z, Z_p = -y.
R_IEC_PATIENT_FROM_LPS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# Patient (X_p, Y_p, Z_p) expressed in the couch-at-zero fixed frame, per DICOM patient position.
_R_FIXED_FROM_PATIENT = {
    "HFS": np.eye(3),
    "HFP": np.diag([-1.0, 1.0, -1.0]),
    "FFS": np.diag([-1.0, -1.0, 1.0]),
    "FFP": np.diag([1.0, -1.0, -1.0]),
    # Decubitus: head first; left side down (HFDL) has X_p = -Z_f and Z_p = +X_f.
    "HFDL": np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]),
    "HFDR": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    "FFDL": np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]]),
    "FFDR": np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]),
}


def _rot_y(angle_rad: float) -> NDArray[np.float64]:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(angle_rad: float) -> NDArray[np.float64]:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def R_fixed_from_lps(patient_position: str, couch_deg: float = 0.0) -> NDArray[np.float64]:
    """3x3 rotation from LPS directions to IEC fixed directions for a patient position and couch angle."""
    try:
        R_fp = _R_FIXED_FROM_PATIENT[patient_position]
    except KeyError:
        raise GeometryError(
            f"patient position {patient_position!r} is not supported; use one of {', '.join(_R_FIXED_FROM_PATIENT)}"
        ) from None
    return _rot_z(np.radians(couch_deg)) @ R_fp @ R_IEC_PATIENT_FROM_LPS


def R_bld_from_gantry(collimator_deg: float) -> NDArray[np.float64]:
    """3x3 rotation from the gantry frame to the beam-limiting-device frame (about the beam axis)."""
    return _rot_z(np.radians(collimator_deg)).T


def T_bld_from_lps(
    isocenter_lps_mm: ArrayLike,
    gantry_deg: float,
    collimator_deg: float = 0.0,
    couch_deg: float = 0.0,
    patient_position: str = "HFS",
) -> NDArray[np.float64]:
    """4x4 affine from LPS mm to the beam-limiting-device frame (origin at the isocentre)."""
    iso = np.asarray(isocenter_lps_mm, dtype=float)
    if iso.shape != (3,) or not np.all(np.isfinite(iso)):
        raise GeometryError(
            f"isocenter_lps_mm must be three finite numbers, got {isocenter_lps_mm!r}"
        )
    R_fixed = R_fixed_from_lps(patient_position, couch_deg)
    R_gantry_from_fixed = _rot_y(np.radians(gantry_deg)).T
    R = R_bld_from_gantry(collimator_deg) @ R_gantry_from_fixed @ R_fixed
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ iso
    return T


def source_position_lps_mm(
    isocenter_lps_mm: ArrayLike,
    gantry_deg: float,
    couch_deg: float = 0.0,
    patient_position: str = "HFS",
    sad_mm: float = 1000.0,
) -> NDArray[np.float64]:
    """LPS position of the radiation source."""
    T = T_bld_from_lps(isocenter_lps_mm, gantry_deg, 0.0, couch_deg, patient_position)
    T_inv = np.linalg.inv(T)
    return T_inv[:3, :3] @ np.array([0.0, 0.0, sad_mm]) + T_inv[:3, 3]
