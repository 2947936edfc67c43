"""Tables that cannot be trained on: a clear error, a FAILED run, and an untouched registry."""

from __future__ import annotations

import re

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.table import validate_table
from models.settings import get_settings
from training.cli import app
from training.cohort import generate
from training.track import EXPERIMENT, TrainingData, train_and_track
from training.train import TrainConfig, TrainingDataError

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def frame():
    return generate(3000, 5).frame


def _data(df) -> TrainingData:
    return TrainingData(validate_table(df, require_outcome=True), df, "test", "test")


def _registry_and_runs():
    settings = get_settings()
    client = MlflowClient(settings.mlflow_tracking_uri)
    versions = client.search_registered_models()
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    return versions, runs


TIMES = ["pe_days", "death_days", "followup_days"]


def _pe_event_only(df, y):
    return df.drop(columns=TIMES).assign(pe_event=y)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=TIMES), "the table has no outcome"),
        (lambda df: df.assign(pe_days=np.nan), "needs both events and non-events"),
        (
            lambda df: df.assign(pe_days=np.where(np.arange(len(df)) < 40, 10.0, np.nan)),
            "too few",
        ),
        (lambda df: _pe_event_only(df, 0), "pe_event=1 rows: 0 among 3000"),
        (
            lambda df: _pe_event_only(df, (np.arange(len(df)) < 40).astype(int)),
            "40 pe_event=1 rows in 3000 rows are too few",
        ),
        (lambda df: df.assign(stage=["V", *list(df["stage"][1:])]), "1 of 3000 rows fail"),
        (
            lambda df: df.assign(followup_days=[-1.0, *list(df["followup_days"][1:])]),
            "1 of 3000 rows fail",
        ),
    ],
    ids=[
        "no-outcome",
        "no-pe",
        "few-events",
        "pe-event-one-class",
        "pe-event-few",
        "bad-row",
        "bad-time",
    ],
)
def test_untrainable_table_starts_no_run_and_registers_nothing(frame, change, message) -> None:
    with pytest.raises(TrainingDataError, match=message):
        train_and_track(_data(change(frame.copy())), TrainConfig(), get_settings(), n_boot=20)
    versions, runs = _registry_and_runs()
    assert versions == [] and runs == []


def test_bad_rows_are_reported_row_by_row(frame) -> None:
    df = frame.copy()
    df.loc[4, "d_dimer"] = 900.0
    with pytest.raises(TrainingDataError) as err:
        train_and_track(_data(df), TrainConfig(), get_settings(), n_boot=20)
    (issue,) = err.value.issues
    assert (issue.row, issue.field, issue.value) == (5, "d_dimer", 900.0)


def test_cli_writes_the_row_report_and_exits_1(frame, tmp_path) -> None:
    df = frame.copy()
    df["stage"] = df["stage"].astype(object)
    df.loc[2, "stage"] = "3"
    path = tmp_path / "bad.parquet"
    df.to_parquet(path)
    report = tmp_path / "report.csv"
    res = CliRunner().invoke(app, ["train", "--data", str(path), "--report", str(report)])
    assert res.exit_code == 1
    assert (
        "row 3" in res.output and "stage" in res.output and "nothing was registered" in res.output
    )
    assert "row,field,value,rule,message" in report.read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("change", "config", "message"),
    [
        (
            None,
            TrainConfig(holdout_site="site-Z"),
            "--holdout-site='site-Z' is not a site of the table; its sites are 'site-A', "
            "'site-B', 'site-C', 'site-D'",
        ),
        (
            lambda df: df.drop(columns="site"),
            TrainConfig(holdout_site="site-A"),
            "--holdout-site needs a 'site' column",
        ),
        (
            None,
            TrainConfig(holdout_after="2024-13-01"),
            "--holdout-after='2024-13-01' is not a date; give it as YYYY-MM-DD",
        ),
        (
            None,
            TrainConfig(holdout_after="01/07/2024"),
            "--holdout-after='01/07/2024' is not a date",
        ),
        (
            lambda df: df.drop(columns="index_date"),
            TrainConfig(holdout_after="2024-07-01"),
            "--holdout-after needs a 'index_date' column",
        ),
        (
            None,
            TrainConfig(holdout_site="site-A", holdout_after="2024-07-01"),
            "--holdout-site='site-A' and --holdout-after='2024-07-01' were both given; give one",
        ),
        (
            None,
            TrainConfig(holdout_after="2031-01-01"),
            "the test split has 0 new PEs in 0 rows",
        ),
    ],
    ids=["site-typo", "no-site-column", "bad-date", "not-iso", "no-date-column", "both", "empty"],
)
def test_an_unusable_holdout_starts_no_run(frame, change, config, message) -> None:
    """Issue 21: a typo in --holdout-site left a FAILED run behind; now the options are
    checked with the table, before MLflow is touched."""
    df = frame.copy() if change is None else change(frame.copy())
    with pytest.raises(TrainingDataError, match=re.escape(message)):
        train_and_track(_data(df), config, get_settings(), n_boot=20)
    versions, runs = _registry_and_runs()
    assert versions == [] and runs == []


def test_cli_names_the_holdout_site_typo_and_exits_1(frame, tmp_path) -> None:
    path = tmp_path / "table.parquet"
    frame.to_parquet(path)
    res = CliRunner().invoke(app, ["train", "--data", str(path), "--holdout-site", "site-Z"])
    assert res.exit_code == 1
    assert "--holdout-site='site-Z' is not a site of the table; its sites are" in res.output
    assert _registry_and_runs() == ([], [])


def test_a_run_that_fails_midway_is_marked_failed(frame, tmp_path) -> None:
    """The artefact store fails after the run has started (the experiment's artefact
    location is under a regular file, as on a share that went away): the run is FAILED."""
    settings = get_settings()
    settings.ensure_dirs()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    MlflowClient(settings.mlflow_tracking_uri).create_experiment(
        EXPERIMENT, artifact_location=(blocker / "artifacts").as_uri()
    )
    with pytest.raises(OSError, match="not-a-folder"):
        train_and_track(_data(frame), TrainConfig(), settings, n_boot=20)
    versions, runs = _registry_and_runs()
    assert versions == [] and [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.params["seed"] == "7"  # it failed after the run had started


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "is empty (0 bytes)"),
        (b"SQLite format 3\x00" + b"\x00" * 84, "not a readable MLflow store"),
        (b"not a database at all" * 100, "not a readable MLflow store"),
    ],
    ids=["empty", "truncated", "garbage"],
)
def test_a_broken_mlflow_store_stops_serve_and_train_naming_the_file(
    tmp_path, content, said
) -> None:
    """Issue 20: a 0-byte mlflow.db made `make serve` retrain on synthetic data and serve it
    as "version 1" over a hospital's champion. Now both commands stop, name the file and the
    fix, and leave it untouched; `serve --from-store` is the documented way to keep serving
    (not called here: BentoML reads its home once per process, and the service tier's)."""
    settings = get_settings()
    settings.ensure_dirs()
    db = settings.state_dir / "mlflow.db"
    db.write_bytes(content)
    runner = CliRunner()
    res = runner.invoke(app, ["serve", "--rows", "1000"])
    assert res.exit_code == 1 and said in res.output and str(db) in res.output
    assert "pe-risk serve --from-store" in res.output
    assert db.read_bytes() == content  # not turned into a new store
    res = runner.invoke(app, ["train", "--synthetic", "5000"])
    assert res.exit_code == 1 and said in res.output
    assert db.read_bytes() == content
