"""Finding a protocol by name or file, and the protocol arm a plan is checked against."""

from __future__ import annotations

import os
from pathlib import Path

from lattice_plan.errors import InputFileError
from lattice_plan.qa.builtin import list_builtin_protocols, load_builtin_protocol
from lattice_plan.qa.protocol import Protocol, load_protocol


def load_protocol_arg(protocol: str | os.PathLike[str] | None) -> Protocol | None:
    """The protocol named by ``protocol``: "builtin", a built-in protocol's name, or a TOML file."""
    if protocol is None:
        return None
    text = str(protocol)
    if text == "builtin":
        return load_builtin_protocol()
    if text in list_builtin_protocols():
        return load_builtin_protocol(text)
    path = Path(text)
    if not path.is_file():
        raise InputFileError(
            f"protocol {text!r} is neither a built-in protocol ({', '.join(list_builtin_protocols())}) "
            "nor an existing TOML file"
        )
    return load_protocol(path)


def protocol_arm_for(
    protocol: Protocol, arm: str, fractions: int, total_dose_gy: float
) -> str | None:
    """The protocol arm a plan of ``arm`` with ``fractions`` is checked against, or None.

    Arms named like the plan's arm ("SFRT", or "CRT_30Gy_10fx" for CRT) with the
    plan's number of fractions; among several, the one prescribing the plan's dose.
    """
    key = arm.upper()
    names = [n for n in protocol.arm_names if n.upper() == key or n.upper().startswith(key + "_")]
    fitting = [n for n in names if protocol.arm(n).fractions == fractions]
    if len(fitting) > 1:
        by_dose = [
            n
            for n in fitting
            if any(abs(p.dose_gy - total_dose_gy) < 1e-6 for p in protocol.arm(n).prescriptions)
        ]
        fitting = by_dose or fitting[:1]
    if not fitting:
        return names[0] if len(names) == 1 else None
    return fitting[0]
