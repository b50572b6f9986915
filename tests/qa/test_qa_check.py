"""Checking doses with known answers against protocol constraints: outcomes, verdict, output."""

import csv
import io
import json

import numpy as np
import pytest

from lattice_plan.dose.beam import Beam, Jaws
from lattice_plan.errors import ProtocolError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume
from lattice_plan.planning.plan import Plan
from lattice_plan.planning.prescription import Prescription
from lattice_plan.qa.check import CSV_COLUMNS, Verdict, check
from lattice_plan.qa.protocol import Outcome, parse_protocol

# 10 mm voxels: every voxel is exactly 1 cc, so volumes are voxel counts.
GRID = Grid(shape=(4, 6, 6), spacing_mm=(10.0, 10.0, 10.0))
HOT_GY, COLD_GY = 20.0, 4.0
N_OAR = 36  # voxels of "OAR": half at HOT_GY, half at COLD_GY


def _box(k, j, i):
    m = np.zeros(GRID.shape, bool)
    m[k[0] : k[1], j[0] : j[1], i[0] : i[1]] = True
    return m


def _dose():
    """HOT_GY in columns i < 3, COLD_GY elsewhere (Gy for the whole course)."""
    d = np.full(GRID.shape, COLD_GY)
    d[:, :, :3] = HOT_GY
    return Volume(d, GRID, "Gy")


def _structures():
    oar = _box((1, 3), (1, 4), (0, 6))  # 2 x 3 x 6 = 36 voxels, 18 hot, 18 cold
    assert oar.sum() == N_OAR and oar[:, :, :3].sum() == N_OAR // 2
    return StructureSet.from_structures(
        [
            Structure("BODY", np.ones(GRID.shape, bool), GRID, StructureKind.EXTERNAL),
            Structure("Spinal Cord", oar, GRID),  # matched to SpinalCord by TG-263 key
            Structure("Kidney_L", _box((0, 1), (0, 2), (0, 2)), GRID),  # 4 hot voxels
            Structure("Kidney_R", _box((0, 1), (0, 2), (4, 6)), GRID),  # 4 cold voxels
        ]
    )


# metric, exact value (unit of the limit), unit written in the limit, why the value is known.
# Voxels are 1 cc and the DVH samples each voxel once (subdivisions=1), so the sampled
# doses are exactly 18 x 20 Gy and 18 x 4 Gy.
KNOWN = [
    ("Dmax", HOT_GY, "Gy"),
    ("Dmin", COLD_GY, "Gy"),
    ("D0.035cc", HOT_GY, "Gy"),  # the hottest 0.035 cc lies in a 20 Gy voxel
    ("Dmean", (HOT_GY + COLD_GY) / 2, "Gy"),
    ("V10Gy[cc]", N_OAR / 2, "cc"),  # 18 voxels of 1 cc above 10 Gy
    ("V10Gy", 50.0, "%"),
    ("CV10Gy[cc]", N_OAR / 2, "cc"),  # critical volume: 18 cc below 10 Gy
    ("Dmax[cGy]", HOT_GY, "cGy"),  # judged in Gy whatever unit the limit is written in
    ("D0.035cc[%]", 100.0 * HOT_GY / 16.0, "%"),  # of the 16 Gy prescription
    # EQD2 = D (d + a/b) / (2 + a/b) with d = D / 5 fractions, a/b = 3 Gy (LQ model):
    ("EQD2:Dmax", HOT_GY * (HOT_GY / 5 + 3) / (2 + 3), "Gy"),
    ("EQD2:V25Gy[cc]", N_OAR / 2, "cc"),  # 20 Gy -> 28 Gy EQD2 (above); 4 Gy -> 3.04 (below)
    # BED = D (1 + d / (a/b))
    ("BED:Dmax", HOT_GY * (1 + HOT_GY / 5 / 3), "Gy"),
]

