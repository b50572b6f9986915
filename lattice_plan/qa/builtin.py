"""The protocols shipped with the package (editable templates in lattice_plan/data/protocols)."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from lattice_plan.errors import ProtocolError
from lattice_plan.qa.protocol import Protocol, parse_protocol

STUDY_PROTOCOL = "bone_mets_sfrt_scart_crt"


def _folder() -> Traversable:
    return resources.files("lattice_plan").joinpath("data", "protocols")


def list_builtin_protocols() -> list[str]:
    """Names of the built-in protocols (file names without ``.toml``), sorted."""
    return sorted(p.name[: -len(".toml")] for p in _folder().iterdir() if p.name.endswith(".toml"))


def builtin_protocol_text(name: str = STUDY_PROTOCOL) -> str:
    """The TOML text of a built-in protocol, e.g. to save as the start of your own."""
    names = list_builtin_protocols()
    if name not in names:
        raise ProtocolError(
            f"no built-in protocol {name!r}; the built-in protocols are {', '.join(names)}"
        )
    return _folder().joinpath(f"{name}.toml").read_text(encoding="utf-8")


def load_builtin_protocol(name: str = STUDY_PROTOCOL) -> Protocol:
    """A built-in protocol, validated (default: this study's template)."""
    return parse_protocol(builtin_protocol_text(name), source=f"built-in protocol {name}")
