"""Plan comparison table: values, differences from the CRT column, EQD2 rows, JSON and CSV."""

import csv
import io
import json

import numpy as np
import pytest

from lattice_plan.analysis.comparison import PlanDose, compare_plans, standard_metrics
from lattice_plan.errors import AnalysisError
from lattice_plan.geometry import Grid, Structure, StructureKind, Volume

G = Grid((10, 10, 10), (2.0, 2.0, 2.0))
GTV = np.zeros(G.shape, bool)
GTV[2:6, 2:6, 2:6] = True
CORD = np.zeros(G.shape, bool)
CORD[:, 8, 8] = True


def _plans():
    def uniform(gtv_gy, cord_gy):
        # Each structure's dose extends one voxel beyond it, so trilinear sub-voxel samples
        # inside the structure see only that dose.
        a = np.full(G.shape, 1.0)
        a[1:7, 1:7, 1:7] = gtv_gy
        a[:, 7:10, 7:10] = cord_gy
        return Volume(a, G, "Gy")

    return [
        PlanDose("CRT", uniform(8.0, 6.0), 1, 8.0),
        PlanDose("SFRT", uniform(15.0, 4.0), 1, 15.0),
        PlanDose("SCART", uniform(30.0, 9.0), 5, 30.0),
    ]


STRUCTS = [
    Structure("GTV", GTV, G, StructureKind.GTV),
    Structure("SpinalCord", CORD, G, StructureKind.OAR),
]


def test_values_and_differences_with_eqd2():
    """Uniform doses; EQD2 = D (D/n + a/b) / (2 + a/b): GTV a/b 10, cord a/b 2 (defaults).

    CRT GTV 8 Gy x1 -> 12.0 Gy; SCART GTV 30 Gy/5 -> 30 * 16 / 12 = 40.0 Gy;
    SCART cord 9 Gy/5 -> 9 * 3.8 / 4 = 8.55 Gy; SFRT cord 4 Gy x1 -> 4 * 6 / 4 = 6.0 Gy.
    """
    table = compare_plans(
        _plans(), STRUCTS, {"GTV": ["Dmean", "EQD2:Dmean", "V95%"], "SpinalCord": ["EQD2:Dmax"]}
    )
    assert table.plan_names == ("CRT", "SFRT", "SCART")
    assert table.value("GTV", "EQD2:Dmean", "CRT") == pytest.approx(12.0)
    assert table.value("GTV", "EQD2:Dmean", "SCART") == pytest.approx(40.0)
    assert table.value("SpinalCord", "EQD2:Dmax", "SCART") == pytest.approx(8.55)
    assert table.value("SpinalCord", "EQD2:Dmax", "SFRT") == pytest.approx(6.0)
    row = next(r for r in table.rows if r.metric == "Dmean")
    assert row.unit == "Gy"
    assert row.differences == pytest.approx((0.0, 7.0, 22.0))
    assert table.value("GTV", "V95%", "SFRT") == pytest.approx(100.0)  # each plan's own Rx

    data = json.loads(table.to_json())
    assert data["reference"] == "CRT"
    first = data["rows"][0]
    assert first["values"]["SCART"] == pytest.approx(30.0)
    assert first["difference_from_reference"] == pytest.approx({"SFRT": 7.0, "SCART": 22.0})
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert rows[0] == [
        "structure",
        "metric",
        "unit",
        "CRT",
        "SFRT",
        "SCART",
        "SFRT - CRT",
        "SCART - CRT",
    ]
    assert rows[1][:3] == ["GTV", "Dmean", "Gy"] and float(rows[1][7]) == pytest.approx(22.0)
    assert table.as_mapping()["GTV Dmean [Gy]"]["SFRT"] == pytest.approx(15.0)


def test_default_metrics_and_files(tmp_path):
    table = compare_plans(_plans(), STRUCTS, reference="CRT", alpha_beta_gy={"spinalcord": 3.0})
    assert [r.metric for r in table.rows if r.structure == "GTV"] == list(
        standard_metrics(STRUCTS[0])
    )
    # a/b 3 for the cord by request: SFRT 4 Gy x1 -> 4 * 7 / 5 = 5.6 Gy.
    assert table.value("SpinalCord", "EQD2:D0.03cc", "SFRT") == pytest.approx(5.6)
    table.to_json(tmp_path / "cmp.json")
    table.to_csv(tmp_path / "cmp.csv")
    assert json.loads((tmp_path / "cmp.json").read_text())["plans"] == ["CRT", "SFRT", "SCART"]
    assert (tmp_path / "cmp.csv").read_text().startswith("structure,metric,unit,CRT")


def test_bad_requests():
    plans = _plans()
    with pytest.raises(AnalysisError, match="reference plan 'IMRT'"):
        compare_plans(plans, STRUCTS, ["Dmean"], reference="IMRT")
    with pytest.raises(AnalysisError, match="unique"):
        compare_plans([plans[0], plans[0]], STRUCTS, ["Dmean"])
    with pytest.raises(AnalysisError, match="Lung"):
        compare_plans(plans, STRUCTS, {"Lung": ["Dmean"]})
    with pytest.raises(AnalysisError, match="Vabc"):
        compare_plans(plans, STRUCTS, ["Vabc"])
    with pytest.raises(AnalysisError, match="n_fractions"):
        PlanDose("X", plans[0].dose, 0)
