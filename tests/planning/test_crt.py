"""CRT builder: field geometry, target location, weights, and the phantom plan's dose."""

import numpy as np
import pytest

from lattice_plan.analysis.dvh import DVH
from lattice_plan.dose.engine import DoseEngine
from lattice_plan.errors import PlanningError
from lattice_plan.geometry import Grid, Patient, Structure, StructureKind, StructureSet, Volume
from lattice_plan.geometry.structure import structure_on_grid
from lattice_plan.planning.beams import gantry_for_direction
from lattice_plan.planning.crt import (
    CRT_FRACTIONATIONS,
    _weight_grid,
    best_weights,
    build_crt_plan,
    candidate_arrangements,
    crt_prescription,
    field_label,
    locate_target,
)
from lattice_plan.planning.plan import Arm
from lattice_plan.planning.spec import plan_patient

# ---------------------------------------------------------------------------- geometry only


@pytest.mark.parametrize(
    ("position", "direction", "gantry"),
    [
        # IEC 61217, HFS: gantry 0 enters anteriorly, 90 from the patient's left.
        ("HFS", (0, -1, 0), 0.0),
        ("HFS", (1, 0, 0), 90.0),
        ("HFS", (0, 1, 0), 180.0),
        ("HFS", (-1, 0, 0), 270.0),
        ("HFS", (1, 1, 0), 135.0),  # left-posterior oblique
        ("HFP", (0, 1, 0), 0.0),  # prone: the back faces the ceiling
        ("FFS", (1, 0, 0), 270.0),  # feet first: the patient's left is at -X_f
    ],
)
def test_gantry_for_direction(position, direction, gantry):
    assert gantry_for_direction(direction, position) == pytest.approx(gantry, abs=1e-9)


def test_gantry_for_a_direction_along_the_gantry_axis_is_refused():
    with pytest.raises(PlanningError, match="along the gantry axis"):
        gantry_for_direction((0, 0, 1), "HFS")


@pytest.mark.parametrize(
    ("gantry", "position", "label"),
    [
        (0, "HFS", "AP"),
        (180, "HFS", "PA"),
        (90, "HFS", "LLAT"),
        (270, "HFS", "RLAT"),
        (45, "HFS", "LAO"),
        (135, "HFS", "LPO"),
        (225, "HFS", "RPO"),
        (315, "HFS", "RAO"),
        (0, "HFP", "PA"),
        (8, "HFS", "AP"),
    ],
)
def test_field_labels(gantry, position, label):
    assert field_label(gantry, position) == label


def _water_patient(target_centre, target_r=20.0, spacing=2.5, semi_axes_mm=(150.0, 100.0)):
    """An elliptic water cylinder (default 300 x 200 mm in x, y), 160 mm long, with a
    spherical GTV."""
    g = Grid.from_extent((-160, -110, -80), (160, 110, 80), spacing)
    z, y, x = np.meshgrid(*g.axis_coords_lps_mm(), indexing="ij")
    body = (x / semi_axes_mm[0]) ** 2 + (y / semi_axes_mm[1]) ** 2 <= 1.0
    c = np.asarray(target_centre, dtype=float)
    gtv = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= target_r**2
    ct = np.where(body, 0.0, -1000.0)
    ss = StructureSet.from_structures(
        [
            Structure("External", body, g, StructureKind.EXTERNAL),
            Structure("GTV", gtv & body, g, StructureKind.GTV),
        ]
    )
    return Patient(Volume(ct, g, "HU"), ss)


@pytest.mark.parametrize(
    ("centre", "location", "depths"),
    [
        # Depths to the ellipse x^2/150^2 + y^2/100^2 = 1 from the centre (analytic).
        ((0, 0, 0), "central", {"anterior": 100, "posterior": 100, "left": 150, "right": 150}),
        ((0, 60, 0), "posterior", {"posterior": 40, "anterior": 160}),
        ((-100, 0, 0), "right", {"right": 50, "left": 250}),
        # 70 mm below the anterior skin, 130 mm below the posterior one: ratio 1.86 > 1.5.
        ((0, -30, 0), "anterior", {"anterior": 70, "posterior": 130}),
        # 90 and 110 mm: ratio 1.22 < 1.5, central.
        ((0, 10, 0), "central", {"anterior": 110, "posterior": 90}),
    ],
)
def test_locate_target(centre, location, depths):
    p = _water_patient(centre)
    pos = locate_target(p.structures["GTV"], p.structures["External"])
    assert pos.location == location
    # The outline is drawn through voxel centres (2.5 mm): depths within about one voxel.
    for name, d in depths.items():
        assert pos.depth_mm[name] == pytest.approx(d, abs=2.5)
    np.testing.assert_allclose(pos.centroid_lps_mm, centre, atol=0.5)


