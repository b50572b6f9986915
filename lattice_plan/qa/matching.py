"""Matching a protocol's structure names to the structures of a plan.

Planning systems name structures freely ("Lt Lung", "Spinal Cord", "KIDNEY_L");
a protocol names each structure once (preferably by its AAPM TG-263 name) with
a list of synonyms. A plan structure matches in two tiers:

1. exactly, ignoring case, the protocol name or one of its synonyms;
2. failing that, by TG-263 key: both names reduced by :func:`tg263_key`, which
   splits words (spaces, underscores, hyphens, camel case), folds case, ignores
   word order and turns a laterality word (L, Lt, Left / R, Rt, Right) into a
   suffix, so "Lt Lung", "Lung_L" and "left lung" all give ``lung_L``.

When one tier finds two different plan structures the match is ambiguous and
raises :class:`~lattice_plan.errors.ProtocolError`: a protocol must never
silently evaluate the wrong organ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lattice_plan.errors import ProtocolError

_LATERALITY = {"l": "L", "lt": "L", "left": "L", "r": "R", "rt": "R", "right": "R"}
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[A-Za-z0-9]+")


def tg263_key(name: str) -> str:
    """Order- and case-insensitive key of a structure name, laterality as a ``_L``/``_R`` suffix.

    ``tg263_key("Spinal Cord") == tg263_key("SpinalCord") == "cord_spinal"``;
    ``tg263_key("Lt Lung") == tg263_key("Lung_L") == "lung_L"``.
    """
    words: list[str] = []
    side = ""
    for chunk in _WORD.findall(name):
        for word in _CAMEL.split(chunk):
            w = word.casefold()
            if not w:
                continue
            if w in _LATERALITY and not side:
                side = _LATERALITY[w]
            else:
                words.append(w)
    key = "_".join(sorted(words))
    return f"{key}_{side}" if side else key


@dataclass(frozen=True)
class StructureMatch:
    """The plan structure found for a protocol structure, and how.

    ``plan_name`` is None when nothing matched; ``how`` says which name or rule matched.
    """

    protocol_name: str
    plan_name: str | None
    how: str


def match_structure(
    protocol_name: str, synonyms: Sequence[str], plan_names: Sequence[str]
) -> StructureMatch:
    """Find the plan structure for ``protocol_name`` (or one of ``synonyms``) in ``plan_names``.

    Raises ProtocolError when one tier matches two different plan structures.
    """
    candidates = [protocol_name, *synonyms]
    wanted = {c.casefold(): c for c in candidates}
    exact = [p for p in plan_names if p.casefold() in wanted]
    if len(exact) > 1:
        raise ProtocolError(
            f"protocol structure {protocol_name!r}: its names {candidates} match several plan "
            f"structures ({', '.join(repr(p) for p in exact)}); remove the synonym that matches the "
            "wrong one or rename the plan structure"
        )
    if exact:
        return StructureMatch(protocol_name, exact[0], f"name {wanted[exact[0].casefold()]!r}")
    keys = {tg263_key(c): c for c in candidates if tg263_key(c)}
    by_key = [p for p in plan_names if tg263_key(p) in keys]
    if len(by_key) > 1:
        raise ProtocolError(
            f"protocol structure {protocol_name!r}: TG-263 matching of {candidates} finds several "
            f"plan structures ({', '.join(repr(p) for p in by_key)}); add the intended plan name "
            "as a synonym or rename the plan structures"
        )
    if by_key:
        return StructureMatch(
            protocol_name, by_key[0], f"TG-263 key of {keys[tg263_key(by_key[0])]!r}"
        )
    return StructureMatch(protocol_name, None, "no plan structure matches")
