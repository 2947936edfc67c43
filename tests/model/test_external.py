"""`pe-risk evaluate` and `pe-risk recalibrate` refuse what they cannot do before anything is
written, and read a table with `pe_event` alone at the one horizon it answers (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.contract import OUTCOME, TIME_OUTCOMES
from training.cli import app
from training.cohort import generate

pytestmark = pytest.mark.model


@pytest.fixture
def cli(trained, state, tracking, monkeypatch) -> CliRunner:
    monkeypatch.setenv("PE_RISK_STATE_DIR", str(state.state_dir))
    return CliRunner()


def _runs(client: MlflowClient) -> set[str]:
    exp = client.get_experiment_by_name("pe-risk")
    return {r.info.run_id for r in client.search_runs([exp.experiment_id])}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("site") / "site.csv"
    generate(8000, 3).frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("command", ["evaluate", "recalibrate"])
@pytest.mark.parametrize(
    ("ref", "said"),
    [
        ("pe-risk/999", "no such version in the registry; versions: 1"),
        ("pe-risk@best", "no such version in the registry"),
        ("other-model@champion", "does not name a version of 'pe-risk'"),
        ("pe-risk/one", "does not name a version of 'pe-risk'"),
    ],
)
def test_a_bad_model_reference_is_named_with_what_exists(cli, site, command, ref, said) -> None:
    client = MlflowClient()
    runs = _runs(client)
    res = cli.invoke(app, [command, "--model", ref, "--data", str(site)])
    assert res.exit_code == 1
    assert said in res.output and "aliases: pe-risk@champion (version" in res.output
    assert _runs(client) == runs


def test_what_cannot_be_evaluated_or_recalibrated_leaves_no_run(cli, site, tmp_path) -> None:
    client = MlflowClient()
    runs = _runs(client)
    versions = len(client.search_model_versions("name = 'pe-risk'"))
    frame = pd.read_csv(site)
    no_outcome = tmp_path / "no_outcome.csv"
    frame.drop(columns=list(TIME_OUTCOMES)).to_csv(no_outcome, index=False)
    for command in ("evaluate", "recalibrate"):
        res = cli.invoke(app, [command, "--data", str(no_outcome)])
        assert res.exit_code == 1 and "the table has no outcome" in res.output
    small = tmp_path / "small.csv"
    frame.head(1500).to_csv(small, index=False)  # enough to evaluate, not to split
    res = cli.invoke(app, ["recalibrate", "--data", str(small), "--test-size", "0.2"])
    assert res.exit_code == 1
    assert "the test part (300 rows) has" in res.output and "another --test-size" in res.output
    res = cli.invoke(app, ["recalibrate", "--data", str(site), "--method", "offset"])
    assert res.exit_code == 2 and "'offset' is not one of" in res.output
    assert _runs(client) == runs
    assert len(client.search_model_versions("name = 'pe-risk'")) == versions


def test_a_pe_event_table_is_evaluated_at_180_days_only(cli, site, tmp_path) -> None:
    frame = pd.read_csv(site)
    pe = frame["pe_days"]
    frame[OUTCOME] = (pe.notna() & (pe <= 180)).astype(int)
    path = tmp_path / "pe_event.csv"
    frame.drop(columns=list(TIME_OUTCOMES)).to_csv(path, index=False)
    res = cli.invoke(app, ["evaluate", "--data", str(path), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert "new PE by 180 days" in res.output
    assert "new PE by 30 days" not in res.output and "PE now (suspected" not in res.output
