"""Protocol files: arm-specific dose constraints in TOML, read and validated field by field.

A protocol has a name and version, optional structure definitions (synonyms,
unions) and arms. Each arm has its number of fractions, its prescription(s)
and a list of constraints::

    [protocol]
    name = "Example"
    version = "1.0"

    [structures.SpinalCord]            # optional: synonyms and unions
    synonyms = ["Spinal Cord", "Cord"]

    [arms.SFRT]
    fractions = 1
    prescriptions = [{ target = "Vertices", dose = "15 Gy" }]

    [[arms.SFRT.constraints]]
    structure = "SpinalCord"
    metric = "D0.035cc"                 # any metric string of lattice_plan.analysis
    comparison = "<="                   # <, <=, >, >=
    limit = "14 Gy"                     # number and unit: Gy, cGy, cc, %; bare for ratios
    acceptable = "15 Gy"                # optional: beyond limit but within this = minor deviation
    source = "AAPM TG-101 Table 3"
    required = false                    # optional (default true), see below
    alpha_beta = "2 Gy"                 # only, and always, with an EQD2: or BED: metric

Peak-to-valley metrics: ``metric = "PVDR"`` (D10/D90 of ``structure``, the
GTV) reads one structure; ``PVDR[mean]`` (mean vertex over mean valley dose)
and ``PVDR[point]`` (maximum vertex over minimum valley dose) read the vertices
named by ``structure`` and the valley named by ``valley = "Valley"``;
``PVDR[profile]`` reads the dose along the lines joining neighbouring vertex
centres (the centroids of the separate pieces of ``structure``). Their limits
are plain numbers (ratios).

A structure the plan lacks gives a "not evaluated" row; ``required = false``
marks constraints whose organ need not exist for every patient (an oesophagus
limit for a lumbar lesion), so their absence does not hold back the verdict.
Every error names the file, the key (with its line where it can be found)
and what was expected.

Modules: :mod:`lattice_plan.qa.protocol_model` (the objects),
:mod:`lattice_plan.qa.protocol_reader` (validation); this module reads text and
files and re-exports both. ``Arm``, ``Prescription`` and ``Quantity`` are the
old names of ``ProtocolArm``, ``ProtocolPrescription`` and ``ConstraintQuantity``.
"""

from __future__ import annotations

import os

from lattice_plan.qa.protocol_model import (
    AT_LIMIT_RTOL,
    Comparison,
    Constraint,
    ConstraintQuantity,
    Outcome,
    Protocol,
    ProtocolArm,
    ProtocolPrescription,
    StructureSpec,
)
from lattice_plan.qa.protocol_reader import ProtocolReader
from lattice_plan.tables import parse_toml_text, read_toml_text


def parse_protocol(text: str, source: str = "<string>") -> Protocol:
    """Read a protocol from TOML ``text``; ``source`` names it in error messages."""
    return ProtocolReader(source, text).protocol(parse_toml_text(text, source))


def load_protocol(path: str | os.PathLike[str]) -> Protocol:
    """Read and validate a protocol TOML file."""
    p, text = read_toml_text(path, "protocol file")
    return parse_protocol(text, source=str(p))


# The names before the protocol-side classes were named apart from the planning ones.
Arm = ProtocolArm
Prescription = ProtocolPrescription
Quantity = ConstraintQuantity

__all__ = [
    "AT_LIMIT_RTOL",
    "Arm",
    "Comparison",
    "Constraint",
    "ConstraintQuantity",
    "Outcome",
    "Prescription",
    "Protocol",
    "ProtocolArm",
    "ProtocolPrescription",
    "Quantity",
    "StructureSpec",
    "load_protocol",
    "parse_protocol",
]