def test_locate_target_outside_the_body():
    p = _water_patient((0, 0, 0))
    g = p.grid
    far = np.zeros(g.shape, dtype=bool)
    far[5:8, 2:5, 2:5] = True  # a corner of the grid, in air
    with pytest.raises(PlanningError, match="outside the body"):
        locate_target(Structure("T", far, g), p.structures["External"])


def test_candidate_arrangements():
    central = locate_target(*_targets((0, 0, 0)))
    ap_pa, box = candidate_arrangements(central)
    assert ap_pa.name == "AP/PA" and ap_pa.gantry_deg == (0.0, 180.0)
    assert box.name == "four-field box" and box.gantry_deg == (0.0, 180.0, 90.0, 270.0)
    posterior = locate_target(*_targets((0, 60, 0)))
    cands = candidate_arrangements(posterior)
    assert [c.gantry_deg for c in cands] == [
        (180.0, 225.0, 135.0),  # PA plus posterior obliques at +/-45 deg (HFS)
        (180.0, 0.0),
        (180.0, 225.0, 135.0, 0.0),
        (0.0, 180.0, 90.0, 270.0),
    ]
    assert cands[0].name == "PA + posterior obliques"
    assert all(c.reason.startswith("posterior target") for c in cands)
    left = candidate_arrangements(locate_target(*_targets((100, 0, 0))))
    assert left[0].gantry_deg == (90.0, 135.0, 45.0)
    assert left[0].name == "LLAT + left obliques"
    # Prone (HFP): the back faces the ceiling, so the PA field is gantry 0; gantry 90
    # (source at +X_f) then faces the patient's right, so 45 is the right-posterior oblique.
    prone = candidate_arrangements(posterior, "HFP")
    assert prone[0].gantry_deg == (0.0, 45.0, 315.0)
    assert [field_label(g, "HFP") for g in prone[0].gantry_deg] == ["PA", "RPO", "LPO"]


def _targets(centre):
    p = _water_patient(centre)
    return p.structures["GTV"], p.structures["External"]


def test_weight_grid_counts_and_bounds():
    # Weights on a 5 % grid, each >= 10 %, summing to 1: integers k_i >= 2 with sum 20;
    # stars and bars gives C(20 - 2n + n - 1, n - 1) combinations.
    from math import comb

    for n in (1, 2, 3, 4):
        W = _weight_grid(n)
        assert len(W) == comb(20 - 2 * n + n - 1, n - 1)
        np.testing.assert_allclose(W.sum(axis=1), 1.0)
        assert W.min() >= 0.1 - 1e-12


def test_best_weights_flatten_opposed_gradients():
    """Two fields with opposite linear gradients across the target: equal weights are flat."""
    t = np.linspace(-1, 1, 2001)
    per_field = np.stack([1 + 0.3 * t, 1 - 0.3 * t])
    w, hom = best_weights(per_field)
    np.testing.assert_allclose(w, [0.5, 0.5])
    assert hom.ptv == pytest.approx(1.0, abs=1e-12) and hom.overall == hom.ptv
    # Unequal gradients (0.4 vs 0.2 per unit t): w1 * 0.4 = w2 * 0.2 -> w = (1/3, 2/3),
    # nearest on the 5 % grid: 0.35 / 0.65 (residual slope 0.01, ratio within 2 %).
    w, hom = best_weights(np.stack([1 + 0.4 * t, 1 - 0.2 * t]))
    assert w[0] == pytest.approx(0.35) and hom.ptv < 1.02


