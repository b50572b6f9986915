"""Time of DICOM export and import: the built-in phantom and the shared breast-boost plan. Prints JSON."""

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _timing import best_of

from lattice_plan.geometry import Volume
from lattice_plan.io.ct import read_ct, write_ct_series
from lattice_plan.io.dicom_common import DicomWarning
from lattice_plan.io.rtdose import load_rtdose, write_rtdose
from lattice_plan.io.rtplan import read_rtplan
from lattice_plan.io.rtstruct import read_rtstruct, write_rtstruct
from lattice_plan.phantoms import build_phantom

PLAN_UID = "1.2.826.0.1.3680043.8.498.4"  # a plan reference for the timing write only
BREAST = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "dicom" / "breast-boost-plan"
)


def main() -> None:
    patient = build_phantom()
    out = {"phantom_grid": list(patient.grid.shape)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t, ct = best_of(3, lambda: write_ct_series(patient, root / "CT"))
        out["write_ct_s"] = t
        out["read_ct_s"], _ = best_of(3, lambda: read_ct(root / "CT"))
        out["write_rtstruct_s"], _ = best_of(
            3, lambda: write_rtstruct(patient.structures, ct, root / "RS.dcm")
        )
        out["rtstruct_mb"] = round((root / "RS.dcm").stat().st_size / 1e6, 2)
        out["read_rtstruct_s"], _ = best_of(3, lambda: read_rtstruct(root / "RS.dcm", ct))
        dose = Volume(np.random.default_rng(0).uniform(0, 20, ct.grid.shape), ct.grid, "Gy")
        out["write_rtdose_s"], _ = best_of(
            3,
            lambda: write_rtdose(
                dose, root / "RD.dcm", ct.identity, referenced_rtplan_uid=PLAN_UID
            ),
        )
        out["read_rtdose_s"], _ = best_of(3, lambda: load_rtdose(root / "RD.dcm"))
    if BREAST.exists():
        t, rd = best_of(3, lambda: load_rtdose(BREAST / "rtdose.dcm"))
        out["breast_read_rtdose_s"] = t

        def structures_on_dose():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DicomWarning)
                return read_rtstruct(BREAST / "rtss.dcm", rd.grid)

        out["breast_read_rtstruct_on_dose_grid_s"], _ = best_of(3, structures_on_dose)
        out["breast_read_rtplan_s"], _ = best_of(3, lambda: read_rtplan(BREAST / "rtplan.dcm"))
    out = {k: round(v, 3) if k.endswith("_s") else v for k, v in out.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
