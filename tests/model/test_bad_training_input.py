"""Tables that cannot be trained on: a clear error, a FAILED run, and an untouched registry."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.table import validate_table
from models.settings import get_settings
from training.cli import app
from training.cohort import generate
from training.track import TrainingData, train_and_track
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["pe_event"]), "no 'pe_event' column"),
        (lambda df: df.assign(pe_event=0), "one class only"),
        (lambda df: df.assign(pe_event=(np.arange(len(df)) < 40).astype(int)), "too few"),
        (lambda df: df.assign(stage=["V", *list(df["stage"][1:])]), "1 of 3000 rows fail"),
    ],
    ids=["no-outcome", "one-class", "few-events", "bad-row"],
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


def test_a_run_that_fails_midway_is_marked_failed(frame) -> None:
    config = TrainConfig(holdout_site="site-Z")
    with pytest.raises(
        TrainingDataError, match=r"site='site-Z' is not in the table; sites: \['site-A'"
    ):
        train_and_track(_data(frame), config, get_settings(), n_boot=20)
    versions, runs = _registry_and_runs()
    assert versions == [] and [r.info.status for r in runs] == ["FAILED"]