def test_best_weights_count_hot_spots_outside_the_target():
    """Field 1 is flat in the target but delivers 2x the isocentre dose to one outside voxel;
    field 2 has a gradient in the target. The PTV-only optimum (all field 1) would put a 200 %
    hot spot outside, so the weights move towards field 2 until the two maxima balance."""
    t = np.linspace(-1, 1, 1001)
    ptv = np.stack([np.ones_like(t), 1 + 0.5 * t])
    outside = np.array([[2.0], [0.0]])
    w_ptv_only, _ = best_weights(ptv)
    assert w_ptv_only[0] == pytest.approx(0.9)  # as much of the flat field as allowed
    w, h = best_weights(ptv, outside)
    assert h.overall >= h.ptv
    # Analytic: weights (a, 1 - a); PTV max a + (1 - a) 1.5, D95 ~ a + (1 - a)(1 - 0.45);
    # outside 2a. Brute force over the documented weight grid (5 % steps, each field at least
    # 10 %), with Dmax / D95 (5th percentile) computed here: the chosen weighting is its optimum.
    a = np.arange(10, 91, 5) / 100.0
    doses = a[:, None] * ptv[0] + (1 - a[:, None]) * ptv[1]
    d95 = np.percentile(doses, 5.0, axis=1)
    overall = np.maximum(doses.max(axis=1), 2.0 * a) / d95
    assert w[0] == pytest.approx(a[np.argmin(overall)])
    assert h.overall == pytest.approx(overall.min(), rel=1e-9)
    assert w[0] < w_ptv_only[0]


def test_best_weights_prefer_low_integral_dose_on_a_tie():
    flat = np.ones((2, 100))
    w, hom = best_weights(flat, body_mean=np.array([2.0, 1.0]))
    np.testing.assert_allclose(w, [0.1, 0.9])  # the field with less body dose, at most
    assert hom.overall == pytest.approx(1.0)


def test_crt_prescriptions():
    for key, (dose, n) in CRT_FRACTIONATIONS.items():
        rx = crt_prescription(dose, n)
        assert rx.total_dose_gy == pytest.approx(dose) and rx.fractions == n, key
        assert (rx.target, rx.method) == ("PTV", "D95%")
    with pytest.raises(PlanningError, match="positive integer"):
        crt_prescription(8.0, 0)


# ---------------------------------------------------------------------------- with dose


@pytest.fixture(scope="module")
def phantom_engine(phantom):
    return DoseEngine(phantom.ct, phantom.structures.external(), dose_spacing_mm=2.5)


@pytest.fixture(scope="module")
def phantom_plan(phantom, phantom_engine):
    return build_crt_plan(phantom, engine=phantom_engine)


def _ptv_dose(plan):
    mask = structure_on_grid(plan.structures["PTV"], plan.dose.grid).mask
    return plan.dose.array[mask]


@pytest.mark.slow
def test_phantom_crt_meets_the_issue_targets(phantom_plan):
    """Issue 7: PTV D95 equals the prescription within 1 %, PTV D2% within 107 % (ICRU 50/62)."""
    plan = phantom_plan
    assert plan.arm is Arm.CRT
    rx = plan.prescription
    assert (rx.total_dose_gy, rx.fractions, rx.method) == (30.0, 10, "D95%")
    d = _ptv_dose(plan)
    assert np.percentile(d, 5) == pytest.approx(30.0, rel=0.01)
    # ICRU 50/62: PTV dose within 95-107 % of the prescription (the protocol's CRT limit),
    # judged on the near-maximum D2% (ICRU 83).
    assert np.percentile(d, 98) <= 1.07 * 30.0
    # Independently, the analysis DVH (sub-voxel sampling of the CT-grid PTV) agrees.
    dvh = DVH.from_dose(plan.dose, plan.structures["PTV"])
    assert dvh.metric("D95%") == pytest.approx(30.0, rel=0.01)
    assert dvh.metric("D2%") <= 1.07 * 30.0
    # The chosen candidate's hot spots (relative to D95 = the prescription) are the plan's;
    # candidates are scored on voxel-centre D95, the plan is normalised on the sub-voxel
    # D95 of the DVHs, which differ by well under 1 % for a PTV of this size.
    chosen = next(c for c in plan.info["candidates"] if c["name"] == plan.info["arrangement"])
    assert d.max() / 30.0 == pytest.approx(chosen["ptv_dmax_over_d95"], rel=0.01)
    assert plan.dose.array.max() / 30.0 == pytest.approx(chosen["dmax_over_d95"], rel=0.01)
    # ... and no candidate had a lower overall hot spot by more than the 2 % tie margin.
    assert chosen["dmax_over_d95"] <= 1.02 * min(
        c["dmax_over_d95"] for c in plan.info["candidates"]
    )


