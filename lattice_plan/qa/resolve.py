"""Which plan structure answers to a protocol structure: by name, synonym or TG-263 key,
or as the union of the structures the protocol names for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lattice_plan.geometry.morphology import union as union_of
from lattice_plan.geometry.structure import Structure, StructureSet
from lattice_plan.qa.matching import match_structure
from lattice_plan.qa.protocol_model import Protocol


class StructureResolver:
    """Finds (and caches) the plan structure for each protocol structure, building unions."""

    def __init__(
        self,
        protocol: Protocol,
        structures: StructureSet,
        outside_grid: Mapping[str, str],
        allow_partial: bool,
    ) -> None:
        self.protocol = protocol
        self.structures = structures
        self.outside_grid = outside_grid
        self.allow_partial = allow_partial
        self.cache: dict[str, tuple[Structure | None, str]] = {}

    def resolve(self, name: str) -> tuple[Structure | None, str]:
        key = name.casefold()
        if key not in self.cache:
            self.cache[key] = self._resolve(name, ())
        return self.cache[key]

    def _resolve(self, name: str, seen: Sequence[str]) -> tuple[Structure | None, str]:
        spec = self.protocol.structure(name)
        match = match_structure(spec.name, spec.synonyms, self.structures.names)
        if match.plan_name is not None:
            return self.structures.get(match.plan_name), f"matched by {match.how}"
        if not spec.union_of or spec.name.casefold() in seen:
            return None, f"the plan has no structure {spec.name!r}" + (
                f" (or {', '.join(repr(s) for s in spec.synonyms)})" if spec.synonyms else ""
            )
        parts = []
        for part in spec.union_of:
            s, why = self._resolve(part, (*seen, spec.name.casefold()))
            if s is None:
                return None, (
                    f"the plan has no structure {spec.name!r}, and its union "
                    f"{' + '.join(spec.union_of)} lacks {part!r}: {why}"
                )
            if s.name.casefold() in self.outside_grid and not self.allow_partial:
                return None, (
                    f"the plan has no structure {spec.name!r}, and its union part {s.name!r} "
                    f"is not evaluable: {self.outside_grid[s.name.casefold()]}"
                )
            parts.append(s)
        union = union_of(*parts, name=" + ".join(s.name for s in parts))
        how = f"union of {' + '.join(s.name for s in parts)}"
        for s in parts:
            if s.name.casefold() in self.outside_grid:
                how += f"; {s.name}: {partial_note(self.outside_grid[s.name.casefold()])}"
        return union, how


def partial_note(outside: str) -> str:
    """The note of a row judged on a structure that reaches outside the dose grid."""
    return f"judged on the part inside the dose grid only ({outside})"
