"""Commissioning: read measured water-tank scans and fit the beam model to them.

Readers: PTW mcc (``read_mcc``) and plain two-column CSV (``read_csv``).
The fit (``commission``) adjusts the depth functions, kernel widths, source
size, off-axis ratio and jaw transmission by scipy least squares so that the
engine's water scans (:mod:`lattice_plan.dose.water`, the same engine as for
patients) match the measured relative PDD and profiles; then it sets the
absolute calibration (0.01 Gy/MU at the depth of maximum of a 10 x 10 cm
field at SSD 1000 mm).

Parameters that a 10 x 10 cm scan set cannot determine well are bounded
by, or held at, literature values recorded in the model's provenance: the
extra-focal (head-scatter) source weight and width (Jaffray et al., Med Phys
20 (1993) 1417: extra-focal fluence of order 8 % for 6 MV, spread over the
flattening filter; several cm wide projected to the isocentre), the jaw leakage (IEC 60976 limit 2 %) and the MLC
transmission (LoSasso et al., Med Phys 25 (1998) 1919: 1.5-2 % for 6 MV).

Head scatter sets how the output falls for small fields, and only output
factors of the machine show it. Given measured output factors
(``read_output_factors``), a second stage fits the extra-focal weight and width
to them and the scans, the kernels held, as two-source head-scatter models are
commissioned (Jursinic, Med Phys 24 (1997) 1677).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.dose.engine import DoseEngine, PointGeometry
from lattice_plan.dose.model import BeamModel, DepthTerm, LateralComponent
from lattice_plan.dose.water import water_phantom
from lattice_plan.errors import DoseError, InputFileError
from lattice_plan.files import read_two_column_csv

log = logging.getLogger(__name__)

SCAN_KINDS = ("pdd", "crossplane", "inplane")


@dataclass(frozen=True, eq=False)
class Scan:
    """One measured water-tank scan, values relative (any scale).

    kind: "pdd" (positions are depths, mm) or "crossplane"/"inplane" profiles
    (positions in mm from the beam axis at ``depth_mm``).
    field_mm: (crossplane, inplane) field size at the isocentre, mm.
    """

    kind: str
    ssd_mm: float
    field_mm: tuple[float, float]
    positions_mm: NDArray[np.float64]
    values: NDArray[np.float64]
    depth_mm: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCAN_KINDS:
            raise DoseError(f"scan kind must be one of {SCAN_KINDS}, got {self.kind!r}")
        pos = np.asarray(self.positions_mm, dtype=float)
        val = np.asarray(self.values, dtype=float)
        if pos.ndim != 1 or pos.shape != val.shape or len(pos) < 3:
            raise DoseError(
                f"scan {self.source or self.kind}: positions and values must be 1D of equal length >= 3"
            )
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(val))):
            raise DoseError(f"scan {self.source or self.kind}: non-finite positions or values")
        order = np.argsort(pos)
        object.__setattr__(self, "positions_mm", pos[order])
        object.__setattr__(self, "values", val[order])
        object.__setattr__(self, "field_mm", (float(self.field_mm[0]), float(self.field_mm[1])))

    def field_centre_mm(self) -> float:
        """Profile: midpoint of the two 50 % points (mm); 0 for a PDD."""
        if self.kind == "pdd":
            return 0.0
        x, y = self.positions_mm, self.normalised()
        edges = []
        for side in (-1, 1):
            idx = np.flatnonzero(x * side > 0)
            idx = idx if side > 0 else idx[::-1]
            below = np.flatnonzero(y[idx] < 0.5)
            if len(below) == 0 or below[0] == 0:
                raise DoseError(
                    f"scan {self.source}: the profile does not fall below 50 % on both sides"
                )
            a, b = idx[below[0] - 1], idx[below[0]]
            edges.append(x[a] + (0.5 - y[a]) * (x[b] - x[a]) / (y[b] - y[a]))
        return 0.5 * (edges[0] + edges[1])

    def centred(self) -> Scan:
        """Profile shifted so its 50 % points are symmetric about 0 (removes tank set-up offset)."""
        if self.kind == "pdd":
            return self
        c = self.field_centre_mm()
        return replace(self, positions_mm=self.positions_mm - c)

    def normalised(self) -> NDArray[np.float64]:
        """PDD: relative to its maximum; profile: relative to the value on the axis (interpolated)."""
        if self.kind == "pdd":
            return self.values / self.values.max()
        return self.values / float(np.interp(0.0, self.positions_mm, self.values))


def _float(header: dict[str, str], key: str, path: Path, default: float | None = None) -> float:
    if key not in header:
        if default is not None:
            return default
        raise DoseError(f"{path}: scan lacks {key}= in its header")
    try:
        return float(header[key])
    except ValueError:
        raise DoseError(f"{path}: {key}={header[key]!r} is not a number") from None


def read_mcc(path: str | Path) -> list[Scan]:
    """Scans in a PTW mcc (CC-Export) file: PDDs and inplane/crossplane profiles.

    Values are the field detector divided by the reference detector when the
    file has a reference column (removing output drift), else the field detector.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"scan file {p} does not exist")
    lines = p.read_text(errors="replace").splitlines()
    scans: list[Scan] = []
    header: dict[str, str] = {}
    rows: list[list[float]] = []
    in_scan = in_data = False
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line.startswith("BEGIN_SCAN") and not line.startswith("BEGIN_SCAN_DATA"):
            in_scan, header, rows = True, {}, []
        elif line.startswith("END_SCAN") and not line.startswith("END_SCAN_DATA"):
            if in_scan:
                scans.append(_mcc_scan(header, rows, p))
            in_scan = False
        elif line == "BEGIN_DATA":
            in_data = True
        elif line == "END_DATA":
            in_data = False
        elif in_data:
            try:
                rows.append([float(t) for t in line.split()])
            except ValueError:
                raise DoseError(f"{p} line {n}: data row is not numbers: {line!r}") from None
        elif in_scan and "=" in line:
            key, _, val = line.partition("=")
            header[key.strip()] = val.strip()
    if not scans:
        raise DoseError(f"{p}: no BEGIN_SCAN ... END_SCAN block found; is it a PTW mcc file?")
    return scans