@pytest.mark.slow
def test_phantom_crt_records_how_it_was_made(phantom, phantom_plan):
    info = phantom_plan.info
    # The mass is left-paravertebral: its PTV centroid is nearest the posterior skin.
    assert info["target_position"]["location"] == "posterior"
    assert info["arrangement"] in {c["name"] for c in info["candidates"]}
    assert info["arrangement_reason"].startswith("posterior target")
    names = [c["name"] for c in info["candidates"]]
    assert names[0] == "PA + posterior obliques" and len(names) == 4
    assert sum(info["weights"]) == pytest.approx(1.0)
    # Isocentre: the PTV centroid rounded to whole mm.
    iso = np.array(info["isocenter_lps_mm"])
    np.testing.assert_array_equal(iso, np.round(iso))
    centroid = phantom_plan.structures["PTV"].points_lps_mm().mean(axis=0)
    assert np.all(np.abs(iso - centroid) <= 0.5 + 1e-9)
    # MU: per fraction, positive, totalled.
    mus = info["mu_per_beam"]
    assert set(mus) == {b.name for b in phantom_plan.beams}
    assert all(m > 0 for m in mus.values())
    assert info["total_mu"] == pytest.approx(sum(mus.values()))
    assert phantom_plan.total_mu == pytest.approx(info["total_mu"])
    assert info["modulation"] == 1.0  # open conformal fields, no fluence modulation
    # The PTV is the GTV + 10 mm within the body, added to the plan's structures.
    ptv = phantom_plan.structures["PTV"]
    assert ptv.kind is StructureKind.PTV
    gtv = phantom.structures["GTV"]
    assert np.all(ptv.mask[gtv.mask])
    assert not np.any(ptv.mask & ~phantom.structures.external().mask)


@pytest.mark.slow
def test_phantom_crt_dose_is_the_dose_of_its_beams(phantom_plan, phantom_engine):
    """The stored dose equals fractions x the engine's dose of the final beams at their MU."""
    plan = phantom_plan
    recomputed = phantom_engine.compute(plan.beams).array * plan.fractions
    np.testing.assert_allclose(plan.dose.array, recomputed, rtol=1e-9, atol=1e-9)
    # The weights are the fields' shares of the isocentre dose.
    iso = np.asarray(plan.info["isocenter_lps_mm"])[None, :]
    shares = np.array([phantom_engine.point_dose([b], iso)[0] for b in plan.beams])
    np.testing.assert_allclose(shares / shares.sum(), plan.info["weights"], atol=0.01)


@pytest.mark.slow
def test_user_fields_weights_and_fractionation(phantom, phantom_engine):
    rx = crt_prescription(*CRT_FRACTIONATIONS["8Gy/1"])
    plan = build_crt_plan(
        phantom,
        prescription=rx,
        gantry_deg=[0.0, 180.0],
        weights=[1.0, 2.0],
        engine=phantom_engine,
        name="AP-PA",
    )
    assert [b.name for b in plan.beams] == ["AP", "PA"]
    assert plan.info["weights_source"] == "user"
    assert plan.info["arrangement"] == "user fields"
    assert np.percentile(_ptv_dose(plan), 5) == pytest.approx(8.0, rel=0.01)
    iso = np.asarray(plan.info["isocenter_lps_mm"])[None, :]
    ap, pa = (phantom_engine.point_dose([b], iso)[0] for b in plan.beams)
    assert pa / ap == pytest.approx(2.0, rel=0.01)  # weights are isocentre-dose shares
    # Both fields project the same PTV; their areas differ by divergence only (within 15 %).
    a_ap, a_pa = (b.extra["aperture_area_mm2"] for b in plan.beams)
    assert a_pa == pytest.approx(a_ap, rel=0.15)


