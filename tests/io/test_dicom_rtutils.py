"""rt-utils 1.2.7: our files load in it, and each of its known faults is worked around."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from rt_utils import RTStructBuilder, image_helper

from lattice_plan.errors import DicomError
from lattice_plan.geometry import Patient, Structure, StructureSet, Volume
from lattice_plan.io.ct import read_ct, write_ct_series
from lattice_plan.io.dicom_common import DicomWarning
from lattice_plan.io.rtdose import write_rtdose
from lattice_plan.io.rtstruct import read_rtstruct, write_rtstruct
from lattice_plan.io.rtutils_compat import load_rt_utils, rt_utils_mask, save_rt_utils
from tests.conftest import reference_path


@pytest.fixture(scope="module")
def square_case(phantom, tmp_path_factory):
    """The phantom cropped to 105 x 105 columns around the GTV (rt-utils needs square images),
    written as a CT series with an RTSTRUCT of the GTV and three 15 mm vertices."""
    grid = phantom.grid.crop((0, 0, 40), (phantom.grid.shape[0], phantom.grid.shape[1], 145))
    cols = slice(40, 145)
    structures = StructureSet(
        tuple(
            Structure(s.name, s.mask[:, :, cols], grid, s.kind, s.color)
            for s in phantom.structures
            if s.name == "GTV"
        ),
        grid,
    )
    patient = Patient(
        Volume(phantom.ct.array[:, :, cols], grid, "HU"), structures, "SQ-1", "Square^Phantom"
    )
    root = tmp_path_factory.mktemp("square")
    ct = write_ct_series(patient, root / "CT")
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    c = structures["GTV"].centroid_lps_mm()
    vertices = []
    for n, offset in enumerate([(-12, -10, -12), (12, -10, -12), (0, 10, 12)]):
        p = c + np.asarray(offset, dtype=float)
        ball = (x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2 <= 7.5**2
        vertices.append(Structure(f"Vertex_{n + 1:02d}", ball, grid, "VERTEX"))
    rs = root / "RS.dcm"
    write_rtstruct([structures["GTV"], *vertices], ct, rs)
    return ct, rs, [structures["GTV"], *vertices]


def test_our_rtstruct_loads_in_rt_utils(square_case):
    ct, rs, structures = square_case
    plain = RTStructBuilder.create_from(str(ct.files[0].parent), str(rs))
    assert plain.get_roi_names() == [s.name for s in structures]
    rtu = load_rt_utils(ct, rs)
    for s in structures:
        mask = rt_utils_mask(rtu, s.name)
        # rt-utils rounds the contour to voxel indices and cv.fillPoly also fills every voxel the
        # outline touches, so its mask holds ours plus (part of) a one-voxel rim.
        assert np.all(mask[s.mask])
        rim = mask & ~s.mask
        grown = np.zeros_like(s.mask)
        grown[:, 1:, :] |= s.mask[:, :-1, :]
        grown[:, :-1, :] |= s.mask[:, 1:, :]
        grown[:, :, 1:] |= s.mask[:, :, :-1]
        grown[:, :, :-1] |= s.mask[:, :, 1:]
        grown[:, 1:, 1:] |= s.mask[:, :-1, :-1]
        grown[:, :-1, :-1] |= s.mask[:, 1:, 1:]
        grown[:, 1:, :-1] |= s.mask[:, :-1, 1:]
        grown[:, :-1, 1:] |= s.mask[:, 1:, :-1]
        assert not np.any(rim & ~grown)


def test_fault_warn_only_name_error_worked_around(square_case, tmp_path):
    ct, rs, _ = square_case
    partial = tmp_path / "CT"
    shutil.copytree(ct.files[0].parent, partial)
    (partial / ct.files[-1].name).unlink()
    with pytest.raises(NameError):  # rt-utils 1.2.7: `warnings` is not imported
        RTStructBuilder.create_from(str(partial), str(rs), warn_only=True)
    partial_ct = read_ct(partial)
    with pytest.raises(DicomError, match="not in the CT series"):
        load_rt_utils(partial_ct, rs)
    with pytest.warns(DicomWarning, match="1 image"):
        rtu = load_rt_utils(partial_ct, rs, warn_only=True)
    assert rtu.get_roi_names()[0] == "GTV"


def test_fault_roi_without_contours_worked_around():
    ct = read_ct(reference_path("dicom", "dvh-phantom", "ct-2mm"))
    rs = reference_path("dicom", "dvh-phantom", "structures", "Sphere_20_0.dcm")
    plain = RTStructBuilder.create_from(str(ct.files[0].parent), str(rs))
    with pytest.raises(Exception, match="not found"):  # POI_1 has no ROI Contour item
        plain.get_roi_mask_by_name("POI_1")
    rtu = load_rt_utils(ct, rs)
    with pytest.warns(DicomWarning, match="no contour data"):
        assert rt_utils_mask(rtu, "POI_1") is None
    sphere = rt_utils_mask(rtu, "Sphere_20_0")
    # Nelms et al. 2015: 7.238 cc; rt-utils' outline-inclusive fill overestimates it.
    volume_cc = sphere.sum() * ct.grid.voxel_volume_cc
    assert 7.238 < volume_cc < 7.238 * 1.25


def test_fault_pixel_data_taken_as_image_worked_around(square_case, tmp_path):
    ct, _, _ = square_case
    mixed = tmp_path / "mixed"
    shutil.copytree(ct.files[0].parent, mixed)
    dose = Volume(np.ones(ct.grid.shape), ct.grid, "Gy")
    write_rtdose(
        dose, mixed / "RD.dcm", ct.identity, referenced_rtplan_uid="1.2.826.0.1.3680043.8.498.3"
    )
    taken = image_helper.load_sorted_image_series(str(mixed))
    assert len(taken) == len(ct.files) + 1  # rt-utils counts the RTDOSE as a slice
    read_back = read_ct(mixed)
    assert read_back.slice_sop_instance_uids == ct.slice_sop_instance_uids
    rtu = load_rt_utils(read_back)
    assert len(rtu.series_data) == len(ct.files)


def test_fault_long_decimal_strings_worked_around(tmp_path, dciodvfy_errors):
    # The DVH phantom's origin -153.3 mm and 0.6 mm pixels are not exact in float32, so rt-utils'
    # contour coordinates print with more than 16 characters.
    ct = read_ct(reference_path("dicom", "dvh-phantom", "ct-2mm"))
    box = np.zeros(ct.grid.shape, dtype=bool)
    box[10:16, 200:231, 240:283] = True
    rtu = load_rt_utils(ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom deprecations raised inside rt-utils
        rtu.add_roi(np.moveaxis(box, 0, 2), name="Box")
    lengths = [
        len(str(v)) for c in rtu.ds.ROIContourSequence[0].ContourSequence for v in c.ContourData
    ]
    assert max(lengths) > 16
    raw = tmp_path / "raw.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rtu.ds.save_as(raw, enforce_file_format=True)
    raw_errors = dciodvfy_errors(raw)
    assert any("0x3006,0x0050" in e or "Contour Data" in e for e in raw_errors), raw_errors
    fixed = save_rt_utils(rtu, tmp_path / "fixed.dcm")
    assert dciodvfy_errors(fixed) == []
    back = read_rtstruct(fixed, ct)["Box"]
    # rt-utils traces the outer voxel centres, so the voxel-centre rule drops the boundary
    # voxels on two sides; the box read back lies inside the box drawn and keeps its core.
    assert np.all(box[back.mask])
    assert np.all(back.mask[10:16, 201:230, 241:282])


def test_rt_utils_masks_of_non_square_images_refused(phantom_ct):
    _, ct = phantom_ct
    rtu = load_rt_utils(ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nk, nj, ni = ct.grid.shape
        rtu.add_roi(np.ones((nj, ni, nk), dtype=bool), name="All")
    with pytest.raises(DicomError, match="non-square"):
        rt_utils_mask(rtu, "All")