def _mcc_scan(header: dict[str, str], rows: list[list[float]], path: Path) -> Scan:
    curve = header.get("SCAN_CURVETYPE", "")
    kinds = {"PDD": "pdd", "CROSSPLANE_PROFILE": "crossplane", "INPLANE_PROFILE": "inplane"}
    if curve not in kinds:
        raise DoseError(
            f"{path}: scan type {curve!r} is not supported; use PDD, CROSSPLANE_PROFILE or INPLANE_PROFILE"
        )
    if not rows or min(len(r) for r in rows) < 2:
        raise DoseError(f"{path}: a {curve} scan has no data rows")
    data = np.array([r[:3] if len(r) >= 3 else [*r[:2], 1.0] for r in rows])
    ref = data[:, 2]
    values = data[:, 1] / ref if np.all(ref > 0) else data[:, 1]
    return Scan(
        kind=kinds[curve],
        ssd_mm=_float(header, "SSD", path),
        field_mm=(_float(header, "FIELD_CROSSPLANE", path), _float(header, "FIELD_INPLANE", path)),
        positions_mm=data[:, 0],
        values=values,
        depth_mm=_float(header, "SCAN_DEPTH", path, 0.0),
        source=f"{path.name}:{curve}",
    )


def read_csv(
    path: str | Path,
    kind: str,
    ssd_mm: float,
    field_mm: tuple[float, float],
    depth_mm: float = 0.0,
) -> Scan:
    """A scan from a CSV of (position or depth mm, value); a non-numeric first row is a header."""
    p = Path(path)
    arr = read_two_column_csv(p, "scan", "(position or depth mm, value)", DoseError)
    return Scan(kind, ssd_mm, field_mm, arr[:, 0], arr[:, 1], depth_mm, source=p.name)


# IROC's output-factor set-up (SAD: SSD 900 mm, 100 mm depth), the default for measured ones
OUTPUT_FACTOR_SSD_MM = 900.0
OUTPUT_FACTOR_DEPTH_MM = 100.0


