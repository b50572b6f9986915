"""Folder listing: patients, studies, series, RT objects and their references."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.errors import InputFileError
from lattice_plan.geometry import Structure, Volume
from lattice_plan.io.listing import list_dicom_folder
from lattice_plan.io.rtdose import write_rtdose
from lattice_plan.io.rtplan import write_rtplan
from lattice_plan.io.rtstruct import write_rtstruct
from tests.conftest import reference_path


def test_breast_boost_listing():
    listing = list_dicom_folder(reference_path("dicom", "breast-boost-plan"))
    assert [len(s.files) for s in listing.ct_series()] == [1]
    assert listing.ct_series()[0].slice_thicknesses_mm == (3.0,)
    (rs,) = listing.of_modality("RTSTRUCT")
    (rp,) = listing.of_modality("RTPLAN")
    (rd,) = listing.of_modality("RTDOSE")
    assert ("RTPLAN", rp.sop_instance_uid) in rd.references
    assert ("RTSTRUCT", rs.sop_instance_uid) in rp.references
    assert ("image series", listing.ct_series()[0].series_instance_uid) in rs.references
    assert rd.missing == () and rp.missing == () and rs.missing == ()
    assert [p.name for p, _ in listing.unreadable] == ["LICENSE.dicompyler-core.txt"]
    text = str(listing)
    assert "patient 123456" in text and "RTPLAN rtplan.dcm 'B1'" in text


def test_listing_of_our_export_links_every_object(phantom, phantom_ct, tmp_path):
    folder, ct = phantom_ct
    out = tmp_path / "export"
    shutil.copytree(folder, out)
    gtv = phantom.structures["GTV"]
    rs_uid = write_rtstruct([Structure("GTV", gtv.mask, ct.grid, "GTV")], ct, out / "RS.dcm")
    beam = Beam("AP", 0.0, tuple(gtv.centroid_lps_mm()), Jaws.symmetric(80, 80), mu=200.0)
    plan = write_rtplan(
        [beam],
        out / "RP.dcm",
        ct.identity,
        n_fractions=1,
        dose_per_fraction_gy=8.0,
        referenced_rtstruct_uid=rs_uid,
    )
    write_rtdose(
        Volume(np.zeros(ct.grid.shape), ct.grid, "Gy"),
        out / "RD.dcm",
        ct.identity,
        referenced_rtplan_uid=plan.sop_instance_uid,
    )
    (out / "orphan.dcm").write_bytes(b"\0" * 10)
    listing = list_dicom_folder(out)
    assert {s.study_instance_uid for s in listing.series} == {ct.identity.study_instance_uid}
    assert {o.frame_of_reference_uid for o in listing.rt_objects} == {ct.frame_of_reference_uid}
    (rd,) = listing.of_modality("RTDOSE")
    assert rd.references == (("RTPLAN", plan.sop_instance_uid),) and rd.missing == ()
    assert [p.name for p, _ in listing.unreadable] == ["orphan.dcm"]
    (out / "RP.dcm").unlink()
    assert list_dicom_folder(out).of_modality("RTDOSE")[0].missing == (plan.sop_instance_uid,)


def test_listing_needs_a_folder(tmp_path):
    with pytest.raises(InputFileError):
        list_dicom_folder(tmp_path / "absent")