@pytest.mark.slow
def test_spec_file_builds_a_crt_plan(phantom, phantom_engine, tmp_path):
    path = tmp_path / "crt.toml"
    path.write_text(
        "[plan]\nname = 'spec CRT'\narm = 'CRT'\n"
        "[prescription]\ndose_gy = 20.0\nfractions = 5\n"
        "[beams]\ngantry_deg = [180.0]\n"
    )
    plan = plan_patient(phantom, path, engine=phantom_engine)
    assert plan.name == "spec CRT" and plan.info["spec_source"] == str(path)
    assert [b.name for b in plan.beams] == ["PA"]
    assert np.percentile(_ptv_dose(plan), 5) == pytest.approx(20.0, rel=0.01)
    assert plan.prescription.fractions == 5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("semi_axes_mm", "arrangement", "beams"),
    [
        # 120 mm thick: AP/PA entrance doses stay within the 2 % tie margin of the box.
        ((150.0, 60.0), "AP/PA", ["AP", "PA"]),
        # 200 mm thick: AP/PA puts entrance hot spots near 113 % of the PTV D95 (6 MV,
        # midplane depth 100 mm); the box keeps them near 103 %.
        ((150.0, 100.0), "four-field box", ["AP", "PA", "LLAT", "RLAT"]),
    ],
)
def test_central_target_in_water(semi_axes_mm, arrangement, beams):
    p = _water_patient((0.0, 0.0, 0.0), target_r=25.0, spacing=4.0, semi_axes_mm=semi_axes_mm)
    plan = build_crt_plan(p, dose_spacing_mm=4.0)
    assert plan.info["target_position"]["location"] == "central"
    assert plan.info["arrangement"] == arrangement
    assert [b.name for b in plan.beams] == beams
    # Symmetric phantom and target: AP and PA get equal weights and (nearly) equal MU.
    w = plan.info["weights"]
    assert w[0] == pytest.approx(w[1])
    mu_ap, mu_pa = (b.mu for b in plan.beams[:2])
    assert mu_ap == pytest.approx(mu_pa, rel=0.02)
    d = _ptv_dose(plan)
    assert np.percentile(d, 5) == pytest.approx(30.0, rel=0.01)
    assert np.percentile(d, 98) <= 1.07 * 30.0  # ICRU 50/62 107 % on the near-maximum D2%
    assert plan.dose.array.max() < 1.12 * 30.0


@pytest.mark.slow
def test_patient_without_a_body_outline_needs_gantry_angles():
    p = _water_patient((0.0, 0.0, 0.0), target_r=25.0, spacing=4.0, semi_axes_mm=(150.0, 60.0))
    no_body = Patient(p.ct, p.structures.without("External"))
    with pytest.raises(PlanningError, match="needs the body outline"):
        build_crt_plan(no_body, dose_spacing_mm=4.0)
    plan = build_crt_plan(no_body, gantry_deg=[0, 180], dose_spacing_mm=4.0)
    assert plan.info["target_position"] is None and plan.info["weights_source"] == "equal"
    assert np.percentile(_ptv_dose(plan), 5) == pytest.approx(30.0, rel=0.01)


def test_bad_input(phantom):
    with pytest.raises(PlanningError, match="no GTV named 'GTV2'"):
        build_crt_plan(phantom, "GTV2")
    with pytest.raises(PlanningError, match="weights need gantry_deg"):
        build_crt_plan(phantom, weights=[1, 1])
    with pytest.raises(PlanningError, match="gantry_deg is empty"):
        build_crt_plan(phantom, gantry_deg=[])
    with pytest.raises(PlanningError, match="one finite weight per field"):
        build_crt_plan(phantom, gantry_deg=[0, 180], weights=[1.0])
    with pytest.raises(PlanningError, match=">= 0 with a positive sum"):
        build_crt_plan(phantom, gantry_deg=[0, 180], weights=[1.0, -1.0])
    with pytest.raises(PlanningError, match="repeat"):
        build_crt_plan(phantom, gantry_deg=[0, 360])
    with pytest.raises(PlanningError, match="non-negative distance"):
        build_crt_plan(phantom, ptv_margin_mm=-2.0)
    with_ptv = Patient(
        phantom.ct,
        phantom.structures.with_structures(phantom.structures["GTV"].renamed("PTV", "PTV")),
    )
    with pytest.raises(PlanningError, match="already has a structure named 'PTV'"):
        build_crt_plan(with_ptv)