@dataclass(frozen=True)
class OutputFactor:
    """A measured output factor: the central-axis dose of a field at ``depth_mm`` (SSD
    ``ssd_mm``) relative to that of 10 x 10 cm in the same set-up; field in mm at the isocentre."""

    field_mm: tuple[float, float]
    value: float
    ssd_mm: float = OUTPUT_FACTOR_SSD_MM
    depth_mm: float = OUTPUT_FACTOR_DEPTH_MM

    def __post_init__(self) -> None:
        try:
            fx, fy = (float(f) for f in self.field_mm)
            numbers = [float(v) for v in (fx, fy, self.value, self.ssd_mm, self.depth_mm)]
        except (TypeError, ValueError):
            raise DoseError(
                f"output factor {self.field_mm!r}: {self.value!r}: field sizes, value, SSD and "
                "depth must be numbers"
            ) from None
        object.__setattr__(self, "field_mm", (fx, fy))
        if not all(math.isfinite(v) for v in numbers):
            raise DoseError(f"output factor {self}: values must be finite")
        if not (5.0 <= fx <= 400.0 and 5.0 <= fy <= 400.0):
            raise DoseError(f"output factor field {self.field_mm} mm: sides must lie in 5-400 mm")
        if not 0.2 <= self.value <= 1.5:
            raise DoseError(
                f"output factor {self.value} for {fx:g} x {fy:g} mm is outside 0.2-1.5; output "
                "factors are relative to 10 x 10 cm (1.0), not in cGy/MU"
            )
        if not (500.0 <= self.ssd_mm <= 1500.0 and 10.0 <= self.depth_mm <= 300.0):
            raise DoseError(
                f"output factor set-up SSD {self.ssd_mm} mm, depth {self.depth_mm} mm: use an "
                "SSD of 500-1500 mm and a depth of 10-300 mm"
            )


def read_output_factors(
    path: str | Path, ssd_mm: float = OUTPUT_FACTOR_SSD_MM, depth_mm: float = OUTPUT_FACTOR_DEPTH_MM
) -> list[OutputFactor]:
    """Output factors of square fields from a CSV of (side mm at the isocentre, output factor).

    All rows share one set-up (SSD and depth, mm; IROC's is SSD 900, depth 100). A row for the
    10 x 10 cm reference, if present, must read 1.
    """
    p = Path(path)
    rows = read_two_column_csv(p, "output factor", "(side mm, output factor)", DoseError)
    out = [OutputFactor((side, side), value, ssd_mm, depth_mm) for side, value in rows]
    for of in out:
        if of.field_mm == (100.0, 100.0) and abs(of.value - 1.0) > 0.005:
            raise DoseError(
                f"output factors {p}: the 10 x 10 cm row reads {of.value}, not 1; normalise the "
                "output factors to 10 x 10 cm"
            )
    sides = [of.field_mm for of in out]
    twice = sorted({f[0] for f in sides if sides.count(f) > 1})
    if twice:
        raise DoseError(
            f"output factors {p}: the field side(s) {', '.join(f'{v:g}' for v in twice)} mm "
            "appear twice; keep one value per field (average repeated measurements)"
        )
    out = [of for of in out if of.field_mm != (100.0, 100.0)]
    if not out:
        raise DoseError(f"output factors {p}: only the 10 x 10 cm reference; add other fields")
    return out


# ---------------------------------------------------------------------------- fitting

# Held at literature values (see the module docstring) unless output factors are given (then the
# start of their fit): the 10 x 10 cm tail cannot separate
# head scatter from phantom scatter.
EXTRAFOCAL_WEIGHT = 0.08
EXTRAFOCAL_SIGMA_MM = 35.0
MLC_TRANSMISSION = 0.015

