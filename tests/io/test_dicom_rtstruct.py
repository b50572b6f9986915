"""RTSTRUCT reading (reference sets, holes, islands, other grids) and writing (round trip, dciodvfy)."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest

from lattice_plan.analysis.dvh import DVH
from lattice_plan.errors import DicomError
from lattice_plan.geometry import Grid, Patient, Structure, StructureKind, StructureSet, Volume
from lattice_plan.geometry.morphology import contract, ring, subtract, union
from lattice_plan.io.ct import read_ct, read_ct_series, write_ct_series
from lattice_plan.io.dicom_common import DicomIdentity, DicomWarning
from lattice_plan.io.rtdose import load_rtdose
from lattice_plan.io.rtstruct import (
    add_to_rtstruct,
    list_rois,
    mask_slice_contours,
    read_patient,
    read_rtstruct,
    write_patient,
    write_rtstruct,
)
from tests.conftest import reference_path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _sphere(grid: Grid, center_lps_mm, diameter_mm: float) -> np.ndarray:
    z, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    c = np.asarray(center_lps_mm)
    return (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (diameter_mm / 2) ** 2


@pytest.fixture(scope="module")
def lattice_structures(phantom):
    """GTV, four 15 mm vertices (one ROI each and merged), the STV core, valley and ring."""
    grid = phantom.grid
    gtv = phantom.structures["GTV"]
    c = gtv.centroid_lps_mm()
    offsets = [(-12, -10, -12), (12, -10, -12), (0, 10, 12), (0, -5, 14)]
    vertices = [
        Structure(f"Vertex_{n + 1:02d}", _sphere(grid, c + o, 15.0) & gtv.mask, grid, "VERTEX")
        for n, o in enumerate(offsets)
    ]
    merged = union(*vertices, name="Vertices", kind="VERTEX")
    core = contract(gtv, 12.0, name="STV", kind="CORE")
    valley = subtract(gtv, union(*vertices, name="v"), name="Valley", kind="VALLEY")
    rng = ring(gtv, 2.0, 12.0, name="Ring", kind="RING")
    return [gtv, *vertices, merged, core, valley, rng]


@pytest.fixture(scope="module")
def written_rtstruct(phantom_ct, lattice_structures, tmp_path_factory):
    _, ct = phantom_ct
    path = tmp_path_factory.mktemp("rtstruct") / "RS.lattice.dcm"
    uid = write_rtstruct(lattice_structures, ct, path)
    return path, uid


# ---------------------------------------------------------------------------------- reference sets
@pytest.mark.parametrize(
    ("name", "exact_cc"),
    # Nelms et al., Med Phys 42 (2015) 4435: sphere r = 12 mm -> 4/3 pi r^3 = 7.238 cc.
    [("Sphere_20_0", 7.238)],
)
def test_dvh_phantom_sphere_volume(name, exact_cc):
    ct = read_ct(reference_path("dicom", "dvh-phantom", "ct-2mm"))
    with pytest.warns(DicomWarning, match=r"POI_1 \(a point ROI \(MARKER\)\)"):
        ss = read_rtstruct(reference_path("dicom", "dvh-phantom", "structures", f"{name}.dcm"), ct)
    assert ss.names == [name]
    assert ss[name].volume_cc == pytest.approx(exact_cc, rel=0.03)


def test_dvh_phantom_cylinder_and_cone_read():
    # 13 contours, 2 mm apart: a 24 mm long cylinder/cone rasterised slice by slice covers 26 mm
    # (half a slice beyond each end cap), so the reference is pi r^2 * 26 mm for the cylinder
    # (r = 12 mm: 11.762 cc) and the sum over slices of pi r(z)^2 * 2 mm for the cone.
    ct = read_ct(reference_path("dicom", "dvh-phantom", "ct-2mm"))
    folder = reference_path("dicom", "dvh-phantom", "structures")
    with pytest.warns(DicomWarning):
        cyl = read_rtstruct(folder / "Cylinder_20_0.dcm", ct)["Cylinder_20_0"]
    assert cyl.volume_cc == pytest.approx(np.pi * 12.0**2 * 26.0 / 1000, rel=0.03)
    with pytest.warns(DicomWarning):
        cone = read_rtstruct(folder / "Cone_20_0.dcm", ct)["Cone20_0"]
    radii = 12.0 * np.arange(13)[::-1] / 12.0  # base r = 12 mm to apex, every 2 mm
    assert cone.volume_cc == pytest.approx(np.sum(np.pi * radii**2 * 2.0) / 1000, rel=0.05)


def test_breast_boost_on_the_incomplete_ct_says_slices_are_missing():
    folder = reference_path("dicom", "breast-boost-plan")
    ct = read_ct(folder / "CT")
    with pytest.raises(DicomError, match=r"references 98 CT slices but 97 of them are not") as err:
        read_rtstruct(folder / "rtss.dcm", ct)
    assert "read_rtdose" in str(err.value)


def test_breast_boost_structures_on_the_dose_grid():
    folder = reference_path("dicom", "breast-boost-plan")
    dose = load_rtdose(folder / "rtdose.dcm")
    with pytest.warns(DicomWarning, match=r"Areola \(no contours\)"):
        ss = read_rtstruct(
            folder / "rtss.dcm", dose.grid, frame_of_reference_uid=dose.frame_of_reference_uid
        )
    assert ss.names == [
        "BODY",
        "Borders",
        "Breast",
        "Heart",
        "Lt Lung",
        "Nodes",
        "Scar",
        "Tumor Bed",
        "Tumor Bed Block",
    ]
    assert ss["BODY"].kind is StructureKind.EXTERNAL
    assert ss["Heart"].color == (255, 128, 0)
    # Volumes the planning system itself reports in the RTDOSE's DVHSequence (cc).
    tps_cc = {}
    ds = pydicom.dcmread(folder / "rtdose.dcm", stop_before_pixels=True)
    names = {
        int(r.ROINumber): str(r.ROIName)
        for r in pydicom.dcmread(folder / "rtss.dcm").StructureSetROISequence
    }
    for dvh in ds.DVHSequence:
        number = int(dvh.DVHReferencedROISequence[0].ReferencedROINumber)
        tps_cc[names[number]] = float(dvh.DVHData[1])
    for name in ("Breast", "Heart", "Lt Lung", "Tumor Bed", "Tumor Bed Block"):
        assert ss[name].volume_cc == pytest.approx(tps_cc[name], rel=0.03), name


def test_breast_boost_body_matches_its_contour_areas():
    # Shoelace areas of all BODY contours times the 3 mm plane pitch: the analytic volume of the
    # contour stack, which voxel-centre rasterisation on the 2.5 mm dose grid must reproduce.
    folder = reference_path("dicom", "breast-boost-plan")
    dose = load_rtdose(folder / "rtdose.dcm")
    body = read_rtstruct(folder / "rtss.dcm", dose.grid, roi_names=["body"])["BODY"]
    ds = pydicom.dcmread(folder / "rtss.dcm")
    area = 0.0
    for c in ds.ROIContourSequence[0].ContourSequence:
        raw = c.get_item("ContourData").value  # raw bytes: pydicom's DS conversion is slow
        p = np.array(raw.decode().replace("\\", " ").split(), dtype=float).reshape(-1, 3)
        area += 0.5 * abs(
            np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))
        )
    assert body.volume_cc == pytest.approx(area * 3.0 / 1000, rel=0.005)


def test_frame_of_reference_mismatch_refused(phantom_ct, written_rtstruct, tmp_path):
    _, ct = phantom_ct
    path, _ = written_rtstruct
    other = DicomIdentity.new("OTHER", "Other^Patient")
    with pytest.raises(DicomError, match="frame of reference"):
        read_rtstruct(path, ct.grid, frame_of_reference_uid=other.frame_of_reference_uid)
    patient = Patient(ct.volume, StructureSet((), ct.grid), dicom_uids=other.as_uid_dict())
    with pytest.raises(DicomError, match="another scan"):
        read_rtstruct(path, patient)
    other_ct = write_ct_series(patient, tmp_path / "other_ct", other)
    out = tmp_path / "added.dcm"
    with pytest.raises(DicomError, match="another scan"):
        add_to_rtstruct(path, [], other_ct, out)
    assert not out.exists()


def test_unknown_roi_name_and_non_rtstruct_input(phantom_ct, written_rtstruct, tmp_path):
    _, ct = phantom_ct
    path, _ = written_rtstruct
    with pytest.raises(DicomError, match="no ROI named 'Spleen'"):
        read_rtstruct(path, ct, roi_names=["Spleen"])
    with pytest.raises(DicomError, match="not an RTSTRUCT"):
        read_rtstruct(ct.files[0], ct)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"hello, not DICOM")
    with pytest.raises(DicomError, match="not a DICOM file"):
        read_rtstruct(bad, ct)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(DicomError, match="truncated"):
        read_rtstruct(truncated, ct)


# ---------------------------------------------------------------------------------- contours
def test_holes_and_islands_round_trip_exactly(tmp_path):
    grid = Grid((3, 40, 50), (3.0, 1.0, 1.0))
    _, y, x = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    annulus = ((x - 15) ** 2 + (y - 20) ** 2 <= 11**2) & ((x - 15) ** 2 + (y - 20) ** 2 > 5**2)
    island = (np.abs(x - 40) <= 4) & (np.abs(y - 10) <= 6)
    inner_island = (x - 15) ** 2 + (y - 20) ** 2 <= 2**2  # inside the annulus' hole
    mask = annulus | island | inner_island
    mask[0] = False
    contours = mask_slice_contours(mask[1])
    assert len(contours) == 4  # annulus outer and inner edge, the island, the inner island
    hu = np.zeros(grid.shape, dtype=np.int16)
    patient = Patient(Volume(hu, grid, "HU"), StructureSet((), grid), "P", "N")
    ct = write_ct_series(patient, tmp_path / "ct")
    path = tmp_path / "rs.dcm"
    write_rtstruct([Structure("Donut", mask, grid, "GTV")], ct, path)
    np.testing.assert_array_equal(read_rtstruct(path, ct)["Donut"].mask, mask)
    # Planning systems write a plane's z with rounding noise: contours 0.002 mm apart in z are
    # still one plane, so the hole stays a hole.
    ds = pydicom.dcmread(path)
    item = ds.ROIContourSequence[0].ContourSequence[1]
    pts = np.asarray(item.ContourData, dtype=float).reshape(-1, 3)
    pts[:, 2] += 0.002
    item.ContourData = [f"{v:.4f}" for v in pts.ravel()]
    ds.save_as(tmp_path / "noisy.dcm")
    np.testing.assert_array_equal(read_rtstruct(tmp_path / "noisy.dcm", ct)["Donut"].mask, mask)


def test_round_trip_dice_and_kinds(phantom_ct, lattice_structures, written_rtstruct):
    _, ct = phantom_ct
    path, _ = written_rtstruct
    back = read_rtstruct(path, ct)
    assert back.names == [s.name for s in lattice_structures]
    for s in lattice_structures:
        b = back[s.name]
        assert b.kind == s.kind
        assert b.color == s.color
        # Issue 5 asks Dice >= 0.95 (GTV-sized) and >= 0.90 (15 mm vertices); the 0.5 iso-lines
        # pass between inside and outside voxel centres, so the same grid gives the same voxels.
        assert dice(b.mask, s.mask) >= (0.90 if s.kind is StructureKind.VERTEX else 0.95)
        np.testing.assert_array_equal(b.mask, s.mask)


def test_written_rtstruct_is_valid_and_contours_lie_on_ct_slices(
    phantom_ct, written_rtstruct, dciodvfy_errors
):
    _, ct = phantom_ct
    path, uid = written_rtstruct
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert ds.SOPInstanceUID == uid
    assert ds.StudyInstanceUID == ct.identity.study_instance_uid
    assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == ct.frame_of_reference_uid
    z_of_uid = {
        u: ct.grid.points_lps_mm(np.array([0.0, 0.0, k]))[2]
        for k, u in enumerate(ct.slice_sop_instance_uids)
    }
    types = {
        int(o.ReferencedROINumber): o.RTROIInterpretedType for o in ds.RTROIObservationsSequence
    }
    names = {int(r.ROINumber): r.ROIName for r in ds.StructureSetROISequence}
    assert types[next(n for n, v in names.items() if v == "Vertex_01")] == "PTV"
    assert types[next(n for n, v in names.items() if v == "GTV")] == "GTV"
    assert types[next(n for n, v in names.items() if v == "Ring")] == "CONTROL"
    raw = pydicom.dcmread(path)
    for rc in raw.ROIContourSequence:
        for c in rc.ContourSequence:
            elem = c["ContourData"]
            assert all(len(str(v)) <= 16 for v in elem.value)
            pts = np.asarray(elem.value, dtype=float).reshape(-1, 3)
            assert int(c.NumberOfContourPoints) == len(pts)
            ref = c.ContourImageSequence[0].ReferencedSOPInstanceUID
            np.testing.assert_allclose(pts[:, 2], z_of_uid[ref], atol=1e-4)


def test_rasterise_on_a_coarser_grid(phantom_ct, lattice_structures, written_rtstruct):
    # The GTV drawn on the 2.5 mm CT, read on a 5 mm grid of the same region: voxel-centre
    # sampling of the same surface, so the volume agrees within a few per cent.
    _, ct = phantom_ct
    path, _ = written_rtstruct
    coarse = ct.grid.with_spacing(5.0)
    gtv = read_rtstruct(path, coarse, roi_names=["GTV"])["GTV"]
    assert gtv.volume_cc == pytest.approx(lattice_structures[0].volume_cc, rel=0.03)


def test_add_to_rtstruct_keeps_every_roi_and_the_input(
    phantom_ct, written_rtstruct, tmp_path, dciodvfy_errors
):
    _, ct = phantom_ct
    path, uid = written_rtstruct
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    old_rois = list_rois(path)
    extra = Structure("Boost", _sphere(ct.grid, (52.0, 38.0, 0.0), 20.0), ct.grid, "PTV")
    out = tmp_path / "RS.added.dcm"
    new_uid = add_to_rtstruct(path, [extra], ct, out)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    assert new_uid != uid
    rois = list_rois(out)
    assert [r.name for r in rois] == [r.name for r in old_rois] + ["Boost"]
    assert rois[-1].number == max(r.number for r in old_rois) + 1
    assert dciodvfy_errors(out) == []
    back = read_rtstruct(out, ct)
    np.testing.assert_array_equal(back["Boost"].mask, extra.mask)
    with pytest.raises(DicomError, match="already has ROI"):
        add_to_rtstruct(path, [extra.renamed("gtv")], ct, tmp_path / "clash.dcm")
    assert not (tmp_path / "clash.dcm").exists()
    with pytest.raises(DicomError, match="new file"):
        add_to_rtstruct(path, [extra], ct, path)


def test_add_to_reference_rtstruct_keeps_its_point_roi(tmp_path, dciodvfy_errors):
    ct = read_ct(reference_path("dicom", "dvh-phantom", "ct-2mm"))
    src = reference_path("dicom", "dvh-phantom", "structures", "Sphere_20_0.dcm")
    before = src.read_bytes()
    box = np.zeros(ct.grid.shape, dtype=bool)
    box[10:14, 240:260, 240:260] = True
    out = tmp_path / "sphere_plus.dcm"
    add_to_rtstruct(src, [Structure("Box", box, ct.grid, "OAR")], ct, out)
    assert src.read_bytes() == before
    assert [r.name for r in list_rois(out)] == ["POI_1", "Sphere_20_0", "Box"]
    # The input itself lacks Operators' Name and the Frame of Reference module (dciodvfy errors);
    # the new object gets them.
    assert dciodvfy_errors(out) == []
    with pytest.warns(DicomWarning, match="POI_1"):
        back = read_rtstruct(out, ct)
    np.testing.assert_array_equal(back["Box"].mask, box)
    assert back["Sphere_20_0"].volume_cc == pytest.approx(7.238, rel=0.03)


def test_writing_refuses_bad_input_and_writes_nothing(phantom_ct, lattice_structures, tmp_path):
    _, ct = phantom_ct
    other_grid = ct.grid.with_spacing(5.0)
    wrong = Structure("Wrong", np.ones(other_grid.shape, dtype=bool), other_grid)
    out = tmp_path / "never.dcm"
    with pytest.raises(Exception, match="different grid"):
        write_rtstruct([wrong], ct, out)
    empty = Structure("Empty", np.zeros(ct.grid.shape, dtype=bool), ct.grid)
    with pytest.raises(DicomError, match="no non-empty structure"):
        write_rtstruct([empty], ct, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_read_patient_from_an_export(phantom, tmp_path):
    # The phantom export (CT + RTSTRUCT) reads back as the same Patient: HU, grid, masks, kinds.
    export = tmp_path / "export"
    written = write_patient(phantom, export)
    assert written.rtstruct_path == export / "RS.dcm"
    patient = read_patient(export)
    assert patient.patient_id == phantom.patient_id
    assert patient.dicom_uids["FrameOfReferenceUID"] == written.ct.frame_of_reference_uid
    np.testing.assert_array_equal(patient.ct.array, phantom.ct.array)
    assert patient.structures.names == phantom.structures.names
    for s in phantom.structures:
        assert patient.structures[s.name].kind == s.kind
        np.testing.assert_array_equal(patient.structures[s.name].mask, s.mask)
    write_rtstruct([phantom.structures["GTV"]], written.ct, export / "RS2.dcm")
    with pytest.raises(DicomError, match="2 structure sets"):
        read_patient(export)
    assert read_patient(export, export / "RS2.dcm").structures.names == ["GTV"]


def test_structures_of_a_reexported_ct_read_on_the_new_series(phantom, phantom_ct, tmp_path):
    # Same frame of reference, another series (our re-export): the contours, in patient
    # coordinates, are rasterised on the new series; only a partial copy of the *same* series is
    # refused (see the breast-boost test above).
    _, ct = phantom_ct
    gtv = phantom.structures["GTV"]
    path = tmp_path / "RS.dcm"
    write_rtstruct([gtv], ct, path)
    again = write_ct_series(read_ct_series(ct.files[0].parent), tmp_path / "again")
    assert again.series_instance_uid != ct.series_instance_uid
    np.testing.assert_array_equal(read_rtstruct(path, again)["GTV"].mask, gtv.mask)
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in ct.files[:40]:
        (partial / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DicomError, match="export is incomplete"):
        read_rtstruct(path, read_ct(partial))


@pytest.fixture(scope="module")
def box_rtstruct(tmp_path_factory):
    """A 10 x 8 mm box contoured on planes z = 9..24 mm of a 3 mm CT (six planes); the same
    box with the plane at z = 15 mm missing (a gap of two pitches); drawn on every second
    plane only (z = 6, 12, 18, 24 mm: a 6 mm contour pitch); and on one plane (z = 15 mm)."""
    tmp = tmp_path_factory.mktemp("box")
    grid = Grid((12, 20, 20), (3.0, 1.0, 1.0))
    mask = np.zeros(grid.shape, bool)
    mask[3:9, 5:13, 4:14] = True  # 8 x 10 voxels of 1 mm^2: contour area 80 mm^2 exactly
    gapped = mask.copy()
    gapped[5] = False
    every_other = np.zeros_like(mask)
    every_other[2:9:2] = mask[3]
    single = np.zeros_like(mask)
    single[5] = mask[5]
    hu = np.zeros(grid.shape, dtype=np.int16)
    ct = write_ct_series(Patient(Volume(hu, grid, "HU"), StructureSet((), grid), "P", "N"), tmp)
    path = tmp / "rs.dcm"
    rois = [
        Structure("Box", mask, grid),
        Structure("Gapped", gapped, grid),
        Structure("EveryOther", every_other, grid),
        Structure("Single", single, grid),
    ]
    write_rtstruct(rois, ct, path)
    return path, grid


@pytest.mark.parametrize(
    ("end_cap", "slabs"),
    [
        # Each plane stands for a slab of its ROI's contour pitch; half-slice end caps reach
        # half a pitch beyond the ends. Box: six 3 mm slabs. Gapped (z = 15 mm missing): the
        # gap stays empty and each side keeps its caps, 2 + 3 slabs. EveryOther: four planes
        # 6 mm apart, 24 mm = 8 slabs of 3 mm. Single: one 3 mm slab.
        ("half-slice", {"Box": 6.0, "Gapped": 5.0, "EveryOther": 8.0, "Single": 1.0}),
        # No end caps (trapezoid rule): stacks stop at their end planes. Box 15 mm; Gapped
        # 3 + 6 mm; EveryOther 18 mm; a lone contour keeps its 3 mm (it has no length).
        ("none", {"Box": 5.0, "Gapped": 3.0, "EveryOther": 6.0, "Single": 1.0}),
    ],
)
@pytest.mark.parametrize(
    ("slice_mm", "shift_mm"), [(3.0, 0.0), (3.0, 1.5), (3.0, 1.0), (1.0, 0.5), (6.0, 3.0)]
)
def test_end_caps_and_gaps_give_exact_slab_volumes(
    box_rtstruct, end_cap, slabs, slice_mm, shift_mm
):
    """Volumes of contour stacks (area x covered length, exact for a prism) on the CT grid, on
    grids whose slices are shifted against the contour planes, and on finer and coarser
    grids: a slice that the slabs cover partly counts only the covered part (a gap inside a
    coarse slice is not filled)."""
    path, grid = box_rtstruct
    nk = round(grid.shape[0] * grid.spacing_mm[0] / slice_mm)
    other = Grid((nk, *grid.shape[1:]), (slice_mm, *grid.spacing_mm[1:]), (0.0, 0.0, shift_mm))
    ss = read_rtstruct(path, other, end_cap=end_cap)
    slab_cc = 80.0 * 3.0 / 1000.0
    for name, n_slabs in slabs.items():
        assert ss[name].volume_cc == pytest.approx(n_slabs * slab_cc, rel=1e-6), name


def test_no_end_caps_stop_the_dvh_at_the_end_planes(box_rtstruct):
    """Dose equal to z (Gy per mm): without end caps the box's DVH runs exactly from the first
    to the last contour plane (9 to 24 Gy) and its mean is the midpoint, 16.5 Gy; with
    half-slice caps it reaches 1.5 mm further at each end."""
    path, grid = box_rtstruct
    z, _, _ = np.meshgrid(*grid.axis_coords_lps_mm(), indexing="ij")
    dose = Volume(z.astype(float), grid, "Gy")
    for end_cap, lo, hi in (("none", 9.0, 24.0), ("half-slice", 7.5, 25.5)):
        box = read_rtstruct(path, grid, roi_names=["Box"], end_cap=end_cap)["Box"]
        dvh = DVH.from_dose(dose, box)
        assert dvh.min_gy >= lo - 1e-9 and dvh.min_gy < lo + 0.1
        assert dvh.max_gy <= hi + 1e-9 and dvh.max_gy > hi - 0.1
        assert dvh.mean_gy == pytest.approx(16.5, abs=1e-9)


def test_unknown_end_cap_is_refused(box_rtstruct):
    path, grid = box_rtstruct
    with pytest.raises(DicomError, match=r"unknown end cap 'round'.*'half-slice', 'none'"):
        read_rtstruct(path, grid, end_cap="round")