# (comparison, limit factor, acceptable factor or None, expected outcome): "exactly at",
# "just under" and "just over" the limit (0.1 %) for upper and lower bounds.
E = 1e-3
CASES = [
    ("<=", 1.0, None, Outcome.PER_PROTOCOL),  # exactly at
    ("<=", 1 + E, None, Outcome.PER_PROTOCOL),  # just under
    ("<=", 1 - E, 1 + E, Outcome.MINOR_DEVIATION),  # just over, within acceptable
    ("<=", 1 - E, 1.0, Outcome.MINOR_DEVIATION),  # exactly at the acceptable limit
    ("<=", 1 - 2 * E, 1 - E, Outcome.MAJOR_DEVIATION),  # beyond the acceptable limit
    ("<=", 1 - E, None, Outcome.MAJOR_DEVIATION),  # over, no acceptable limit
    ("<", 1.0, 1 + E, Outcome.MINOR_DEVIATION),  # exactly at a strict limit fails it
    (">=", 1.0, None, Outcome.PER_PROTOCOL),
    (">=", 1 - E, None, Outcome.PER_PROTOCOL),
    (">=", 1 + E, 1 - E, Outcome.MINOR_DEVIATION),
    (">", 1.0, 1 - E, Outcome.MINOR_DEVIATION),
    (">", 1 + 2 * E, 1 + E, Outcome.MAJOR_DEVIATION),
    (">=", 1 + E, 1.0, Outcome.MINOR_DEVIATION),  # exactly at the acceptable lower limit
    # Within AT_LIMIT_RTOL (1e-9 relative) of a strict limit the value counts as at it (volumes
    # summed from voxels carry that much floating-point noise): 5e-10 under "<" fails it, 1e-7
    # under passes; likewise above ">".
    ("<", 1 + 5e-10, 1 + E, Outcome.MINOR_DEVIATION),
    ("<", 1 + 1e-7, None, Outcome.PER_PROTOCOL),
    (">", 1 - 5e-10, 1 - E, Outcome.MINOR_DEVIATION),
    (">", 1 - 1e-7, None, Outcome.PER_PROTOCOL),
]


def _quantity(value, unit):
    if unit == "cGy":
        return f"{value * 100:.12g} cGy"
    return f"{value:.12g} {unit}"


def _known_protocol():
    lines = [
        '[protocol]\nname = "Known"\nversion = "1"\n',
        '[arms.Test]\nfractions = 5\nprescriptions = [{ target = "PTV", dose = "16 Gy" }]\n',
    ]
    expected = []
    for metric, value, unit in KNOWN:
        for comparison, f_limit, f_acc, outcome in CASES:
            block = [
                "[[arms.Test.constraints]]",
                'structure = "SpinalCord"',
                f'metric = "{metric}"',
                f'comparison = "{comparison}"',
                f'limit = "{_quantity(value * f_limit, unit)}"',
            ]
            if f_acc is not None:
                block.append(f'acceptable = "{_quantity(value * f_acc, unit)}"')
            if metric.startswith(("EQD2", "BED")):
                block.append('alpha_beta = "3 Gy"')
            lines.append("\n".join(block) + "\n")
            expected.append((metric, value, comparison, f_limit, f_acc, outcome))
    return parse_protocol("\n".join(lines), "known.toml"), expected


def test_every_metric_kind_at_just_under_and_just_over_its_limit():
    protocol, expected = _known_protocol()
    result = check(_dose(), _structures(), protocol, "Test", subdivisions=1)
    assert len(result.rows) == len(expected)
    for row, (metric, value, comparison, f_limit, f_acc, outcome) in zip(
        result.rows, expected, strict=True
    ):
        case = f"{metric} {comparison} {f_limit} (acceptable {f_acc})"
        assert row.metric == metric and row.plan_structure == "Spinal Cord"
        assert row.value == pytest.approx(value, rel=1e-9), case
        assert row.outcome is outcome, f"{case}: got {row.outcome.value} for {row.value}"
    assert result.verdict is Verdict.MAJOR_DEVIATION