# name, initial value, lower bound, upper bound
_PARAMETERS: tuple[tuple[str, float, float, float], ...] = (
    # effective attenuation of 6 MV primary photons in water (zero-area TMR), about 0.050 /cm
    # (Bjarngard and Petti, Med Phys 15 (1988) 547; Khan, The Physics of Radiation Therapy,
    # ch. 10): the 10 x 10 cm PDD alone cannot split primary from phantom scatter
    ("primary_mu", 0.0050, 0.0049, 0.0051),
    ("primary_beta", 0.22, 0.05, 2.0),
    ("contam_amp", 0.46, 0.0, 2.0),
    ("contam_mu", 0.08, 0.03, 2.0),
    ("primary_sigma", 1.5, 0.3, 5.0),
    ("source_sigma_x", 0.74, 0.0, 4.0),
    ("source_sigma_y", 1.2, 0.0, 4.0),
    # the short component is the lateral tail of the primary dose (electron transport): it
    # shares the primary's depth dependence; build-up of phantom scatter with depth is left to
    # the long component, whose range is that of scattered photons
    # the electrons' lateral range: 98 % of a 6 MV primary pencil kernel lies within about
    # 13 mm (Nyholm et al., Radiother Oncol 78 (2006) 347: lambda = 13 mm / ln 50 = 3.3 mm);
    # kept under two coarse pixels, so the kernel stays on the fine map throughout the fit
    ("s1_amp", 0.36, 0.0, 2.0),
    ("s1_lambda", 3.0, 1.0, 4.5),
    ("s2_amp", 0.77, 0.0, 2.0),
    ("s2_beta", 0.0046, 0.001, 1.0),
    ("s2_mu", 0.0049, 0.0, 0.02),
    ("s2_lambda", 140.0, 10.0, 150.0),
    ("horn_h2", 0.04, -0.02, 0.08),  # flattened 6 MV: in-air OAR 1.02-1.05 at 10-15 cm
    # jaw leakage: IEC 60976 allows up to 2 %, linac jaws give about 0.5 %
    ("jaw_transmission", 0.005, 0.0, 0.01),
)
PARAMETER_NAMES = tuple(p[0] for p in _PARAMETERS)
# Fitted only with measured output factors: head-scatter weight (6 MV extra-focal fluence
# 0-15 %, Jaffray et al. 1993) and width at the isocentre plane.
_HEAD_SCATTER_PARAMETERS: tuple[tuple[str, float, float, float], ...] = (
    ("extrafocal_weight", EXTRAFOCAL_WEIGHT, 0.0, 0.15),
    ("extrafocal_sigma_mm", EXTRAFOCAL_SIGMA_MM, 5.0, 80.0),
)
HEAD_SCATTER_NAMES = tuple(p[0] for p in _HEAD_SCATTER_PARAMETERS)
# An output factor's relative error counts this many times a scan point's: a 1 % output-factor
# error weighs as much as 25 scan points 1 % off.
OUTPUT_FACTOR_WEIGHT = 5.0


def model_from_parameters(values: Sequence[float], name: str = "6X commissioned") -> BeamModel:
    """A beam model (uncalibrated, gy_per_mu = 1) from the fit's parameter vector.

    The vector holds ``PARAMETER_NAMES``, then ``HEAD_SCATTER_NAMES`` when the head scatter is
    fitted; otherwise it is held at the literature values.
    """
    values = [float(x) for x in values]
    names = PARAMETER_NAMES + (HEAD_SCATTER_NAMES if len(values) > len(PARAMETER_NAMES) else ())
    v = dict(zip(names, values, strict=True))
    comps = (
        LateralComponent(
            "primary",
            "gaussian",
            v["primary_sigma"],
            (
                DepthTerm(1.0, v["primary_mu"], v["primary_beta"], 1.0),
                DepthTerm(v["contam_amp"], v["contam_mu"]),
            ),
        ),
        LateralComponent(
            "scatter_short",
            "exponential",
            v["s1_lambda"],
            (DepthTerm(v["s1_amp"], v["primary_mu"], v["primary_beta"], 1.0),),
        ),
        LateralComponent(
            "scatter_long",
            "exponential",
            v["s2_lambda"],
            (DepthTerm(v["s2_amp"], v["s2_mu"], v["s2_beta"], 1.0),),
        ),
    )
    return BeamModel(
        name=name,
        components=comps,
        source_sigma_mm=(v["source_sigma_x"], v["source_sigma_y"]),
        extrafocal_weight=v.get("extrafocal_weight", EXTRAFOCAL_WEIGHT),
        extrafocal_sigma_mm=v.get("extrafocal_sigma_mm", EXTRAFOCAL_SIGMA_MM),
        jaw_transmission=v["jaw_transmission"],
        mlc_transmission=MLC_TRANSMISSION,
        horn_coeffs=(v["horn_h2"], 0.0),
        gy_per_mu=1.0,
    )


