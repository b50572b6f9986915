"""Cohort files (TOML): cases, arms and parameter sweeps, expanded into planning tasks.

A cohort file looks like::

    name = "pilot"
    arms = ["SFRT", "SCART", "CRT"]

    [settings]                       # applied to every task (plan-spec keys)
    "dose.spacing_mm" = 3.0

    [sweep]                          # lists of values, expanded into a grid
    "lattice.spacing_mm" = [25.0, 30.0]
    "lattice.diameter_mm" = [10.0, 15.0]

    [[cases]]
    id = "phantom-default"
    phantom = {}                     # the built-in phantom (PhantomParameters fields)

    [[cases]]
    id = "patient-007"
    ct = "data/p007/CT"              # relative to the cohort file
    rtstruct = "data/p007/RS.dcm"
    gtv = "GTV_mass"
    oars = ["SpinalCord", "Esophagus"]

Sweep and settings keys are dotted plan-spec keys (``table.key`` of
lattice_plan.planning.spec). Keys under ``lattice.``
apply to the SFRT arm only, ``scart.`` to SCART only, ``crt.`` to CRT only,
``optimiser.`` to SFRT and SCART (see
:data:`lattice_plan.planning.plan.ARM_ONLY_SPEC_TABLES`); every other key
applies to all arms. An arm gets one task per combination of
the sweep keys that apply to it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lattice_plan import __version__
from lattice_plan.errors import InputFileError, SpecError
from lattice_plan.planning.plan import ARMS, spec_key_applies
from lattice_plan.tables import read_toml_file

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCALAR = (int, float, str, bool)


@dataclass(frozen=True)
class CaseSource:
    """Where one case comes from: the built-in phantom with parameters, or a DICOM export."""

    case_id: str
    phantom: dict[str, Any] | None = None
    ct_dir: Path | None = None
    rtstruct: Path | None = None
    gtv: str = "GTV"
    oars: tuple[str, ...] | None = None

    @property
    def is_phantom(self) -> bool:
        return self.phantom is not None

    def check_files(self) -> None:
        """Refuse a DICOM case whose CT folder or RTSTRUCT does not exist."""
        if self.ct_dir is not None and not self.ct_dir.is_dir():
            raise InputFileError(
                f"case {self.case_id!r}: CT folder {str(self.ct_dir)!r} does not exist"
            )
        if self.rtstruct is not None and not self.rtstruct.is_file():
            raise InputFileError(
                f"case {self.case_id!r}: RTSTRUCT {str(self.rtstruct)!r} does not exist"
            )

    def fingerprint(self) -> str:
        """SHA-256 of what the case's result depends on: phantom parameters or the DICOM files' bytes."""
        h = hashlib.sha256()
        h.update(json.dumps({"gtv": self.gtv, "oars": self.oars}, sort_keys=True).encode())
        if self.phantom is not None:
            h.update(json.dumps(self.phantom, sort_keys=True).encode())
        else:
            assert self.ct_dir is not None and self.rtstruct is not None
            self.check_files()
            for path in [*sorted(p for p in self.ct_dir.rglob("*") if p.is_file()), self.rtstruct]:
                h.update(path.name.encode())
                with path.open("rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(chunk)
        return h.hexdigest()


@dataclass(frozen=True)
class CohortTask:
    """One case, one arm, one parameter set: plan it, evaluate it, write its outputs."""

    case: CaseSource
    arm: str
    params: tuple[tuple[str, Any], ...]

    @property
    def params_label(self) -> str:
        """Folder-safe label of the swept parameters ("default" when none)."""
        if not self.params:
            return "default"
        parts = [f"{key.split('.')[-1]}-{_label_value(value)}" for key, value in self.params]
        return "_".join(parts)

    @property
    def relative_dir(self) -> Path:
        return Path(self.case.case_id) / self.arm.lower() / self.params_label

    def content_hash(self, case_fingerprint: str, settings: dict[str, Any]) -> str:
        """Hash of the inputs and parameters; a completed task with the same hash is skipped."""
        payload = {
            "case": case_fingerprint,
            "arm": self.arm,
            "params": list(self.params),
            "settings": sorted(settings.items()),
            "version": __version__,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Cohort:
    name: str
    cases: tuple[CaseSource, ...]
    arms: tuple[str, ...]
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def tasks(self) -> list[CohortTask]:
        """Every (case, arm, parameter combination), in file order."""
        out = []
        for case in self.cases:
            for arm in self.arms:
                keys = [k for k in self.sweep if spec_key_applies(k, arm)]
                for combo in itertools.product(*(self.sweep[k] for k in keys)):
                    out.append(CohortTask(case, arm, tuple(zip(keys, combo, strict=True))))
        return out


def _label_value(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "", text) or "x"


def _fail(path: Path, key: str, expected: str, got: Any = None) -> SpecError:
    got_text = "" if got is None else f", got {got!r}"
    return SpecError(f"{path}: key {key!r}: expected {expected}{got_text}")


def load_cohort(path: str | Path) -> Cohort:
    """Read and validate a cohort file; paths in it are relative to the file."""
    path, data = read_toml_file(path, "cohort file")
    known = {"name", "arms", "cases", "sweep", "settings"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(path, unknown[0], f"one of {sorted(known)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise _fail(path, "name", "a string", name)
    arms_raw = data.get("arms", list(ARMS))
    if not isinstance(arms_raw, list) or not arms_raw:
        raise _fail(path, "arms", f"a non-empty list drawn from {list(ARMS)}", arms_raw)
    arms = []
    for a in arms_raw:
        if not isinstance(a, str) or a.upper() not in ARMS:
            raise _fail(path, "arms", f"arm names from {list(ARMS)}", a)
        if a.upper() in arms:
            raise _fail(path, "arms", "each arm once", a)
        arms.append(a.upper())
    cases_raw = data.get("cases")
    if not isinstance(cases_raw, list) or not cases_raw:
        raise _fail(path, "cases", "a non-empty array of [[cases]] tables")
    cases = []
    seen: set[str] = set()
    for n, c in enumerate(cases_raw):
        case = _parse_case(path, n, c)
        if case.case_id in seen:
            raise _fail(path, f"cases[{n}].id", "a unique case id", case.case_id)
        seen.add(case.case_id)
        cases.append(case)
    sweep_raw = data.get("sweep", {})
    if not isinstance(sweep_raw, dict):
        raise _fail(path, "sweep", "a table of dotted keys to lists of values")
    sweep = {}
    for key, values in sweep_raw.items():
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, _SCALAR) for v in values)
        ):
            raise _fail(path, f"sweep.{key}", "a non-empty list of numbers or strings", values)
        sweep[key] = tuple(values)
    settings = data.get("settings", {})
    if not isinstance(settings, dict) or not all(
        isinstance(v, (*_SCALAR, list)) for v in settings.values()
    ):
        raise _fail(path, "settings", "a table of dotted keys to values")
    return Cohort(name, tuple(cases), tuple(arms), sweep, dict(settings), path)


def _parse_case(path: Path, n: int, c: Any) -> CaseSource:
    where = f"cases[{n}]"
    if not isinstance(c, dict):
        raise _fail(path, where, "a table")
    case_id = c.get("id")
    if not isinstance(case_id, str) or not _CASE_ID.match(case_id):
        raise _fail(
            path, f"{where}.id", "a folder-safe id (letters, digits, '_', '-', '.')", case_id
        )
    unknown = sorted(set(c) - {"id", "phantom", "ct", "rtstruct", "gtv", "oars"})
    if unknown:
        raise _fail(path, f"{where}.{unknown[0]}", "one of id, phantom, ct, rtstruct, gtv, oars")
    gtv = c.get("gtv", "GTV")
    if not isinstance(gtv, str) or not gtv:
        raise _fail(path, f"{where}.gtv", "a structure name", gtv)
    oars = c.get("oars")
    if oars is not None and (
        not isinstance(oars, list) or not all(isinstance(o, str) for o in oars)
    ):
        raise _fail(path, f"{where}.oars", "a list of structure names", oars)
    oars_t = None if oars is None else tuple(oars)
    if "phantom" in c:
        if "ct" in c or "rtstruct" in c:
            raise _fail(path, where, "either phantom or ct + rtstruct, not both")
        if not isinstance(c["phantom"], dict):
            raise _fail(path, f"{where}.phantom", "a table of phantom parameters", c["phantom"])
        return CaseSource(case_id, phantom=dict(c["phantom"]), gtv=gtv, oars=oars_t)
    if "ct" not in c or "rtstruct" not in c:
        raise _fail(path, where, "phantom = {...}, or both ct and rtstruct")
    ct_dir = (path.parent / str(c["ct"])).resolve()
    rtstruct = (path.parent / str(c["rtstruct"])).resolve()
    return CaseSource(case_id, ct_dir=ct_dir, rtstruct=rtstruct, gtv=gtv, oars=oars_t)
