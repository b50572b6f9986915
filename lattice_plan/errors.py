"""The package's exceptions.

One base class, :class:`LatticePlanError`; each subclass also inherits the
built-in exception it refines, so callers may catch either. Messages say what
was wrong, where, and what to do about it.
"""


class LatticePlanError(Exception):
    """Base class of every error raised deliberately by lattice_plan."""


class GeometryError(LatticePlanError, ValueError):
    """Grids, frames, structures or margins that are inconsistent or invalid."""


class StructureNotFoundError(LatticePlanError, KeyError):
    """A structure name that is not in the structure set."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DoseError(LatticePlanError, ValueError):
    """Beam model, beam or dose-engine input that cannot give a correct dose."""


class DicomError(LatticePlanError, ValueError):
    """DICOM input that cannot be read correctly, or output that cannot be written."""


class InputFileError(LatticePlanError, FileNotFoundError):
    """A file or folder the user named does not exist or cannot be read."""


class SpecError(LatticePlanError, ValueError):
    """A plan spec, protocol or cohort file (TOML) with a missing or invalid field."""


class PlanningError(LatticePlanError, ValueError):
    """A plan that cannot be built or optimised as requested."""


class AnalysisError(LatticePlanError, ValueError):
    """A metric or analysis request that is malformed or cannot be evaluated."""


class SamplingError(GeometryError, AnalysisError):
    """Dose that cannot be sampled in a structure (unit, empty structure, outside the dose grid).

    Raised by the geometry layer; it is also an :class:`AnalysisError`, as the
    metrics that sample dose (DVH, QA) report it.
    """


class ProtocolError(LatticePlanError, ValueError):
    """A protocol (dose-constraint set) that is malformed or does not fit the plan."""


class VisualizationError(LatticePlanError, RuntimeError):
    """A figure or 3D scene that cannot be drawn as asked (no display, empty scene, unknown view)."""


class ExportedPlanError(AnalysisError, ProtocolError):
    """An exported plan (RTDOSE, RTPLAN) that cannot be evaluated or checked as given: a relative
    or partial dose, a dose of another plan, fractions that are missing or contradict the plan.
    It is an AnalysisError and a ProtocolError, as the evaluation and the protocol check raised."""
