"""Protocol dose-constraint sets (TOML) and their checking, with the built-in study protocol.

from lattice_plan.qa import load_builtin_protocol, check
protocol = load_builtin_protocol()          # an editable template; see builtin_protocol_text()
result = check(dose, structures, protocol, "SFRT")
print(result)                               # table and verdict
result.write_csv("qa.csv")

``Arm``, ``Prescription`` and ``Quantity`` are aliases of ``ProtocolArm``,
``ProtocolPrescription`` and ``ConstraintQuantity`` (named apart from the planning classes).
"""

from lattice_plan.qa.builtin import (
    STUDY_PROTOCOL,
    builtin_protocol_text,
    list_builtin_protocols,
    load_builtin_protocol,
)
from lattice_plan.qa.check import CheckResult, ConstraintResult, Verdict, check
from lattice_plan.qa.dicom_check import check_dicom
from lattice_plan.qa.matching import match_structure, tg263_key
from lattice_plan.qa.protocol import (
    Arm,
    Comparison,
    Constraint,
    ConstraintQuantity,
    Outcome,
    Prescription,
    Protocol,
    ProtocolArm,
    ProtocolPrescription,
    Quantity,
    StructureSpec,
    load_protocol,
    parse_protocol,
)

__all__ = [
    "STUDY_PROTOCOL",
    "Arm",
    "CheckResult",
    "Comparison",
    "Constraint",
    "ConstraintQuantity",
    "ConstraintResult",
    "Outcome",
    "Prescription",
    "Protocol",
    "ProtocolArm",
    "ProtocolPrescription",
    "Quantity",
    "StructureSpec",
    "Verdict",
    "builtin_protocol_text",
    "check",
    "check_dicom",
    "list_builtin_protocols",
    "load_builtin_protocol",
    "load_protocol",
    "match_structure",
    "parse_protocol",
    "tg263_key",
]
