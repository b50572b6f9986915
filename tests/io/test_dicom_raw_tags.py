"""What our writers put in the DICOM tags, read with pydicom directly (not through our readers)
and compared with values computed here from the inputs and the standard's definitions
(DICOM PS3.3: C.7.6.2 Image Plane, C.8.8.3 RT Dose, C.8.8.6 ROI Contour, C.8.8.10-14 RT
Prescription / Patient Setup / Fraction Scheme / Beams).

The MLC ``LeafJawPositions`` order (bank X1 then X2) is not tested here: the RTPLAN writer's
MLC part is being rewritten with the delivery work, which tests it.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.geometry import Grid, Structure, Volume
from lattice_plan.io.dicom_common import DicomIdentity
from lattice_plan.io.rtdose import write_rtdose
from lattice_plan.io.rtplan import write_rtplan
from lattice_plan.io.rtstruct import write_rtstruct

ISO_LPS_MM = (-12.5, 80.25, -301.0)


def _floats(value) -> list[float]:
    return [
        float(v) for v in (value if isinstance(value, pydicom.multival.MultiValue) else [value])
    ]


# ------------------------------------------------------------------------------------- RTPLAN
@pytest.fixture(scope="module")
def hfp_plan(tmp_path_factory):
    """Three jaw-only beams for a patient lying head first prone, 5 x 4 Gy."""
    identity = DicomIdentity.new("RAW-1", "Raw^Tags", patient_position="HFP")
    beams = [
        Beam("PA", 180.0, ISO_LPS_MM, Jaws(-40.0, 35.0, -50.0, 45.0), mu=212.7),
        Beam("RPO", 225.0, ISO_LPS_MM, Jaws(-30.0, 30.0, -30.0, 30.0), mu=88.05, energy="15X"),
        Beam("LPO", 135.0, ISO_LPS_MM, Jaws(-30.0, 30.0, -30.0, 30.0), mu=90.0, energy="10FFF"),
    ]
    path = tmp_path_factory.mktemp("raw-rtplan") / "RP.dcm"
    write_rtplan(beams, path, identity, n_fractions=5, dose_per_fraction_gy=4.0, label="raw")
    return beams, pydicom.dcmread(path)


def test_rtplan_fraction_scheme_and_prescription(hfp_plan):
    _, ds = hfp_plan
    group = ds.FractionGroupSequence[0]
    assert int(group.NumberOfFractionsPlanned) == 5
    assert int(group.NumberOfBeams) == 3
    # C.8.8.13: Beam Meterset in MU per fraction, by beam number (1, 2, 3 in beam order).
    meterset = {
        int(r.ReferencedBeamNumber): float(r.BeamMeterset) for r in group.ReferencedBeamSequence
    }
    assert meterset == {1: pytest.approx(212.7), 2: pytest.approx(88.05), 3: pytest.approx(90.0)}
    # C.8.8.10: Target Prescription Dose in Gy, the whole course: 5 fractions x 4 Gy.
    dref = ds.DoseReferenceSequence[0]
    assert dref.DoseReferenceType == "TARGET"
    assert float(dref.TargetPrescriptionDose) == pytest.approx(20.0, abs=1e-9)


def test_rtplan_patient_position_isocentre_energy_and_jaws(hfp_plan):
    beams, ds = hfp_plan
    setup = ds.PatientSetupSequence[0]
    assert setup.PatientPosition == "HFP"
    numbers = {int(b.BeamNumber): b for b in ds.BeamSequence}
    for number, beam in enumerate(beams, start=1):
        item = numbers[number]
        assert int(item.ReferencedPatientSetupNumber) == int(setup.PatientSetupNumber)
        assert item.BeamName == beam.name
        cp0 = item.ControlPointSequence[0]
        # Isocentre in the patient (LPS) coordinates of the frame of reference, mm.
        np.testing.assert_allclose(_floats(cp0.IsocenterPosition), ISO_LPS_MM, atol=1e-9)
        assert float(cp0.GantryAngle) == pytest.approx(beam.gantry_deg)
        jaws = {
            d.RTBeamLimitingDeviceType: _floats(d.LeafJawPositions)
            for d in cp0.BeamLimitingDevicePositionSequence
        }
        assert jaws["ASYMX"] == pytest.approx([beam.jaws.x1_mm, beam.jaws.x2_mm])
        assert jaws["ASYMY"] == pytest.approx([beam.jaws.y1_mm, beam.jaws.y2_mm])
    # Nominal Beam Energy in MeV (MV for photons): 6X -> 6, 15X -> 15, 10FFF -> 10 with the
    # flattening filter free named by the Primary Fluence Mode (C.8.8.14.1).
    energies = [float(numbers[n].ControlPointSequence[0].NominalBeamEnergy) for n in (1, 2, 3)]
    assert energies == [6.0, 15.0, 10.0]
    assert all(numbers[n].RadiationType == "PHOTON" for n in (1, 2, 3))
    assert "PrimaryFluenceModeSequence" not in numbers[1]
    assert numbers[3].PrimaryFluenceModeSequence[0].FluenceModeID == "FFF"


# ------------------------------------------------------------------------------------- RTDOSE
def _dose_at(x, y, z):
    """A dose (Gy) linear in LPS position, so every voxel's value says where it is."""
    return 20.0 + 0.11 * x - 0.07 * y + 0.05 * z


