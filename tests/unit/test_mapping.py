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
        "columns: {gender: sex, tnm: stage, dd: d_dimer}\n"
        "values: {sex: {M: male, F: female}, stage: {IIIA: III, IVB: IV}}\n"
        'units: {d_dimer: {"ng/mL FEU": "ng/mL{FEU}"}, platelets: 10*9/L}\n'
        "ignore: [mrn_hash]\n"
    )
    export = pd.DataFrame(
        BASE
        | {
            "gender": ["M", "F"],
            "tnm": ["IIIA", "IVB"],
            "dd": [{"value": 900, "unit": "ng/mL FEU"}, "0.4"],
            "platelets": ["250", "300"],
            "mrn_hash": ["a", "b"],
        }
    )
    report = validate_table(load_map(path).apply(export))
    assert report.ok and not report.notices  # mrn_hash is ignored: not even a notice
    assert list(report.columns["sex"]) == ["male", "female"]
    assert list(report.columns["stage"]) == ["III", "IV"]
    assert list(report.columns["d_dimer"]) == pytest.approx([0.9, 0.4])  # mg/L FEU


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"columns": {"tnm": "tnm_stage"}}, "columns.tnm: 'tnm_stage' is not a column"),
        ({"columns": {"a": "stage", "b": "stage"}}, "columns 'a' and 'b' both map to 'stage'"),
        ({"values": {"stage": {"IIIA": "3A"}}}, "values.stage.IIIA: '3A' is not accepted"),
        ({"values": {"age": {"x": 1}}}, "values.age: values are mapped for category"),
        ({"units": {"d_dimer": "ng/mL FEU"}}, "did you mean 'ng/mL{FEU}'?"),
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
