"""Table ingestion: every bad row reported, same rules and messages as the JSON path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.records import RecordError, parse_record
from features.table import read_table, validate_table
from tests.conftest import base_record
from training.cli import app

MIXED = """patient_id,age,sex,histology,stage,d_dimer,d_dimer_unit,chemotherapy,hemoglobin,ecog,pe_event
a1,70,male,adenocarcinoma,IV,850,ng/mL{FEU},true,121,1,0
a2,17,female,adenocarcinoma,III,1.2,,maybe,130,2,1
a3,65,male,adeno,3,850,,false,12,2.5,0
a4,60,female,squamous_cell,II,2,mg/L,1,140,,2
a5,,male,small_cell,IV,0.4,,0,150,0,0
a6,66,female,other,I,0.3,,0,,,1
"""


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED, encoding="utf-8")
    return path


def test_every_bad_row_and_field_is_reported(mixed_csv: Path) -> None:
    report = validate_table(read_table(mixed_csv))
    got = {(i.row, i.field, i.rule) for i in report.issues}
    assert got == {
        (2, "age", "range"),
        (2, "chemotherapy", "type"),
        (3, "histology", "choice"),
        (3, "stage", "choice"),
        (3, "d_dimer", "range"),
        (3, "hemoglobin", "range"),
        (3, "ecog", "type"),
        (4, "d_dimer", "unit"),
        (4, "pe_event", "outcome"),
        (5, "age", "required"),
    }
    assert report.bad.tolist() == [False, True, True, True, True, False]
    assert report.columns["d_dimer"][0] == pytest.approx(0.85)


def test_table_messages_match_the_json_path(mixed_csv: Path) -> None:
    report = validate_table(read_table(mixed_csv))
    table_msgs = {i.field: i.message for i in report.issues if i.row == 3}
    with pytest.raises(RecordError) as exc:
        parse_record(
            {
                "age": 65,
                "sex": "male",
                "histology": "adeno",
                "stage": "3",
                "d_dimer": 850,
                "hemoglobin": 12,
                "ecog": 2.5,
            }
        )
    json_msgs = {i.field: i.message for i in exc.value.issues}
    for field in ("histology", "stage", "d_dimer", "hemoglobin"):
        assert table_msgs[field] == json_msgs[field]


@pytest.mark.parametrize(
    "bad",
    [
        {"age": 111},
        {"sex": "F"},
        {"stage": "V"},
        {"platelets": 0.5},
        {"heart_rate": 251},
        {"ecog": 5},
        {"egfr_mutation": "maybe"},
        {"rv_lv_ratio": 0.1},
    ],
)
def test_one_row_table_rejects_what_the_record_rejects(bad: dict) -> None:
    raw = base_record(**bad)
    with pytest.raises(RecordError) as exc:
        parse_record(raw)
    json_fields = {i.field for i in exc.value.issues}
    report = validate_table(pd.DataFrame([raw]).astype(object))
    assert {i.field for i in report.issues} == json_fields


def test_unknown_and_missing_columns_are_table_level(tmp_path: Path) -> None:
    df = pd.DataFrame([{"age": 60, "sex": "male", "histology": "other", "d_dimmer": 1}])
    report = validate_table(df)
    table = {(i.field, i.rule) for i in report.issues if i.row is None}
    assert table == {("d_dimmer", "unknown_field"), ("stage", "required")}
    assert "did you mean 'd_dimer'" in next(
        i.message for i in report.issues if i.field == "d_dimmer"
    )
    assert report.bad.all()


def test_outcome_is_required_for_training() -> None:
    report = validate_table(pd.DataFrame([base_record()]), require_outcome=True)
    assert [(i.field, i.rule) for i in report.issues] == [("pe_event", "required")]
    assert "pe_days, death_days, followup_days" in report.issues[0].message


def test_parquet_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame([base_record(d_dimer=1.2, chemotherapy=True), base_record(chemotherapy=None)])
    df.to_parquet(tmp_path / "t.parquet")
    report = validate_table(read_table(tmp_path / "t.parquet"))
    assert report.ok
    assert report.columns["chemotherapy"][0] == 1.0 and np.isnan(report.columns["chemotherapy"][1])


def test_cli_validate_reports_and_exits_nonzero(mixed_csv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["validate", str(mixed_csv), "--report", str(tmp_path / "r.csv")])
    assert res.exit_code == 1
    assert "6 rows, 2 valid, 4 invalid, 10 issues" in res.output
    assert "row 3" in res.output and "did you mean 'III'" in res.output
    assert len((tmp_path / "r.csv").read_text().strip().splitlines()) == 11
    res = runner.invoke(
        app, ["validate", str(mixed_csv), "--drop-invalid", "--out", str(tmp_path / "ok.parquet")]
    )
    assert res.exit_code == 0, res.output
    clean = pd.read_parquet(tmp_path / "ok.parquet")
    assert len(clean) == 2 and clean["d_dimer"].tolist() == pytest.approx([0.85, 0.3])
    assert runner.invoke(app, ["validate", str(tmp_path / "ok.parquet")]).exit_code == 0


def test_cli_features_hint_names_the_command_that_drops_invalid_rows(
    mixed_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: `features` told the user to use --drop-invalid, a flag only `validate` has."""
    runner = CliRunner()
    res = runner.invoke(app, ["features", str(mixed_csv), "--out", str(tmp_path / "f.csv")])
    assert res.exit_code == 1
    assert "4 of 6 rows are invalid" in res.output
    hint = f"`pe-risk validate {mixed_csv} --drop-invalid --out valid.parquet`"
    assert hint in res.output and "for `pe-risk features valid.parquet`" in res.output
    assert runner.invoke(app, ["features", str(mixed_csv), "--drop-invalid"]).exit_code == 2
    monkeypatch.chdir(tmp_path)  # the hint, followed word for word, makes a table features reads
    args = hint.strip("`").split()[1:]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, ["features", "valid.parquet", "--out", "f.csv"])
    assert res.exit_code == 0 and "2 rows" in res.output, res.output


