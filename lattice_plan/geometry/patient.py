"""A patient as the planner sees it: CT, structures and identity."""

from __future__ import annotations

from dataclasses import dataclass, field

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import StructureSet
from lattice_plan.geometry.volume import Volume


@dataclass(frozen=True, eq=False)
class Patient:
    """CT (HU) and structures on the CT grid, with the identity DICOM outputs must keep.

    ``dicom_uids`` may hold StudyInstanceUID, FrameOfReferenceUID and
    SeriesInstanceUID of the source CT; outputs reuse the study and frame of
    reference and get fresh UIDs for new objects.
    """

    ct: Volume
    structures: StructureSet
    patient_id: str = "ANON"
    patient_name: str = "Anonymous"
    description: str = ""
    dicom_uids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ct.unit != "HU":
            raise GeometryError(f"Patient CT must be in HU, got {self.ct.unit!r}")
        self.ct.grid.require_same(self.structures.grid, "the structure set")

    @property
    def grid(self) -> Grid:
        return self.ct.grid