class _ScanSetup:
    """A measured scan with its water phantom, beam and (model-independent) point geometry."""

    def __init__(self, scan: Scan, reference_model: BeamModel) -> None:
        self.scan = scan
        sad = reference_model.sad_mm
        fx, fy = scan.field_mm
        self.beam = Beam("scan", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(fx, fy), mu=1.0, sad_mm=sad)
        pos = scan.positions_mm
        if scan.kind == "pdd":
            d = pos
            x = np.zeros_like(pos)
            z = np.zeros_like(pos)
        else:
            d = np.full_like(pos, scan.depth_mm)
            x = pos if scan.kind == "crossplane" else np.zeros_like(pos)
            z = pos if scan.kind == "inplane" else np.zeros_like(pos)
        points = np.stack([x, scan.ssd_mm + d - sad, z], axis=1)
        if scan.kind == "pdd":
            # a fine depth sampling to find the model's maximum
            self.fine_depths = np.arange(0.0, 60.0, 0.5)
            fine_pts = np.stack(
                [
                    np.zeros_like(self.fine_depths),
                    scan.ssd_mm + self.fine_depths - sad,
                    0 * self.fine_depths,
                ],
                axis=1,
            )
            points = np.concatenate([points, fine_pts])
        half = float(np.abs(points[:, [0, 2]]).max()) + 30.0
        ct = water_phantom(scan.ssd_mm, float(d.max()) + 5.0, half, sad)
        self.engine = DoseEngine(ct, None, reference_model, dose_spacing_mm=10.0)
        self.geometry = self.engine.point_geometry(self.beam, points)
        self.n = len(pos)

    def model_dose(self, model: BeamModel) -> NDArray[np.float64]:
        geom: PointGeometry = self.geometry.with_model(model)
        out = np.zeros(len(geom.u_mm))
        self.engine._dose_into(self.beam, geom, np.arange(len(out), dtype=np.int64), out, model)
        return out

    def residuals(self, model: BeamModel) -> NDArray[np.float64]:
        dose = self.model_dose(model)
        measured = self.scan.normalised()
        if self.scan.kind == "pdd":
            calc = dose[: self.n] / dose[self.n :].max()
            weight = np.where(self.scan.positions_mm < 5.0, 0.3, 1.0)
            return (calc - measured) * weight
        calc = dose / float(np.interp(0.0, self.scan.positions_mm, dose))
        return calc - measured


class _OutputFactorSetup:
    """Output factors of one set-up (SSD, depth): one water phantom, the fields and 10 x 10 cm."""

    def __init__(self, factors: Sequence[OutputFactor], reference_model: BeamModel) -> None:
        self.factors = list(factors)
        ssd, depth = self.factors[0].ssd_mm, self.factors[0].depth_mm
        sad = reference_model.sad_mm
        ct = water_phantom(ssd, depth + 5.0, 30.0, sad)
        self.engine = DoseEngine(ct, None, reference_model, dose_spacing_mm=10.0)
        axis_point = np.array([[0.0, ssd + depth - sad, 0.0]])
        fields = [(100.0, 100.0)] + [of.field_mm for of in self.factors]
        self.beams = [
            Beam("output factor", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(*f), mu=1.0, sad_mm=sad)
            for f in fields
        ]
        self.geometries = [self.engine.point_geometry(b, axis_point) for b in self.beams]
        self.measured = np.array([of.value for of in self.factors])

    def model_factors(self, model: BeamModel) -> NDArray[np.float64]:
        dose = np.zeros(len(self.beams))
        for n, (beam, geom) in enumerate(zip(self.beams, self.geometries, strict=True)):
            self.engine._dose_into(
                beam, geom.with_model(model), np.array([0]), dose[n : n + 1], model
            )
        return dose[1:] / dose[0]

    def residuals(self, model: BeamModel) -> NDArray[np.float64]:
        return (self.model_factors(model) / self.measured - 1.0) * OUTPUT_FACTOR_WEIGHT


def _output_factor_setups(
    factors: Sequence[OutputFactor], reference_model: BeamModel
) -> list[_OutputFactorSetup]:
    by_setup: dict[tuple[float, float], list[OutputFactor]] = {}
    for of in factors:
        by_setup.setdefault((of.ssd_mm, of.depth_mm), []).append(of)
    return [_OutputFactorSetup(group, reference_model) for group in by_setup.values()]