def test_cli_scores_and_spec(tmp_path: Path) -> None:
    record = tmp_path / "r.json"
    record.write_text(
        '{"age": 70, "sex": "male", "histology": "adenocarcinoma", "stage": "IV", "platelets": 400}'
    )
    runner = CliRunner()
    res = runner.invoke(app, ["scores", str(record)])
    assert res.exit_code == 0, res.output
    assert '"khorana"' in res.output and '"platelets_raised": 1.0' in res.output
    record.write_text(
        '{"age": 70, "sex": "male", "histology": "adenocarcinoma", "stage": "IV", "d_dimmer": 1}'
    )
    res = runner.invoke(app, ["scores", str(record)])
    assert res.exit_code == 1 and "did you mean 'd_dimer'" in res.output
    assert "surgery_recency" in runner.invoke(app, ["spec"]).output


def test_issue_lines_show_the_first_issues_and_count_the_rest() -> None:
    from features.table import RowIssue, issue_lines

    issues = [RowIssue(None, "x", None, "unknown", "x is unknown")] + [
        RowIssue(r, "age", 200, "range", f"age=200 in row {r}") for r in range(1, 5)
    ]
    lines = issue_lines(issues, limit=3, more=" (see the report)")
    assert lines == [
        "  table: x is unknown",
        "  row 1: age=200 in row 1",
        "  row 2: age=200 in row 2",
        "  … and 2 more (see the report)",
    ]


def _times_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**base_record(), **r} for r in rows])


def test_time_to_event_columns_are_read_as_days() -> None:
    report = validate_table(
        _times_table(
            [
                {"pe_days": 0, "death_days": None, "followup_days": 200},  # PE now
                {"pe_days": 40.0, "death_days": 90, "followup_days": 90},  # PE, then death
                {"pe_days": None, "death_days": None, "followup_days": "35"},  # lost at day 35
            ]
        ),
        require_outcome=True,
    )
    assert report.ok, report.issues
    np.testing.assert_array_equal(report.times["pe_days"], [0, 40, np.nan])
    np.testing.assert_array_equal(report.times["followup_days"], [200, 90, 35])
    assert report.outcome is None  # no pe_event: the times are the outcome


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"pe_days": -3, "followup_days": 100}, "pe_days", "pe_days=-3 is not accepted"),
        ({"pe_days": 120, "followup_days": 100}, "pe_days", "after the end of follow-up"),
        ({"death_days": 150, "followup_days": 100}, "death_days", "after the end of follow-up"),
        (
            {"pe_days": 80, "death_days": 50, "followup_days": 50},
            "pe_days",
            "pe_days=80 is after death (death_days=50)",
        ),
        (
            {"death_days": 50, "followup_days": 300},
            "followup_days",
            "give followup_days=50",
        ),
        ({"pe_days": 10, "followup_days": None}, "followup_days", "followup_days=null"),
        ({"pe_days": "soon", "followup_days": 10}, "pe_days", 'pe_days="soon"'),
        (
            {"pe_event": 1, "pe_days": 300, "followup_days": 365},
            "pe_days",
            "pe_event=1 but pe_days=300 is not within 180 days",
        ),
        (
            {"pe_event": 0, "pe_days": 20, "followup_days": 365},
            "pe_days",
            "pe_event=0 but pe_days=20",
        ),
    ],
)
def test_time_to_event_rules_name_the_row_field_and_rule(row: dict, field: str, words: str) -> None:
    good = {"pe_days": None, "death_days": None, "followup_days": 365}
    good |= {"pe_event": 0} if "pe_event" in row else {}
    report = validate_table(_times_table([good, {**good, **row}]), require_outcome=True)
    assert [(i.row, i.field) for i in report.issues] == [(2, field)], report.issues
    assert words in report.issues[0].message
    assert report.bad.tolist() == [False, True]


def test_times_without_followup_are_a_table_error() -> None:
    report = validate_table(_times_table([{"pe_days": 3}]), require_outcome=True)
    assert [(i.row, i.field, i.rule) for i in report.issues] == [
        (None, "followup_days", "required")
    ]
    assert "lost to follow-up" in report.issues[0].message
