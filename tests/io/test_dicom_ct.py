"""CT series reader and writer: selection, sorting, geometry checks, round trip, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from lattice_plan.errors import DicomError, InputFileError
from lattice_plan.geometry import Grid, Patient, StructureSet, Volume
from lattice_plan.io.ct import identity_for, read_ct, read_ct_series, write_ct_series
from tests.conftest import reference_path


def _copy_series(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def test_phantom_round_trip_same_hu_and_grid(phantom, phantom_ct):
    folder, written = phantom_ct
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in written.files}
    ct = read_ct(folder)
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in written.files} == before
    # Exact: the phantom CT is integer HU stored as int16 with slope 1, intercept 0.
    assert ct.grid.same_as(phantom.grid, tol_mm=1e-6)
    assert ct.grid.patient_position == "HFS"
    np.testing.assert_array_equal(ct.volume.array, phantom.ct.array)
    assert ct.series_instance_uid == written.series_instance_uid
    assert ct.slice_sop_instance_uids == written.slice_sop_instance_uids
    assert ct.identity.patient_id == phantom.patient_id
    assert ct.identity.frame_of_reference_uid == written.identity.frame_of_reference_uid


def test_written_ct_passes_dciodvfy(phantom_ct, dciodvfy_errors):
    _, written = phantom_ct
    for path in (written.files[0], written.files[len(written.files) // 2]):
        assert dciodvfy_errors(path) == []


def test_reread_and_rewrite_keeps_study_and_frame(phantom_ct, tmp_path):
    folder, _ = phantom_ct
    patient = read_ct_series(folder)
    again = write_ct_series(patient, tmp_path / "again")
    first = read_ct(folder)
    assert again.identity.study_instance_uid == first.identity.study_instance_uid
    assert again.identity.frame_of_reference_uid == first.identity.frame_of_reference_uid
    assert again.series_instance_uid != first.series_instance_uid
    assert set(again.slice_sop_instance_uids).isdisjoint(first.slice_sop_instance_uids)
    back = read_ct(tmp_path / "again")
    np.testing.assert_array_equal(back.volume.array, first.volume.array)


def test_dvh_phantom_ct_reads():
    # Nelms et al. 2015 DVH phantom: 30 axial slices, 2 mm apart from z = -28 mm, 0.6 mm pixels.
    ct = read_ct(reference_path("dicom", "dvh-phantom", "ct-2mm"))
    assert ct.grid.shape == (30, 512, 512)
    np.testing.assert_allclose(ct.grid.spacing_mm, (2.0, 0.6, 0.6))
    np.testing.assert_allclose(ct.grid.origin_lps_mm, (-153.3, -153.3, -28.0))


def test_rescale_and_sorting(tmp_path):
    # Slices written in shuffled file order with slope 2, intercept -1024 must come back sorted in z.
    grid = Grid((4, 3, 5), (2.5, 1.0, 1.0), (0.0, 0.0, 10.0))
    hu = np.arange(60, dtype=np.int16).reshape(grid.shape) * 10 - 200
    patient = Patient(Volume(hu, grid, "HU"), StructureSet((), grid), "P", "N")
    written = write_ct_series(patient, tmp_path / "ct")
    for n, f in enumerate(reversed(written.files)):
        ds = pydicom.dcmread(f)
        stored = ((ds.pixel_array.astype(np.int32) + 1024) // 2).astype(np.uint16)
        ds.PixelRepresentation = 0
        ds.RescaleSlope = "2"
        ds.RescaleIntercept = "-1024"
        ds.PixelData = stored.tobytes()
        ds.save_as(tmp_path / "ct" / f"shuffled_{n}.dcm")
        f.unlink()
    back = read_ct(tmp_path / "ct")
    np.testing.assert_array_equal(back.volume.array, hu)  # every HU is even, so exact
    np.testing.assert_allclose(back.grid.origin_lps_mm, (0.0, 0.0, 10.0))


def test_several_thicknesses_in_one_series_uid(phantom_ct, tmp_path):
    # As in the full DVH phantom set: one SeriesInstanceUID holds stacks of several thicknesses.
    folder, written = phantom_ct
    mixed = _copy_series(folder, tmp_path / "mixed")
    for n, f in enumerate(written.files[:10]):
        ds = pydicom.dcmread(f)
        ds.SliceThickness = "5"
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [*list(ds.ImagePositionPatient)[:2], str(300.0 + 5 * n)]
        ds.save_as(mixed / f"thick5_{n}.dcm")
    with pytest.raises(DicomError, match="slice_thickness_mm"):
        read_ct(mixed)
    thick = read_ct(mixed, slice_thickness_mm=5)
    assert thick.grid.shape[0] == 10
    assert thick.grid.spacing_mm[0] == pytest.approx(5.0)
    thin = read_ct(mixed, slice_thickness_mm=2.5)
    assert thin.grid.shape == written.grid.shape


def test_two_series_in_one_folder_need_a_choice(phantom, phantom_ct, tmp_path):
    folder, written = phantom_ct
    both = _copy_series(folder, tmp_path / "both")
    other = write_ct_series(phantom, tmp_path / "other", file_prefix="B")
    for f in other.files:
        shutil.copy(f, both / f.name)
    with pytest.raises(DicomError, match="series_uid") as err:
        read_ct(both)
    assert written.series_instance_uid in str(err.value)
    assert other.series_instance_uid in str(err.value)
    picked = read_ct(both, series_uid=other.series_instance_uid)
    assert picked.slice_sop_instance_uids == other.slice_sop_instance_uids
    with pytest.raises(DicomError, match="no CT series"):
        read_ct(both, series_uid="1.2.3.4")


def test_interleaved_duplicates_in_one_series_refused(phantom_ct, tmp_path):
    folder, written = phantom_ct
    dup = _copy_series(folder, tmp_path / "dup")
    ds = pydicom.dcmread(written.files[5])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(dup / "interleaved.dcm")
    with pytest.raises(DicomError, match="same position"):
        read_ct(dup)


def test_missing_slices_detected(phantom_ct, tmp_path):
    folder, written = phantom_ct
    gap = _copy_series(folder, tmp_path / "gap")
    (gap / written.files[10].name).unlink()
    (gap / written.files[11].name).unlink()
    with pytest.raises(DicomError, match=r"2 slice\(s\) missing"):
        read_ct(gap)


@pytest.mark.parametrize("keep_bytes", [0, 100])
def test_empty_or_header_cut_slice_is_named_in_the_missing_slice_error(
    phantom_ct, tmp_path, keep_bytes
):
    """A zero-byte slice, or one cut inside its header, cannot be read as DICOM at all: the
    gap it leaves is reported with that file's name (issue 20)."""
    folder, written = phantom_ct
    bad = _copy_series(folder, tmp_path / "cut")
    f = bad / written.files[10].name
    f.write_bytes(f.read_bytes()[:keep_bytes])
    with pytest.raises(DicomError, match=r"1 slice\(s\) missing") as info:
        read_ct(bad)
    assert f.name in str(info.value) and "unreadable" in str(info.value)