def commission(
    scans: Sequence[Scan],
    initial: Sequence[float] | None = None,
    max_nfev: int = 400,
    output_factors: Sequence[OutputFactor] = (),
) -> tuple[BeamModel, dict]:
    """Fit the model to PDD and profile scans and calibrate it; returns (model, fit report).

    Needs at least one PDD of a 10 x 10 cm field at SSD 1000 mm (the calibration
    condition) and at least one profile. ``initial`` holds ``PARAMETER_NAMES`` (with
    output factors, optionally followed by ``HEAD_SCATTER_NAMES``).

    With ``output_factors`` the fit has two stages: the scans fit the kernels and the source
    with the literature head scatter, as without them; then, with those held, the head scatter
    (``HEAD_SCATTER_NAMES``) is fitted to the output factors and the scans together. The phantom
    kernels stay what the scans (and their check against published kernels) make them; output
    factors only set what they alone show. The report lists the model's output factors.
    """
    scans = list(scans)
    if not any(s.kind == "pdd" for s in scans) or not any(s.kind != "pdd" for s in scans):
        raise DoseError("commissioning needs at least one PDD and at least one profile scan")
    n_scan_params = len(_PARAMETERS)
    head0 = [p[1] for p in _HEAD_SCATTER_PARAMETERS]
    if initial is not None:
        initial = [float(v) for v in initial]
        if len(initial) == n_scan_params + len(head0) and output_factors:
            initial, head0 = initial[:n_scan_params], initial[n_scan_params:]
        elif len(initial) != n_scan_params:
            raise DoseError(
                f"initial must hold the {n_scan_params} values of PARAMETER_NAMES (with output "
                f"factors, optionally followed by the {len(head0)} of HEAD_SCATTER_NAMES), "
                f"got {len(initial)}"
            )
    x0 = np.array([p[1] for p in _PARAMETERS] if initial is None else initial, dtype=float)
    lo = np.array([p[2] for p in _PARAMETERS])
    hi = np.array([p[3] for p in _PARAMETERS])
    x0 = np.clip(x0, lo, hi)
    shifts = {s.source: round(s.field_centre_mm(), 3) for s in scans if s.kind != "pdd"}
    scans = [s.centred() for s in scans]
    start = model_from_parameters(x0)
    scan_setups = [_ScanSetup(s, start) for s in scans]

    def scan_residuals(model: BeamModel) -> NDArray[np.float64]:
        return np.concatenate([s.residuals(model) for s in scan_setups])

    result = optimize.least_squares(
        lambda x: scan_residuals(model_from_parameters(x)),
        x0,
        bounds=(lo, hi),
        x_scale="jac",
        diff_step=1e-3,
        max_nfev=max_nfev,
    )
    fitted = list(result.x)
    of_setups = _output_factor_setups(output_factors, start)
    head_result = None
    if of_setups:
        h_lo = np.array([p[2] for p in _HEAD_SCATTER_PARAMETERS])
        h_hi = np.array([p[3] for p in _HEAD_SCATTER_PARAMETERS])

        def all_residuals(h: NDArray[np.float64]) -> NDArray[np.float64]:
            model = model_from_parameters([*fitted, *h])
            parts = [scan_residuals(model)] + [s.residuals(model) for s in of_setups]
            return np.concatenate(parts)

        head_result = optimize.least_squares(
            all_residuals,
            np.clip(head0, h_lo, h_hi),
            bounds=(h_lo, h_hi),
            x_scale="jac",
            diff_step=1e-3,
            max_nfev=max_nfev,
        )
        fitted += list(head_result.x)
    model = model_from_parameters(fitted)
    gy_per_mu = 0.01 / _reference_dose_per_mu(model)
    model = model.with_calibration(gy_per_mu)
    res = scan_residuals(model)
    names = PARAMETER_NAMES + (HEAD_SCATTER_NAMES if of_setups else ())
    report: dict = {
        "parameters": dict(zip(names, (float(v) for v in fitted), strict=True)),
        "rms_residual": float(np.sqrt(np.mean(res**2))),
        "max_abs_residual": float(np.abs(res).max()),
        "n_evaluations": int(result.nfev),
        "profile_centre_shift_mm": shifts,
        "status": str(result.message),
    }
    if head_result is not None:
        report["head_scatter_fit"] = {
            "n_evaluations": int(head_result.nfev),
            "status": str(head_result.message),
        }
        report["output_factors"] = [
            {
                "field_mm": list(of.field_mm),
                "ssd_mm": of.ssd_mm,
                "depth_mm": of.depth_mm,
                "measured": of.value,
                "model": round(float(calc), 4),
            }
            for setup in of_setups
            for of, calc in zip(setup.factors, setup.model_factors(model), strict=True)
        ]
    return model, report