PROTOCOL = """\
[protocol]
name = "Small"
version = "1"

[structures.Kidneys]
union_of = ["Kidney_L", "Kidney_R"]
[structures.Kidney_L]
[structures.Kidney_R]
[structures.SpinalCord]
synonyms = ["Cord"]

[arms.A]
fractions = 1
prescriptions = [{ target = "PTV", dose = "16 Gy" }]

[[arms.A.constraints]]
structure = "SpinalCord"
metric = "Dmax"
comparison = "<="
limit = "25 Gy"
source = "test"

[[arms.A.constraints]]
structure = "Kidneys"
metric = "Dmean"
comparison = "<="
limit = "12 Gy"

[[arms.A.constraints]]
structure = "Esophagus"
metric = "Dmax"
comparison = "<="
limit = "15 Gy"
required = REQUIRED
"""


def test_missing_structure_is_not_evaluated_and_never_passes():
    required = parse_protocol(PROTOCOL.replace("REQUIRED", "true"))
    result = check(_dose(), _structures(), required, "A", subdivisions=1)
    row = result.rows[2]
    assert row.outcome is Outcome.NOT_EVALUATED and row.value is None
    assert "no structure 'Esophagus'" in row.note
    assert result.verdict is Verdict.INCOMPLETE
    optional = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    result = check(_dose(), _structures(), optional, "A", subdivisions=1)
    assert result.rows[2].outcome is Outcome.NOT_EVALUATED
    assert result.verdict is Verdict.PER_PROTOCOL  # an optional organ the patient lacks


def test_union_structure_built_from_its_parts():
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    row = check(_dose(), _structures(), protocol, "A", subdivisions=1).rows[1]
    # 4 voxels at 20 Gy (Kidney_L) and 4 at 4 Gy (Kidney_R): mean 12 Gy, exactly at the limit.
    assert row.plan_structure == "Kidney_L + Kidney_R"
    assert row.value == pytest.approx(12.0, rel=1e-12)
    assert row.outcome is Outcome.PER_PROTOCOL
    # a plan with a Kidneys structure of its own uses that instead of the union
    ss = _structures()
    kidneys = ss.get("Kidney_R").with_mask(ss.get("Kidney_R").mask, name="KIDNEYS")
    row = check(_dose(), ss.with_structures(kidneys), protocol, "A", subdivisions=1).rows[1]
    assert row.plan_structure == "KIDNEYS" and row.value == pytest.approx(COLD_GY)


def test_union_with_a_missing_part_is_not_evaluated():
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    row = check(_dose(), _structures().without("Kidney_R"), protocol, "A").rows[1]
    assert row.outcome is Outcome.NOT_EVALUATED and "lacks 'Kidney_R'" in row.note


def test_synonym_matching_two_plan_structures_is_an_error():
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    ss = _structures()
    mask = ss.get("Spinal Cord").mask
    two = ss.without("Spinal Cord").with_structures(
        Structure("SpinalCord", mask, GRID), Structure("Cord", mask, GRID)
    )
    with pytest.raises(ProtocolError, match=r"several plan structures \('SpinalCord', 'Cord'\)"):
        check(_dose(), two, protocol, "A")


def test_structure_outside_the_dose_grid_is_not_evaluated():
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    # The dose covers slices k = 2..3 only; the cord (k = 1..2) is half outside it.
    small = GRID.crop((2, 0, 0), GRID.shape)
    dose = Volume(_dose().array[2:], small, "Gy")
    row = check(dose, _structures(), protocol, "A").rows[0]
    assert row.outcome is Outcome.NOT_EVALUATED
    assert "outside the dose grid" in row.note
    # judged on the covered half (slice k = 2: 6 voxels at 20 Gy, 6 at 4 Gy) when allowed
    row = check(dose, _structures(), protocol, "A", subdivisions=1, allow_partial=True).rows[0]
    assert row.value == pytest.approx(HOT_GY) and row.outcome is Outcome.PER_PROTOCOL
    assert row.note.endswith(
        "judged on the part inside the dose grid only (50.0 % of it lies outside the dose grid)"
    )


