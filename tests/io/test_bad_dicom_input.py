"""DICOM files that would be read wrongly without a word are refused (issue 20).

Each corrupted file is made by the test from a copy of the shared breast-boost
RTDOSE or from the built-in phantom's CT series; nothing corrupted is stored.
The reference for every refusal is the DICOM standard: Dose Grid Scaling is
Type 1 with pixel data (PS3.3 C.8.8.3), Rescale Slope/Intercept are Type 1 in
the CT Image module (PS3.3 C.8.2.1), and one SeriesInstanceUID names one series.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lattice_plan.errors import DicomError
from lattice_plan.io.ct import read_ct
from lattice_plan.io.rtdose import load_rtdose
from tests.conftest import reference_path


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------ RTDOSE
@pytest.fixture
def breast_dose():
    """The breast-boost RTDOSE as a pydicom dataset (pixels read), to corrupt a copy of."""
    return pydicom.dcmread(reference_path("dicom", "breast-boost-plan", "rtdose.dcm"))


def _corrupt_dose(bad: pydicom.Dataset, path: Path, **changes: object) -> Path:
    with warnings.catch_warnings():  # pydicom warns about the invalid values this test writes
        warnings.simplefilter("ignore")
        for key, value in changes.items():
            if value is None:
                delattr(bad, key)
            else:
                setattr(bad, key, value)
        bad.save_as(path)
    return path


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"DoseGridScaling": "0"}, "Dose Grid Scaling is 0,"),
        ({"DoseGridScaling": "-1.4e-5"}, "not a positive number"),
        ({"DoseGridScaling": "NaN"}, "not a positive number"),
        ({"DoseGridScaling": None}, "Dose Grid Scaling is missing"),
        ({"DoseType": "ERROR"}, "uncertainty estimate and not a dose"),
    ],
    ids=["scaling-0", "scaling-negative", "scaling-nan", "scaling-missing", "dose-type-error"],
)
def test_rtdose_with_a_broken_scale_or_an_error_grid_is_refused(
    breast_dose, tmp_path, changes, words
):
    path = _corrupt_dose(breast_dose, tmp_path / "rtdose.dcm", **changes)
    before = path.read_bytes()
    with pytest.raises(DicomError) as info:
        load_rtdose(path)
    message = str(info.value)
    assert words in message and "rtdose.dcm" in message
    assert "\n" not in message
    assert path.read_bytes() == before


def test_rtdose_with_negative_signed_pixels_is_refused(breast_dose, tmp_path):
    pixels = breast_dose.pixel_array.astype(np.int32)
    pixels[0, 0, 0] = -5
    path = _corrupt_dose(
        breast_dose, tmp_path / "rtdose.dcm", PixelRepresentation=1, PixelData=pixels.tobytes()
    )
    with pytest.raises(DicomError, match=r"negative dose pixel values \(down to -5\)"):
        load_rtdose(path)


def test_cli_evaluate_refuses_a_zero_scaled_dose_and_writes_nothing(breast_dose, tmp_path, capsys):
    from lattice_plan.cli import main

    path = _corrupt_dose(breast_dose, tmp_path / "rtdose.dcm", DoseGridScaling="0")
    rtss = reference_path("dicom", "breast-boost-plan", "rtss.dcm")
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--rtdose", str(path), "--rtstruct", str(rtss), "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Dose Grid Scaling is 0," in err
    assert not out.exists()


# ------------------------------------------------------------------------------ CT
@pytest.fixture(scope="module")
def small_ct(tmp_path_factory):
    """A coarse phantom CT series written once: (folder, its file digests)."""
    from lattice_plan.io.ct import write_ct_series
    from lattice_plan.phantoms import build_phantom

    folder = tmp_path_factory.mktemp("small_ct") / "CT"
    write_ct_series(build_phantom(spacing_mm=(4.0, 5.0, 5.0), length_mm=60.0), folder)
    return folder


def _rewrite(folder: Path, edit) -> None:
    for n, f in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(f)
        with warnings.catch_warnings():  # pydicom warns about the invalid values written
            warnings.simplefilter("ignore")
            edit(f.name, n, ds)
            ds.save_as(f)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda name, n, ds: (delattr(ds, "RescaleSlope"), delattr(ds, "RescaleIntercept")),
            "no Rescale",
        ),
        (lambda name, n, ds: setattr(ds, "RescaleSlope", "0"), "slope must be positive"),
        (lambda name, n, ds: setattr(ds, "RescaleSlope", "-1"), "slope must be positive"),
        (lambda name, n, ds: setattr(ds, "RescaleIntercept", "NaN"), "both finite"),
    ],
    ids=["rescale-absent", "slope-0", "slope-negative", "intercept-nan"],
)
def test_ct_without_a_valid_rescale_is_refused(small_ct, tmp_path, edit, words):
    folder = tmp_path / "CT"
    shutil.copytree(small_ct, folder)
    _rewrite(folder, edit)
    before = _digest(folder)
    with pytest.raises(DicomError) as info:
        read_ct(folder)
    message = str(info.value)
    assert words in message and "CT slice" in message and "export the CT again" in message
    assert _digest(folder) == before


def test_two_interleaved_series_under_one_uid_are_not_merged(small_ct, tmp_path):
    """A second copy of the 4 mm series shifted by 2 mm, given the first one's SeriesInstanceUID
    (new SOP Instance UIDs): merged it would read as one 2 mm series that was never acquired."""
    folder = tmp_path / "CT"
    shutil.copytree(small_ct, folder)
    uid = str(pydicom.dcmread(next(folder.glob("*.dcm"))).SeriesInstanceUID)
    for f in sorted(small_ct.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesInstanceUID = uid
        ds.SeriesNumber = 2
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 2.0]
        ds.save_as(folder / f"B_{f.name}")
    before = _digest(folder)
    with pytest.raises(DicomError, match=r"2 Series Numbers.*mixes series under one"):
        read_ct(folder)
    # The same with equal Series Numbers: the Instance Numbers repeat.
    _rewrite(folder, lambda name, n, ds: setattr(ds, "SeriesNumber", 1))
    with pytest.raises(DicomError, match=r"Instance Number 1 in .* and "):
        read_ct(folder)
    # And with distinct Instance Numbers: two acquisitions overlap along the stack.
    _rewrite(
        folder,
        lambda name, n, ds: (
            setattr(ds, "InstanceNumber", n + 1),
            setattr(ds, "AcquisitionNumber", 2 if name.startswith("B_") else 1),
        ),
    )
    with pytest.raises(DicomError, match="acquisitions 1 and 2 overlap"):
        read_ct(folder)
    assert _digest(folder) != before  # the test's own rewrites; the reader wrote nothing
    assert not [p for p in folder.iterdir() if not p.name.endswith(".dcm")]


def test_dvh_phantom_stack_still_reads(tmp_path):
    """The shared phantom CT shares one SeriesInstanceUID across spacings in its original set;
    its 2 mm stack alone is one series and reads (30 slices, 2 mm apart: README of the set)."""
    ct = read_ct(reference_path("dicom", "dvh-phantom", "ct-2mm"))
    assert ct.grid.shape[0] == 30
    assert ct.grid.spacing_mm[0] == pytest.approx(2.0, abs=1e-6)