def _reference_dose_per_mu(model: BeamModel) -> float:
    """Model dose per MU (uncalibrated units) at d_max of 10 x 10 cm, SSD 1000 mm."""
    from lattice_plan.dose import water

    depths = np.arange(5.0, 40.0, 0.25)
    dose = water.pdd((100.0, 100.0), 1000.0, depths, model=model)
    return float(dose.max())


def file_provenance(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    """Name and SHA-256 of each input file, for the model's provenance."""
    out = []
    for p in paths:
        path = Path(p)
        out.append({"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return out


def commission_files(
    paths: Sequence[str | Path],
    name: str = "6X commissioned",
    output_factor_file: str | Path | None = None,
    output_factor_setup_mm: tuple[float, float] = (OUTPUT_FACTOR_SSD_MM, OUTPUT_FACTOR_DEPTH_MM),
) -> tuple[BeamModel, dict]:
    """Read mcc files (and optionally an output-factor CSV), fit, and attach provenance.

    ``output_factor_setup_mm``: (SSD, depth) of the output factors in the CSV.
    """
    scans: list[Scan] = []
    for p in paths:
        if Path(p).suffix.lower() != ".mcc":
            raise DoseError(
                f"{p}: the commission command reads PTW .mcc files; load CSV with read_csv"
            )
        scans.extend(read_mcc(p))
    factors: list[OutputFactor] = []
    if output_factor_file is not None:
        factors = read_output_factors(output_factor_file, *output_factor_setup_mm)
    model, report = commission(scans, output_factors=factors)
    inputs = [*paths, *([output_factor_file] if output_factor_file is not None else [])]
    fixed = {}
    if not factors:
        fixed["extrafocal_weight"] = (
            f"{EXTRAFOCAL_WEIGHT} (Jaffray et al., Med Phys 20 (1993) 1417)"
        )
        fixed["extrafocal_sigma_mm"] = f"{EXTRAFOCAL_SIGMA_MM} at the isocentre plane (same source)"
    fixed["mlc_transmission"] = f"{MLC_TRANSMISSION} (LoSasso et al., Med Phys 25 (1998) 1919)"
    fixed["kernel_radius_mm"] = "150"
    command = "lattice-plan commission " + " ".join(Path(p).name for p in paths)
    if output_factor_file is not None:
        ssd, depth = output_factor_setup_mm
        command += (
            f" --output-factors {Path(output_factor_file).name}"
            f" --output-factor-ssd {ssd:g} --output-factor-depth {depth:g}"
        )
    provenance = {
        "fitted_to": file_provenance(inputs),
        "scans": [s.source for s in scans],
        "fit": report,
        "fitted_on": _dt.date.today().isoformat(),
        "command": command + " --out MODEL.json",
        "structure": (
            "pencil-beam superposition: Gaussian primary kernel with electron contamination, two "
            "exponential scatter kernels exp(-r/l)/(2 pi l r) (Ahnesjo et al. 1992), each with a "
            "depth function A(1 - b exp(-beta d)) exp(-mu d) of radiological depth"
        ),
        "bounded_by_literature": {
            "jaw_transmission": "0-1 % (IEC 60976 limit 2 %, linac jaws about 0.5 %)",
            "horn_h2": "-0.02-0.08 (in-air off-axis ratio of a flattened 6 MV beam)",
            "primary_mu": "0.0049-0.0051 /mm (zero-area TMR of 6 MV, Bjarngard and Petti 1988)",
            "s1_lambda": "1-4.5 mm (6 MV primary kernel, 98 % within about 13 mm: Nyholm et al. "
            "2006)",
            **(
                {
                    "extrafocal_weight": "0-0.15 (Jaffray et al. 1993), fitted to the output factors "
                    "and the scans in a second stage, the other parameters held",
                    "extrafocal_sigma_mm": "5-80 mm at the isocentre plane, fitted likewise",
                }
                if factors
                else {}
            ),
        },
        "fixed_from_literature": fixed,
        "not_used_in_fit": "BJR Supplement 25 PDD values and IROC output factors (kept for validation)",
        "calibration": "0.01 Gy/MU at d_max, 10 x 10 cm, SSD 1000 mm",
    }
    model = replace(model, name=name, provenance=provenance)
    if not math.isfinite(model.gy_per_mu):
        raise DoseError(
            "commissioning failed: the fitted model gives no dose at the reference point"
        )
    return model, report