def test_non_uniform_spacing_refused(phantom_ct, tmp_path):
    folder, written = phantom_ct
    uneven = _copy_series(folder, tmp_path / "uneven")
    f = uneven / written.files[20].name
    ds = pydicom.dcmread(f)
    ds.ImagePositionPatient = [
        *list(ds.ImagePositionPatient)[:2],
        str(float(ds.ImagePositionPatient[2]) + 0.7),
    ]
    ds.save_as(f)
    with pytest.raises(DicomError, match="not uniform"):
        read_ct(uneven)


def test_oblique_ct_refused(phantom_ct, tmp_path):
    folder, _ = phantom_ct
    oblique = _copy_series(folder, tmp_path / "oblique")
    a = np.radians(10.0)
    for f in oblique.iterdir():
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(a)), float(np.sin(a))]
        ds.save_as(f)
    with pytest.raises(DicomError, match="not axial"):
        read_ct(oblique)


def test_gantry_tilt_refused(phantom_ct, tmp_path):
    folder, _ = phantom_ct
    tilted = _copy_series(folder, tmp_path / "tilted")
    f = sorted(tilted.iterdir())[3]
    ds = pydicom.dcmread(f)
    ds.GantryDetectorTilt = "12"
    ds.save_as(f)
    with pytest.raises(DicomError, match="tilt"):
        read_ct(tilted)


def test_truncated_slice_is_a_clear_error(phantom_ct, tmp_path):
    folder, written = phantom_ct
    bad = _copy_series(folder, tmp_path / "truncated")
    f = bad / written.files[7].name
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 5000])
    with pytest.raises(DicomError, match="truncated"):
        read_ct(bad)


def test_folder_without_ct_and_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(DicomError, match="no CT image"):
        read_ct(tmp_path)
    with pytest.raises(InputFileError):
        read_ct(tmp_path / "absent")


def test_non_dicom_files_beside_the_ct_are_ignored(phantom_ct, tmp_path):
    folder, written = phantom_ct
    mixed = _copy_series(folder, tmp_path / "mixed")
    (mixed / "README.txt").write_text("scan notes")
    assert read_ct(mixed).grid.shape == written.grid.shape


def test_single_slice_breast_ct_reads_with_its_thickness():
    ct = read_ct(reference_path("dicom", "breast-boost-plan", "CT"))
    assert ct.grid.shape == (1, 512, 512)
    np.testing.assert_allclose(ct.grid.spacing_mm, (3.0, 1.074219, 1.074219))


def test_synthetic_patient_identity_is_stable(phantom, phantom_ct):
    _, written = phantom_ct
    # Derived from the patient's id, name and description: every writer agrees on it, also
    # for another Patient object with the same fields, and another patient gets other UIDs.
    from dataclasses import replace

    again = identity_for(replace(phantom))
    assert again == identity_for(phantom)
    other = identity_for(replace(phantom, patient_id=phantom.patient_id + "-2"))
    assert other.frame_of_reference_uid != again.frame_of_reference_uid
    assert other.study_instance_uid != again.study_instance_uid
    assert written.identity.frame_of_reference_uid == identity_for(phantom).frame_of_reference_uid
    assert written.identity.study_instance_uid == identity_for(phantom).study_instance_uid


@pytest.mark.parametrize("position", ["HFP", "FFS"])
def test_flipped_axes_round_trip(position, tmp_path):
    # Prone and feet-first scans store rows/columns along -x/-y; slices are stacked along the
    # image normal (row x column cosines), so such a grid comes back voxel for voxel.
    signs = {"HFP": (-1.0, -1.0, 1.0), "FFS": (-1.0, 1.0, -1.0)}[position]
    grid = Grid((5, 4, 6), (2.0, 1.5, 1.25), (10.0, -20.0, 30.0), np.diag(signs), position)
    hu = np.arange(120, dtype=np.int16).reshape(grid.shape)
    patient = Patient(Volume(hu, grid, "HU"), StructureSet((), grid), "P", "N")
    write_ct_series(patient, tmp_path / "ct")
    back = read_ct(tmp_path / "ct")
    assert back.grid.patient_position == position
    assert back.grid.same_as(grid, tol_mm=1e-9)
    np.testing.assert_array_equal(back.volume.array, hu)