def test_structures_cut_by_the_dose_grid_are_not_evaluated_unless_partial_is_allowed():
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    cut = "3 of its 40 contour points lie outside the dose grid"
    result = check(
        _dose(), _structures(), protocol, "A", subdivisions=1, unusable={"spinal cord": cut}
    )
    row = result.rows[0]
    assert row.plan_structure == "Spinal Cord" and row.outcome is Outcome.NOT_EVALUATED
    assert cut in row.note and result.verdict is Verdict.INCOMPLETE
    # a union is not built from a part that cannot be evaluated
    result = check(_dose(), _structures(), protocol, "A", unusable={"Kidney_R": cut})
    assert result.rows[1].outcome is Outcome.NOT_EVALUATED
    assert "union part 'Kidney_R' is not evaluable" in result.rows[1].note
    # allowed: judged on what is there, and said so
    result = check(
        _dose(),
        _structures(),
        protocol,
        "A",
        subdivisions=1,
        unusable={"spinal cord": cut, "kidney_r": cut},
        allow_partial=True,
    )
    assert result.rows[0].value == pytest.approx(HOT_GY)
    assert result.rows[0].note.endswith(f"judged on the part inside the dose grid only ({cut})")
    assert result.rows[1].value == pytest.approx(12.0)
    assert f"Kidney_R: judged on the part inside the dose grid only ({cut})" in result.rows[1].note


def test_fractions_differing_from_the_arm_is_a_major_deviation_and_feed_eqd2():
    protocol = parse_protocol(
        PROTOCOL.replace("REQUIRED", "false").replace(
            'metric = "Dmax"\ncomparison = "<="\nlimit = "25 Gy"',
            'metric = "EQD2:Dmax"\nalpha_beta = "2 Gy"\ncomparison = "<="\nlimit = "100 Gy"',
        )
    )
    at_arm = check(_dose(), _structures(), protocol, "A", subdivisions=1)
    assert at_arm.fractions == 1 and at_arm.fractions_match
    # 20 Gy in 1 fraction, a/b 2: EQD2 = 20 (20 + 2) / 4 = 110 Gy; in 10: 20 (2 + 2) / 4 = 20 Gy
    assert at_arm.rows[0].value == pytest.approx(110.0)
    assert at_arm.rows[0].outcome is Outcome.MAJOR_DEVIATION
    ten = check(_dose(), _structures(), protocol, "A", fractions=10, subdivisions=1)
    assert ten.rows[0].value == pytest.approx(20.0)
    assert ten.rows[0].outcome is Outcome.PER_PROTOCOL
    assert not ten.fractions_match and ten.verdict is Verdict.MAJOR_DEVIATION


def test_plan_object_gives_dose_structures_and_fractions():
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    beam = Beam("G0", 0.0, (0.0, 0.0, 0.0), Jaws.symmetric(100, 100))
    plan = Plan("crt", "CRT", Prescription(4.0, 4, "BODY"), (beam,), _structures(), dose=_dose())
    result = check(plan, None, protocol, "A", subdivisions=1)
    assert result.plan == "crt" and result.fractions == 4 and not result.fractions_match
    assert result.rows[0].value == pytest.approx(HOT_GY)


def test_bad_inputs():
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "false"))
    with pytest.raises(ProtocolError, match="no arm 'B'"):
        check(_dose(), _structures(), protocol, "B")
    with pytest.raises(ProtocolError, match="dose in Gy"):
        check(Volume(_dose().array, GRID, "1"), _structures(), protocol, "A")
    with pytest.raises(ProtocolError, match="StructureSet"):
        check(_dose(), None, protocol, "A")
    with pytest.raises(ProtocolError, match="fractions"):
        check(_dose(), _structures(), protocol, "A", fractions=0)


