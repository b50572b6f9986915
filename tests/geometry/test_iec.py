"""IEC 61217 frames: where the source is for each patient position, gantry and couch angle."""

import numpy as np
import pytest

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.iec import T_bld_from_lps, source_position_lps_mm

ISO = np.array([10.0, -20.0, 30.0])


def _src_dir(position, gantry, couch=0.0):
    return (source_position_lps_mm(ISO, gantry, couch, position) - ISO) / 1000.0


@pytest.mark.parametrize(
    ("position", "gantry", "expected"),
    [
        # Gantry 0 on a head-first-supine patient enters anteriorly (source at -y, LPS).
        ("HFS", 0, [0, -1, 0]),
        ("HFS", 90, [1, 0, 0]),  # IEC: gantry 90 = source at the patient's left for HFS
        ("HFS", 180, [0, 1, 0]),
        ("HFS", 270, [-1, 0, 0]),
        ("HFP", 0, [0, 1, 0]),  # prone: the ceiling is on the patient's back
        ("HFP", 90, [-1, 0, 0]),
        ("FFS", 0, [0, -1, 0]),
        ("FFS", 90, [-1, 0, 0]),  # feet first: the patient's right faces +X_f
        ("FFP", 90, [1, 0, 0]),
        ("HFDL", 0, [-1, 0, 0]),  # lying on the left side: the ceiling faces the patient's right
    ],
)
def test_source_direction_per_patient_position(position, gantry, expected):
    d = _src_dir(position, gantry)
    np.testing.assert_allclose(d, expected, atol=1e-12)


def test_couch_rotation_moves_the_source_in_the_patient_axial_plane():
    """Couch 90 with gantry 90 (HFS): the beam comes along the patient's long axis."""
    d = _src_dir("HFS", 90, 90)
    np.testing.assert_allclose(np.abs(d), [0, 0, 1], atol=1e-12)


def test_bld_frame_is_a_rigid_transform_with_isocentre_at_origin():
    T = T_bld_from_lps(ISO, 37.0, 15.0, 350.0, "HFS")
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_allclose(T @ np.append(ISO, 1), [0, 0, 0, 1], atol=1e-12)


def test_collimator_rotates_about_the_beam_axis():
    """Collimator 90 turns X_b onto the former Y_b (counter-clockwise seen from the source)."""
    p = ISO + np.array([0.0, 0.0, 10.0])  # 10 mm superior: on +Y_b at gantry 0, collimator 0 (HFS)
    T0 = T_bld_from_lps(ISO, 0.0, 0.0)
    T90 = T_bld_from_lps(ISO, 0.0, 90.0)
    np.testing.assert_allclose((T0 @ np.append(p, 1))[:3], [0, 10, 0], atol=1e-12)
    np.testing.assert_allclose((T90 @ np.append(p, 1))[:3], [10, 0, 0], atol=1e-12)


def test_unknown_patient_position():
    with pytest.raises(GeometryError, match="patient position"):
        T_bld_from_lps(ISO, 0.0, patient_position="SITTING")