def test_rtdose_scaling_and_grid_against_the_volume_written(tmp_path):
    """A head-first-prone grid (rows and columns run along -x and -y): each stored pixel times
    DoseGridScaling is the dose at the position that ImagePositionPatient, the orientation,
    PixelSpacing (row spacing first) and GridFrameOffsetVector give it (C.7.6.2.1.1,
    C.8.8.3.2), within half a scaling step."""
    direction = np.diag([-1.0, -1.0, 1.0])  # columns: LPS unit vectors of i, j, k
    grid = Grid((5, 6, 7), (3.0, 2.0, 2.5), (40.0, 30.0, -100.0), direction, "HFP")
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    steps = np.stack([i * 2.5, j * 2.0, k * 3.0], axis=-1)  # mm along the i, j, k axes
    pos = np.asarray(grid.origin_lps_mm) + steps @ direction.T
    dose = Volume(_dose_at(*np.moveaxis(pos, -1, 0)), grid, "Gy")
    path = tmp_path / "RD.dcm"
    identity = DicomIdentity.new("RAW-2", "Raw^Dose", patient_position="HFP")
    write_rtdose(dose, path, identity, referenced_rtplan_uid="1.2.826.0.1.3680043.8.498.7")
    ds = pydicom.dcmread(path)
    assert (int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)) == (5, 6, 7)
    assert ds.DoseUnits == "GY" and ds.DoseSummationType == "PLAN"
    ipp = np.array(_floats(ds.ImagePositionPatient))
    np.testing.assert_allclose(ipp, (40.0, 30.0, -100.0), atol=1e-9)
    iop = np.array(_floats(ds.ImageOrientationPatient))
    np.testing.assert_allclose(iop, [-1, 0, 0, 0, -1, 0], atol=1e-12)
    row_mm, col_mm = _floats(ds.PixelSpacing)
    assert (row_mm, col_mm) == pytest.approx((2.0, 2.5))
    offsets = np.array(_floats(ds.GridFrameOffsetVector))
    # Offsets along the normal (row x column direction = (0, 0, 1) here) from the first frame.
    np.testing.assert_allclose(offsets, 3.0 * np.arange(5), atol=1e-9)
    normal = np.cross(iop[:3], iop[3:])
    scaling = float(ds.DoseGridScaling)
    assert 0 < scaling and float(ds.pixel_array.max()) * scaling == pytest.approx(
        dose.array.max(), abs=scaling
    )
    assert int(ds.pixel_array.max()) > 2**31  # the scaling uses most of the 32-bit range
    f, r, c = np.meshgrid(np.arange(5), np.arange(6), np.arange(7), indexing="ij")
    where = (
        ipp
        + c[..., None] * col_mm * iop[:3]
        + r[..., None] * row_mm * iop[3:]
        + offsets[f][..., None] * normal
    )
    expected = _dose_at(*np.moveaxis(where, -1, 0))
    stored = ds.pixel_array.astype(float) * scaling
    assert np.abs(stored - expected).max() <= 0.5 * scaling + 1e-12


# ----------------------------------------------------------------------------------- RTSTRUCT
def test_rtstruct_contours_of_a_sphere_lie_on_it(phantom_ct, tmp_path):
    """A 20 mm sphere drawn on the phantom's CT: every contour point is 20 mm from the centre
    within half a voxel (the contours trace the voxelised edge), every contour lies in one CT
    slice plane and references that slice's SOP Instance UID (C.8.8.6)."""
    folder, ct = phantom_ct
    grid = ct.grid
    centre = np.asarray(grid.origin_lps_mm) + np.asarray(grid.spacing_mm)[::-1] * (
        np.array(grid.shape)[::-1] // 2
    )
    radius = 20.0
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    steps = np.stack(
        [i * grid.spacing_mm[2], j * grid.spacing_mm[1], k * grid.spacing_mm[0]], axis=-1
    )
    pos = np.asarray(grid.origin_lps_mm) + steps @ np.asarray(grid.direction).T
    mask = np.linalg.norm(pos - centre, axis=-1) <= radius
    path = tmp_path / "RS.dcm"
    write_rtstruct([Structure("Ball", mask, grid, "PTV")], ct, path)
    ds = pydicom.dcmread(path)
    roi = next(r for r in ds.StructureSetROISequence if r.ROIName == "Ball")
    contours = next(
        c.ContourSequence
        for c in ds.ROIContourSequence
        if int(c.ReferencedROINumber) == int(roi.ROINumber)
    )
    slice_uid_at_z = {}
    for f in sorted(folder.glob("*.dcm")):
        s = pydicom.dcmread(f, stop_before_pixels=True)
        slice_uid_at_z[round(float(s.ImagePositionPatient[2]), 3)] = s.SOPInstanceUID
    half_voxel = 0.5 * float(np.hypot(grid.spacing_mm[1], grid.spacing_mm[2]))
    zs = set()
    for contour in contours:
        assert contour.ContourGeometricType == "CLOSED_PLANAR"
        pts = np.array(_floats(contour.ContourData)).reshape(-1, 3)
        assert int(contour.NumberOfContourPoints) == len(pts) >= 3
        z = round(float(pts[0, 2]), 3)
        assert np.all(np.abs(pts[:, 2] - pts[0, 2]) < 1e-6)  # planar
        assert contour.ContourImageSequence[0].ReferencedSOPInstanceUID == slice_uid_at_z[z]
        d = np.linalg.norm(pts - centre, axis=1)
        assert np.abs(d - radius).max() <= half_voxel, (z, d.min(), d.max())
        zs.add(z)
    # One contour plane per CT slice the sphere's voxels occupy: |z - zc| <= r on the grid.
    expected = {round(float(z), 3) for z in slice_uid_at_z if abs(z - centre[2]) <= radius}
    assert zs == expected
