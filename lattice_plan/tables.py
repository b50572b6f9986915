"""One reader of TOML tables with one message style: file, [table] key, expected value.

``TomlTable`` hands out a table's keys with type checks and refuses unknown
keys; every message reads ``<file>: [<table>] <key>: expected <what>, got <value>``.
:func:`read_toml_file` (and :func:`read_toml_text`, for readers that report
line numbers) read a file with one set of messages for a missing file or bad
syntax. Plan specs read their tables with ``TomlTable``; plan specs, protocols
and cohort files are read by these functions. This module imports nothing from
the package except :mod:`lattice_plan.errors`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lattice_plan.errors import InputFileError, LatticePlanError, SpecError

__all__ = [
    "TomlTable",
    "coerce_value",
    "dataclass_from_table",
    "parse_toml_text",
    "read_toml_file",
    "read_toml_text",
]


def read_toml_text(path: str | os.PathLike[str], what: str) -> tuple[Path, str]:
    """(path, text) of the UTF-8 text file ``path``; ``what`` names its role in messages.

    A missing or unreadable file raises InputFileError ("<what> '<path>' does not
    exist; check the path"); a file that is not UTF-8 raises SpecError.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{what} {str(p)!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise InputFileError(
            f"{what} {str(p)!r} is a folder; give the path of a .toml file"
        ) from None
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {str(p)!r}: {exc.strerror}") from exc
    try:
        return p, raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a UTF-8 text file; a {what} is TOML") from None


def parse_toml_text(text: str, source: str) -> dict[str, Any]:
    """The decoded TOML ``text``; bad syntax raises SpecError ("<source>: not valid TOML:
    <parser message with its line>; fix the syntax")."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}; fix the syntax") from None


def read_toml_file(path: str | os.PathLike[str], what: str) -> tuple[Path, dict[str, Any]]:
    """(path, data) of the TOML file ``path``, with the messages of :func:`read_toml_text`
    and :func:`parse_toml_text`."""
    p, text = read_toml_text(path, what)
    return p, parse_toml_text(text, str(p))


_MISSING = object()


class TomlTable:
    """One TOML table being read: hands out its keys with checks, then refuses leftovers."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{source}: [{path}] must be a table, got {type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def fail(self, key: str, expected: str, value: Any = _MISSING) -> SpecError:
        got = "" if value is _MISSING else f", got {value!r}"
        return SpecError(f"{self.source}: [{self.path}] {key}: expected {expected}{got}")

    def has(self, key: str) -> bool:
        return key in self.data

    def take(self, key: str, default: Any = _MISSING) -> tuple[bool, Any]:
        """(True, value) if the table has ``key``, else (False, default); a required key
        (no default) that is missing is an error."""
        self.used.add(key)
        if key in self.data:
            return True, self.data[key]
        if default is _MISSING:
            raise SpecError(f"{self.source}: [{self.path}] is missing the key {key!r}")
        return False, default

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        return self.take(key, default)[1]

    def string(self, key: str, default: Any = _MISSING, *, allow_empty: bool = False) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if not isinstance(v, str) or not (allow_empty or v.strip()):
            raise self.fail(key, "a string" if allow_empty else "a non-empty string", v)
        return v

    def number(
        self, key: str, default: Any = _MISSING, *, positive: bool = False, minimum: float = -np.inf
    ) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            raise self.fail(key, "a number", v)
        if positive and v <= 0:
            raise self.fail(key, "a positive number", v)
        if v < minimum:
            raise self.fail(key, f"a number >= {minimum:g}", v)
        return float(v)

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int = 1) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.fail(key, f"an integer >= {minimum}", v)
        return int(v)

    def numbers(self, key: str, default: Any = _MISSING, *, non_negative: bool = False) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        what = (
            "a non-empty list of non-negative numbers"
            if non_negative
            else "a non-empty list of numbers"
        )
        if not isinstance(v, list) or not v:
            raise self.fail(key, what, v)
        for item in v:
            if isinstance(item, bool) or not isinstance(item, int | float) or not np.isfinite(item):
                raise self.fail(key, what, v)
            if non_negative and item < 0:
                raise self.fail(key, what, v)
        return tuple(float(item) for item in v)

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        present, v = self.take(key, default)
        if not present:
            return v
        if not isinstance(v, list) or not all(isinstance(s, str) and s.strip() for s in v):
            raise self.fail(key, "a list of structure names (strings)", v)
        return tuple(v)

    def finish(self, allowed_hint: Sequence[str] | None = None) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            valid = sorted(allowed_hint if allowed_hint is not None else self.used)
            raise SpecError(
                f"{self.source}: [{self.path}] has unknown key(s) {', '.join(map(repr, extra))}; "
                f"valid keys: {', '.join(valid)}"
            )


def coerce_value(table: TomlTable, key: str, value: Any, hint: Any) -> Any:
    """``value`` from TOML converted to the annotated type ``hint`` of a dataclass field."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        errors = []
        for arg in args:
            try:
                return coerce_value(table, key, value, arg)
            except SpecError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is typing.Literal:
        options = typing.get_args(hint)
        if value not in options:
            raise table.fail(key, f"one of {', '.join(map(repr, options))}", value)
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise table.fail(key, "a list", value)
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce_value(table, key, v, args[0]) for v in value)
        if len(args) != len(value):
            raise table.fail(key, f"a list of {len(args)} values", value)
        return tuple(coerce_value(table, key, v, a) for v, a in zip(value, args, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            raise table.fail(key, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise table.fail(key, "an integer", value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise table.fail(key, "a number", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise table.fail(key, "a string", value)
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            try:
                return hint[str(value).upper()]
            except KeyError:
                options = ", ".join(repr(m.value) for m in hint)
                raise table.fail(key, f"one of {options}", value) from None
    return value  # other annotations: the constructor validates


def dataclass_from_table(cls: type, table: TomlTable) -> Any:
    """An instance of dataclass ``cls`` from the table's keys (its field names), validated."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if not table.has(name):
            if required:
                table.raw(name)  # raises: missing key
            continue
        kwargs[name] = coerce_value(table, name, table.raw(name), hints.get(name, Any))
    table.finish(allowed_hint=list(fields))
    try:
        return cls(**kwargs)
    except (LatticePlanError, TypeError, ValueError) as exc:
        raise SpecError(f"{table.source}: [{table.path}]: {exc}") from exc
