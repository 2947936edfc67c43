"""The column map and what a table is told (issue 21), without a model."""

from __future__ import annotations

import pandas as pd
import pytest

from features.mapping import ColumnMap, MapError, load_map
from features.table import validate_table
from features.units import factor

BASE = {"age": ["67", "70"], "histology": ["adenocarcinoma", "squamous_cell"]}


def test_a_map_reads_an_export_as_the_contract(tmp_path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(
        "columns: {gender: sex, tnm: stage, dd: d_dimer, hb: hemoglobin, hb_unit: hemoglobin_unit}\n"
        "values: {sex: {M: male, F: female}, stage: {IIIA: III, IVB: IV}}\n"
        'units: {d_dimer: {"ng/mL FEU": "ng/mL{FEU}"}, hemoglobin: g/dL}\n'
        "ignore: [mrn_hash]\n"
    )
    export = pd.DataFrame(
        BASE
        | {
            "gender": ["M", "F"],
            "tnm": ["IIIA", "IVB"],
            "dd": [{"value": 900, "unit": "ng/mL FEU"}, "0.4"],
            "hb": ["12.5", "130"],
            "hb_unit": [None, "g/L"],  # a blank cell takes the map's unit, not the canonical
            "mrn_hash": ["a", "b"],
        }
    )
    report = validate_table(load_map(path).apply(export))
    assert report.ok and not report.notices  # mrn_hash is ignored: not even a notice
    assert list(report.columns["sex"]) == ["male", "female"]
    assert list(report.columns["stage"]) == ["III", "IV"]
    assert list(report.columns["d_dimer"]) == pytest.approx([0.9, 0.4])  # mg/L FEU
    assert list(report.columns["hemoglobin"]) == pytest.approx([125, 130])  # g/L


def test_a_mapped_table_and_the_contract_table_read_the_same() -> None:
    """A model trained with a map scores validated tables too: a fixed unit belongs to the
    export's own column, never to a column already named as in the contract."""
    cmap = ColumnMap.from_dict({"columns": {"hb": "hemoglobin"}, "units": {"hemoglobin": "g/dL"}})
    canonical = pd.DataFrame(
        BASE | {"sex": ["male"] * 2, "stage": ["I"] * 2, "hemoglobin": ["125", "130"]}
    )
    export = canonical.rename(columns={"hemoglobin": "hb"}).assign(hb=["12.5", "13"])
    for table in (canonical, export):
        report = validate_table(cmap.apply(table))
        assert report.ok and list(report.columns["hemoglobin"]) == pytest.approx([125, 130])


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"columns": {"tnm": "tnm_stage"}}, "columns.tnm: 'tnm_stage' is not a column"),
        ({"columns": {"a": "stage", "b": "stage"}}, "columns 'a' and 'b' both map to 'stage'"),
        ({"values": {"stage": {"IIIA": "3A"}}}, "values.stage.IIIA: '3A' is not accepted"),
        ({"values": {"age": {"x": 1}}}, "values.age: values are mapped for category"),
        (
            {"columns": {"dd": "d_dimer"}, "units": {"d_dimer": "ng/mL FEU"}},
            "did you mean 'ng/mL{FEU}'?",
        ),
        ({"units": {"hemoglobin": "g/dL"}}, "needs the export's own name for the column"),
        ({"values": {"chemotherapy": {True: True}}}, "quote the code as the export writes it"),
        ({"ignore": "mrn"}, "ignore: give a list of column names"),
        ({"columns": {"a": "stage"}, "ignore": ["a"]}, "'a' is both mapped"),
        ({"units": {"age": "a"}}, "units.age: units are given for labs"),
        ({"colums": {}}, "'colums' is not a section"),
    ],
)
def test_a_wrong_map_is_refused_naming_the_entry(doc, named) -> None:
    with pytest.raises(MapError, match=named.replace("(", r"\(").replace("?", r"\?")):
        ColumnMap.from_dict(doc)


def test_a_column_named_twice_by_the_table_and_the_map_is_refused() -> None:
    cmap = ColumnMap.from_dict({"columns": {"tnm": "stage"}})
    with pytest.raises(MapError, match="both 'stage' and 'tnm'"):
        cmap.apply(pd.DataFrame(BASE | {"stage": ["I", "II"], "tnm": ["I", "II"]}))


@pytest.mark.parametrize(
    "name", ["d_dimmer", "D_Dimer", "d-dimer", "D_DIMER_UNIT", "creatinine_units"]
)
def test_a_contract_column_spelt_otherwise_is_never_silently_unread(name) -> None:
    table = pd.DataFrame(BASE | {"sex": ["male"] * 2, "stage": ["I"] * 2, name: ["1", "2"]})
    report = validate_table(table)
    assert not report.ok and report.n_bad == 2 and not report.notices
    assert "did you mean" in report.issues[0].message


def test_only_the_records_own_unit_dict_is_split() -> None:
    table = pd.DataFrame(
        BASE
        | {
            "sex": ["male"] * 2,
            "stage": ["I"] * 2,
            "d_dimer": [{"Value": 1.2, "Unit": "mg/L{FEU}"}, {"value": 800, "unit": None}],
            "d_dimer_unit": [None, "ng/mL{FEU}"],
        }
    )
    report = validate_table(table)
    assert report.bad.tolist() == [True, False]  # a foreign dict is refused, not unknown
    assert report.columns["d_dimer"][1] == pytest.approx(0.8)  # no unit: the column's


def test_columns_not_in_the_contract_are_a_notice_and_misspelt_ones_an_error() -> None:
    table = pd.DataFrame(
        BASE | {"sex": ["male"] * 2, "stage": ["I"] * 2, "ward": ["7", "8"], "mrn": ["a", "b"]}
    )
    report = validate_table(table)
    assert report.ok and report.n_bad == 0
    assert report.notices[0].message.startswith("2 columns not in the data contract are not read")
    report = validate_table(table.assign(d_dimmer=["1", "2"]))
    assert report.n_bad == 2
    assert "did you mean 'd_dimer'?" in report.issues[0].message


def test_what_a_table_is_told_about_blank_outcomes_ddu_and_unit_spellings() -> None:
    table = pd.DataFrame(
        BASE
        | {
            "sex": ["male"] * 2,
            "stage": ["I"] * 2,
            "pe_event": ["1", None],
            "d_dimer": ["800", "900"],
            "d_dimer_unit": ["ng/mL{DDU}", "ng/mL{FEU}"],
        }
    )
    report = validate_table(table)
    assert [i.message for i in report.issues] == [
        "pe_event is blank; give 0 or 1 (a row whose outcome is not known cannot train: "
        "leave it out, or give the time-to-event columns)"
    ]
    assert report.notices[0].message.startswith("1 d_dimer value was given in DDU")
    assert list(report.columns["d_dimer"]) == pytest.approx([1.6, 0.9])
    with pytest.raises(ValueError, match=r"did you mean 'ng/mL\{FEU\}'\?"):
        factor("d_dimer", "ng/ml (FEU)")
