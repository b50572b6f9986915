"""RT Plan in and out: the import point of the RTPLAN modules.

- :func:`write_rtplan` (:mod:`lattice_plan.io.rtplan_write`): static beams
  (two control points, jaws and MLC) and control-point beams (step-and-shoot,
  sliding window, arcs) with their whole control-point sequences.
- :func:`read_rtplan` (:mod:`lattice_plan.io.rtplan_read`): fractions,
  prescription and each beam as a static :class:`~lattice_plan.dose.beam.Beam`
  of its first control point (what protocol QA needs).
- :func:`read_rtplan_delivery` (:mod:`lattice_plan.io.rtplan_delivery`): every
  photon beam as a :class:`~lattice_plan.dose.control_points.ControlPointBeam`
  with its machine, for recalculating the dose; what cannot be computed is
  refused with one line naming the beam and the reason.
"""

from lattice_plan.io.rtplan_delivery import DeliveryPlan, read_rtplan_delivery
from lattice_plan.io.rtplan_read import RTPlan, read_rtplan
from lattice_plan.io.rtplan_write import DEFAULT_MACHINE_NAME, WrittenRTPlan, write_rtplan

__all__ = [
    "DEFAULT_MACHINE_NAME",
    "DeliveryPlan",
    "RTPlan",
    "WrittenRTPlan",
    "read_rtplan",
    "read_rtplan_delivery",
    "write_rtplan",
]