def test_json_and_csv_outputs(tmp_path):
    protocol = parse_protocol(PROTOCOL.replace("REQUIRED", "true"))
    result = check(_dose(), _structures(), protocol, "A", subdivisions=1)
    jpath = result.write_json(tmp_path / "qa.json")
    cpath = result.write_csv(tmp_path / "qa.csv")
    data = json.loads(jpath.read_text())
    assert data["verdict"] == "incomplete" and data["arm"] == "A" and data["fractions"] == 1
    assert data["counts"] == {
        "per protocol": 2,
        "minor deviation": 0,
        "major deviation": 0,
        "not evaluated": 1,
    }
    assert data["rows"][0]["value"] == pytest.approx(HOT_GY)
    assert data["rows"][2]["value"] is None
    rows = list(csv.DictReader(io.StringIO(cpath.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["outcome"] for r in rows] == ["per protocol", "per protocol", "not evaluated"]
    assert float(rows[1]["value"]) == pytest.approx(12.0) and rows[2]["value"] == ""
    assert rows[0]["plan_structure"] == "Spinal Cord" and rows[0]["source"] == "test"
    assert not list(tmp_path.glob("*.part"))
    shown = result.display_rows()
    assert shown[0] == {
        "structure": "SpinalCord [Spinal Cord]",
        "constraint": "Dmax <= 25 Gy",
        "value": "20 Gy",
        "outcome": "per protocol",
        "source / reason": "test",
    }
    assert shown[2]["value"] == "-" and "no structure 'Esophagus'" in shown[2]["source / reason"]
    text = result.format_table()
    assert text.splitlines()[-1] == "verdict: incomplete"
    assert "Spinal Cord" in text and "no structure 'Esophagus'" in text


PVDR_PROTOCOL = """\
[protocol]
name = "PVDR"
version = "1"

[arms.SFRT]
fractions = 5
prescriptions = [{ target = "Vertices", dose = "20 Gy" }]

[[arms.SFRT.constraints]]
structure = "Vertices"
metric = "PVDR[mean]"
valley = "Valley"
comparison = ">="
limit = "5"

[[arms.SFRT.constraints]]
structure = "Vertices"
metric = "PVDR[point]"
valley = "Valley"
comparison = ">="
limit = "5.01"
acceptable = "4.99"

[[arms.SFRT.constraints]]
structure = "Vertices"
metric = "EQD2:PVDR[mean]"
alpha_beta = "3 Gy"
valley = "Valley"
comparison = ">"
limit = "9.3"
acceptable = "9.25"

[[arms.SFRT.constraints]]
structure = "GTV"
metric = "PVDR"
comparison = ">="
limit = "4.9"
"""


def _sfrt_structures(structures=None):
    ss = structures or _structures()
    gtv = ss.get("Spinal Cord").mask
    hot = np.zeros(GRID.shape, bool)
    hot[:, :, :3] = True
    return ss.with_structures(
        Structure("GTV", gtv, GRID, StructureKind.GTV),
        Structure("Vertices", gtv & hot, GRID, StructureKind.VERTEX),
        Structure("Valley", gtv & ~hot, GRID, StructureKind.VALLEY),
    )


def test_pvdr_variants_on_a_dose_of_p_in_the_vertices_and_v_in_the_valley():
    from lattice_plan.analysis.dvh import DVH

    protocol = parse_protocol(PVDR_PROTOCOL, "pvdr.toml")
    ss = _sfrt_structures()
    result = check(_dose(), ss, protocol, "SFRT", subdivisions=1)
    mean, point, eqd2, d10_d90 = result.rows
    # P = 20 Gy in every vertex voxel, V = 4 Gy in every valley voxel: PVDR = P / V = 5
    assert mean.value == pytest.approx(HOT_GY / COLD_GY, rel=1e-12)
    assert mean.plan_structure == "Vertices / Valley" and mean.outcome is Outcome.PER_PROTOCOL
    assert point.value == pytest.approx(5.0, rel=1e-12)
    assert point.outcome is Outcome.MINOR_DEVIATION  # just under 5.01, above 4.99
    # EQD2 (5 fractions, a/b 3 Gy): 20 Gy -> 20 (4 + 3) / 5 = 28 Gy; 4 Gy -> 4 (0.8 + 3) / 5
    assert eqd2.value == pytest.approx(28.0 / 3.04, rel=1e-12)  # 9.2105: below 9.25
    assert eqd2.outcome is Outcome.MAJOR_DEVIATION
    # GTV D10/D90 from the analysis module's DVH (0.01 Gy bins put D90 within 0.01 Gy of
    # 4 Gy, so the ratio is within 0.3 % of 20 / 4)
    gtv = DVH.from_dose(_dose(), ss.get("GTV"), subdivisions=1)
    expected = gtv.metric("D10%") / gtv.metric("D90%")
    assert d10_d90.value == pytest.approx(expected, rel=1e-12)
    assert d10_d90.value == pytest.approx(5.0, rel=3e-3)
    assert d10_d90.outcome is Outcome.PER_PROTOCOL


def test_pvdr_without_a_valley_dose_or_structure_is_not_evaluated():
    protocol = parse_protocol(PVDR_PROTOCOL, "pvdr.toml")
    zero_valley = Volume(np.where(_dose().array > 10, HOT_GY, 0.0), GRID, "Gy")
    row = check(zero_valley, _sfrt_structures(), protocol, "SFRT", subdivisions=1).rows[0]
    assert row.outcome is Outcome.NOT_EVALUATED and "Valley mean dose is 0 Gy" in row.note
    row = check(_dose(), _sfrt_structures().without("Valley"), protocol, "SFRT").rows[1]
    assert row.outcome is Outcome.NOT_EVALUATED
    assert row.note.startswith("valley: the plan has no structure 'Valley'")


def test_profile_pvdr_between_vertex_centres():
    # A row of 10 mm voxels: vertices (20 Gy) at i = 1 and i = 9, 4 Gy between them. Along
    # the line joining the two centres the dose is 20 Gy at both ends and 4 Gy at its
    # minimum, so the profile PVDR is (20 + 20) / 2 / 4 = 5 (analysis.sfrt definition).
    grid = Grid(shape=(1, 1, 11), spacing_mm=(10.0, 10.0, 10.0))
    dose = np.full(grid.shape, COLD_GY)
    vertices = np.zeros(grid.shape, bool)
    vertices[0, 0, [1, 9]] = True
    dose[vertices] = HOT_GY
    ss = StructureSet.from_structures([Structure("Vertices", vertices, grid, StructureKind.VERTEX)])
    text = PVDR_PROTOCOL.replace(
        'metric = "PVDR[mean]"\nvalley = "Valley"', 'metric = "PVDR[profile]"'
    )
    protocol = parse_protocol(text, "pvdr.toml")
    row = check(Volume(dose, grid, "Gy"), ss, protocol, "SFRT").rows[0]
    assert row.metric == "PVDR[profile]"
    assert row.value == pytest.approx(HOT_GY / COLD_GY, rel=1e-12)
    assert row.outcome is Outcome.PER_PROTOCOL and "between 2 vertex centres" in row.note
    one = vertices.copy()
    one[0, 0, 9] = False
    ss = StructureSet.from_structures([Structure("Vertices", one, grid, StructureKind.VERTEX)])
    row = check(Volume(dose, grid, "Gy"), ss, protocol, "SFRT").rows[0]
    assert row.outcome is Outcome.NOT_EVALUATED and "needs two or more" in row.note
