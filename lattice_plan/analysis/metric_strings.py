"""Clinical dose-metric strings (``D95%``, ``D0.03cc``, ``V20Gy[cc]``, ``EQD2:Dmean``, ``PVDR``).

Grammar (case-insensitive keywords; spaces ignored)::

    metric    := [quantity ":"] body
    quantity  := "EQD2" | "BED"                       (default: physical dose)
    body      := "Dmax" | "Dmin" | "Dmean"  [dose-out]   maximum, minimum, mean dose
               | "D" number ("%" | "cc")   [dose-out]   dose to the hottest x % / x cc
               | "V"  number ("Gy"|"cGy"|"%") [vol-out] volume receiving >= the dose
               | "CV" number ("Gy"|"cGy"|"%") [vol-out] volume receiving <  the dose
               | "PVDR" ["[" variant "]"]               peak-to-valley dose ratio
    dose-out  := "[Gy]" | "[cGy]" | "[%]"   (default Gy; % = of the prescription)
    vol-out   := "[%]" | "[cc]"             (default: % for V, cc for CV, as in TG-263)
    variant   := "D10/D90" | "mean" | "point" | "profile"   (default D10/D90)

A dose threshold in "%" (``V95%``) and a "[%]" dose output are relative to the
prescription dose given when the metric is evaluated. Percentages of volume
must lie in 0-100. PVDR metrics need more than one structure's DVH: they are
parsed here and evaluated by :func:`lattice_plan.analysis.sfrt.evaluate_pvdr`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lattice_plan.errors import AnalysisError

Quantity = Literal["physical", "EQD2", "BED"]
MetricKind = Literal["dose_stat", "dose_at_volume", "volume_at_dose", "volume_below_dose", "pvdr"]

QUANTITIES: tuple[str, ...] = ("physical", "EQD2", "BED")
PVDR_VARIANTS: tuple[str, ...] = ("D10/D90", "mean", "point", "profile")

ACCEPTED_FORMS = (
    "Dmax, Dmin, Dmean, D95%, D2%, D0.03cc, D2cc, V20Gy, V20Gy[cc], V2000cGy, V95% (of the "
    "prescription), CV20Gy, optional dose output [Gy]/[cGy]/[%] after D-metrics, volume output "
    "[%]/[cc] after V/CV-metrics, PVDR or PVDR[D10/D90|mean|point|profile], and an optional "
    "'EQD2:' or 'BED:' prefix"
)

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_RE_STAT = re.compile(r"^D(MAX|MIN|MEAN)(?:\[(GY|CGY|%)\])?$")
_RE_D = re.compile(rf"^D{_NUMBER}(%|CC|CM3)(?:\[(GY|CGY|%)\])?$")
_RE_V = re.compile(rf"^(CV|V){_NUMBER}(GY|CGY|%)(?:\[(%|CC|CM3)\])?$")
_RE_PVDR = re.compile(r"^PVDR(?:\[([A-Z0-9/]+)\])?$")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed dose metric.

    Attributes:
        text: the string as given.
        kind: "dose_stat" (Dmax/Dmin/Dmean), "dose_at_volume" (Dx%, Dxcc),
            "volume_at_dose" (VxGy, Vx%), "volume_below_dose" (CVxGy) or "pvdr".
        quantity: "physical", "EQD2" or "BED": the dose the metric is read from.
        stat: "max", "min" or "mean" for dose_stat metrics, else None.
        volume: the x of Dx% / Dxcc, in ``volume_unit``; None otherwise.
        volume_unit: "%" or "cc" for dose_at_volume metrics, else None.
        dose: the x of VxGy / Vx% in ``dose_unit`` (cGy converted to Gy); None otherwise.
        dose_unit: "Gy" or "%" (of the prescription) for V/CV metrics, else None.
        output_unit: unit of the metric's value: "Gy", "%" or "cc", or "1" for PVDR.
        pvdr_variant: one of PVDR_VARIANTS for PVDR metrics, else None.
    """

    text: str
    kind: MetricKind
    quantity: Quantity = "physical"
    stat: str | None = None
    volume: float | None = None
    volume_unit: str | None = None
    dose: float | None = None
    dose_unit: str | None = None
    output_unit: str = "Gy"
    pvdr_variant: str | None = None

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise AnalysisError(
                f"metric {self.text!r}: quantity {self.quantity!r} is not one of {QUANTITIES}"
            )
        if self.volume is not None and self.volume_unit == "%" and not 0 <= self.volume <= 100:
            raise AnalysisError(
                f"metric {self.text!r}: a volume percentage must lie in 0-100, got {self.volume:g} %"
            )

    @property
    def needs_prescription(self) -> bool:
        """True when evaluating needs a prescription dose (a % dose threshold or output)."""
        return self.dose_unit == "%" or (
            self.kind in ("dose_stat", "dose_at_volume") and self.output_unit == "%"
        )

    @property
    def needs_fractionation(self) -> bool:
        """True when evaluating needs the number of fractions and alpha/beta (EQD2, BED)."""
        return self.quantity != "physical"

    @property
    def canonical(self) -> str:
        """A normalised spelling of the metric (e.g. ``EQD2:V20Gy[cc]``)."""
        prefix = "" if self.quantity == "physical" else f"{self.quantity}:"
        if self.kind == "dose_stat":
            body = f"D{self.stat}[{self.output_unit}]"
        elif self.kind == "dose_at_volume":
            body = f"D{self.volume:g}{self.volume_unit}[{self.output_unit}]"
        elif self.kind == "pvdr":
            body = f"PVDR[{self.pvdr_variant}]"
        else:
            head = "V" if self.kind == "volume_at_dose" else "CV"
            body = f"{head}{self.dose:g}{self.dose_unit}[{self.output_unit}]"
        return prefix + body


