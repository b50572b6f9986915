"""The commissioning fit: beam-model parameters, their literature bounds, and the least-squares fit
of the model to scans (then of its head scatter to output factors); see :mod:`lattice_plan.dose.commission`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.dose.beam_data import OutputFactor, Scan
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.dose.model import BeamModel, DepthTerm, LateralComponent
from lattice_plan.dose.point_geometry import PointGeometry
from lattice_plan.dose.superpose import add_beam_dose
from lattice_plan.dose.water import water_phantom
from lattice_plan.errors import DoseError

# Held at literature values (see lattice_plan.dose.commission) unless output factors are given (then the
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
        add_beam_dose(self.beam, geom, np.arange(len(out), dtype=np.int64), out, model)
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
            add_beam_dose(beam, geom.with_model(model), np.array([0]), dose[n : n + 1], model)
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
