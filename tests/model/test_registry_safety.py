"""The registry under concurrent and interrupted runs (issue 20), on a real SQLite MLflow store:
two trainings at once, a champion moved by someone else, a run killed mid-way and a version
left without its gate tags."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.table import validate_table
from training.cli import app
from training.registry import (
    ChampionMovedError,
    champion_version,
    mark_incomplete,
    promote,
    register,
    registry_lock,
)
from training.track import (
    PROCESS_TAG,
    TrainingData,
    end_dead_runs,
    process_identity,
    train_and_track,
)
from training.train import TrainConfig

pytestmark = pytest.mark.model

NAME = "pe-risk"


def _versions(client: MlflowClient) -> list[tuple[str, list[str]]]:
    return sorted((v.version, v.aliases) for v in client.search_model_versions(f"name='{NAME}'"))


def _register_again(client: MlflowClient, trained, compared_with: str | None, why: str):
    return register(
        client,
        NAME,
        trained.model_uri,
        trained.run_id,
        trained.fitted.model.info.get("model_id"),
        trained.gate,
        tags={},
        description=why,
        compared_with=compared_with,
    )


def test_a_second_run_is_compared_with_the_model_the_first_promoted(
    trained, table, state, tracking
) -> None:
    """Two trainings against one store: the second waits for the registry while the first
    registers, then compares with the model the first promoted (before, both compared with
    the old champion and both announced "now champion")."""
    client = MlflowClient()
    champion_before = str(champion_version(client, NAME).version)
    holding, waiting = threading.Event(), threading.Event()
    promoted: dict[str, str] = {}

    def first_run() -> None:  # holds the registry as a run that is registering does
        with registry_lock(state.state_dir / "registry.lock", lambda _m: None):
            holding.set()
            if waiting.wait(600):  # the second run has reached the registry and waits
                mv = _register_again(client, trained, champion_before, "the first run")
                promoted["version"] = str(mv.version)

    first = threading.Thread(target=first_run)
    first.start()
    assert holding.wait(30)
    said: list[str] = []

    def say(message: str) -> None:
        said.append(message)
        if "waiting for another pe-risk run" in message:
            waiting.set()

    rows = table.frame.head(20_000)
    second = TrainingData(validate_table(rows, require_outcome=True), rows, "second", "second run")
    try:
        out = train_and_track(
            second, TrainConfig(seed=3), state, n_boot=20, register_model=False, progress=say
        )
    finally:
        waiting.set()
        first.join(60)
        promote(client, NAME, champion_before)  # the session's champion again
    assert "version" in promoted, "the second run never waited for the registry"
    assert str(out.evaluation.champion["version"]) == promoted["version"] != champion_before
    assert any(f"champion v{promoted['version']}" in m for m in said)


def test_a_champion_moved_since_the_comparison_is_not_replaced(trained, tracking) -> None:
    """The champion is re-read right before the alias moves: a run compared with another
    model (another machine, or `pe-risk promote` meanwhile) promotes nothing."""
    client = MlflowClient()
    before = _versions(client)
    champion = str(champion_version(client, NAME).version)
    with pytest.raises(ChampionMovedError, match=f"from no champion to version {champion}"):
        _register_again(client, trained, None, "compared with no champion")
    assert _versions(client) == before


def test_a_run_whose_process_ended_is_marked_killed_by_the_next(state, tracking) -> None:
    """A training killed mid-way stayed RUNNING forever; the next run ends it (and its
    trials), and leaves alone runs whose process lives or that another machine started. The
    process is named by its own start time, not by the clock MLflow stamps runs with (the
    suite runs with the clock a year off)."""
    client = MlflowClient()
    experiment = client.create_experiment("dead-runs")
    ended = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    ended_identity = process_identity(ended.pid)  # taken while it runs, as a run does
    ended.communicate(b"")  # then it ends, as a killed training does
    mine = process_identity()
    # the same machine and pid namespace on a host of another name: not this machine
    elsewhere_identity = "another-host|" + ended_identity.split("|", 1)[1]
    # the same pid, started at another time: the pid was reused, the training ended
    reused = "|".join([*mine.split("|")[:-1], "12.000"])

    def run(identity: str | None, parent: str | None = None) -> str:
        tags = {"mlflow.parentRunId": parent} if parent else {PROCESS_TAG: identity}
        return client.create_run(experiment, tags=tags).info.run_id

    dead = run(ended_identity)
    trial = run(None, parent=dead)
    alive = run(mine)
    elsewhere = run(elsewhere_identity)
    recycled = run(reused)
    said: list[str] = []
    assert sorted(end_dead_runs(client, experiment, said.append)) == sorted([dead, recycled])
    status = {r: client.get_run(r).info.status for r in (dead, trial, alive, elsewhere, recycled)}
    assert status == {
        dead: "KILLED",
        trial: "KILLED",
        alive: "RUNNING",
        elsewhere: "RUNNING",
        recycled: "KILLED",
    }
    assert any(dead in m for m in said)


def test_a_version_left_untagged_is_marked_and_never_promoted(
    trained, state, tracking, monkeypatch
) -> None:
    """A kill between registering and tagging left a version without gate tags; the next
    run marks it incomplete, and `pe-risk promote` refuses it."""
    client = MlflowClient()
    bare = client.create_model_version(NAME, trained.model_uri, run_id=trained.run_id)
    said: list[str] = []
    assert mark_incomplete(client, NAME, said.append) == [str(bare.version)]
    assert "never promoted" in client.get_model_version(NAME, bare.version).tags["incomplete"]
    assert mark_incomplete(client, NAME, said.append) == []  # marked once
    monkeypatch.setenv("PE_RISK_STATE_DIR", str(state.state_dir))
    res = CliRunner().invoke(app, ["promote", str(bare.version)])
    assert res.exit_code == 1 and f"version {bare.version} is incomplete" in res.output
    res = CliRunner().invoke(app, ["promote", str(bare.version), "--force"])  # not even forced
    assert res.exit_code == 1 and "never promoted" in res.output
    assert str(champion_version(client, NAME).version) == trained.version
    client.delete_model_version(NAME, bare.version)


def test_models_lists_two_aliases_aligned_and_json_numbers(tmp_path) -> None:
    """Issue 21: `pe-risk models` misaligned its columns when a version had two aliases, and
    `--json` gave AUROC as a string (already right on this branch: kept so)."""
    import json

    from models.settings import get_settings
    from training.track import client_for

    client = client_for(get_settings())
    client.create_registered_model(NAME)
    tags = {"test_auroc": "0.812", "calibration_slope": "0.97", "calibration_intercept": "-0.02"}
    for _ in range(2):
        client.create_model_version(NAME, str(tmp_path), tags={**tags, "gate_passed": "true"})
    client.set_registered_model_alias(NAME, "champion", "2")
    client.set_registered_model_alias(NAME, "staging", "2")
    runner = CliRunner()
    lines = runner.invoke(app, ["models"]).output.splitlines()[:3]
    header, two, one = lines
    assert "champion,staging" in two
    for row in (two, one):  # each column starts where its header does
        for column in ("created", "AUROC", "gate"):
            at = header.index(column)
            assert row[at - 1] == " " and row[at] != " ", (column, header, row)
    listed = json.loads(runner.invoke(app, ["models", "--json"]).output)
    assert [(v["version"], v["aliases"], v["auroc"]) for v in listed] == [
        (2, "champion,staging", 0.812),
        (1, "", 0.812),
    ]
    assert all(isinstance(v["slope"], float) for v in listed)