def _malformed(text: str, why: str) -> AnalysisError:
    return AnalysisError(
        f"metric {text!r} is not understood: {why}; accepted forms: {ACCEPTED_FORMS}"
    )


def parse_metric(text: str) -> MetricSpec:
    """Parse a clinical metric string (see the module docstring for the grammar).

    Raises AnalysisError naming the string and the accepted forms when it is malformed.
    """
    if isinstance(text, MetricSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise _malformed(str(text), "expected a non-empty string")
    s = re.sub(r"\s+", "", text).upper()
    quantity: Quantity = "physical"
    if ":" in s:
        head, _, s = s.partition(":")
        if head == "EQD2":
            quantity = "EQD2"
        elif head == "BED":
            quantity = "BED"
        else:
            raise _malformed(text, f"prefix {head!r} is not EQD2 or BED")

    if m := _RE_STAT.match(s):
        out = {"GY": "Gy", "CGY": "cGy", "%": "%", None: "Gy"}[m.group(2)]
        return MetricSpec(text, "dose_stat", quantity, stat=m.group(1).lower(), output_unit=out)
    if m := _RE_D.match(s):
        value = float(m.group(1))
        vunit = "%" if m.group(2) == "%" else "cc"
        if vunit == "%" and value > 100:
            raise _malformed(text, f"the volume {value:g} % exceeds 100 %")
        out = {"GY": "Gy", "CGY": "cGy", "%": "%", None: "Gy"}[m.group(3)]
        return MetricSpec(
            text, "dose_at_volume", quantity, volume=value, volume_unit=vunit, output_unit=out
        )
    if m := _RE_V.match(s):
        kind: MetricKind = "volume_at_dose" if m.group(1) == "V" else "volume_below_dose"
        value = float(m.group(2))
        dunit = m.group(3)
        if dunit == "CGY":
            value, dunit = value / 100.0, "GY"
        default_out = "%" if kind == "volume_at_dose" else "cc"
        out = {"%": "%", "CC": "cc", "CM3": "cc", None: default_out}[m.group(4)]
        return MetricSpec(
            text,
            kind,
            quantity,
            dose=value,
            dose_unit="Gy" if dunit == "GY" else "%",
            output_unit=out,
        )
    if m := _RE_PVDR.match(s):
        variant_text = m.group(1) or "D10/D90"
        variant = next((v for v in PVDR_VARIANTS if v.upper() == variant_text), None)
        if variant is None:
            raise _malformed(
                text, f"PVDR variant {variant_text!r} is not one of {', '.join(PVDR_VARIANTS)}"
            )
        return MetricSpec(text, "pvdr", quantity, output_unit="1", pvdr_variant=variant)
    if re.match(r"^C?V", s):
        why = "a V-metric needs a dose threshold such as V20Gy, V2000cGy or V95%"
    elif s.startswith("D"):
        why = "a D-metric is Dmax, Dmin, Dmean or a volume such as D95% or D0.03cc"
    else:
        why = "it starts with neither D, V, CV nor PVDR"
    raise _malformed(text, why)
