"""Against a real team-style tracking server: `mlflow server` on 127.0.0.1 with a SQL store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.processes import server_process
from training.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_server(tmp_path: Path):
    args = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
        "--workers",
        "1",
    ]
    env = {"MLFLOW_TRACKING_URI": ""}
    with server_process(args, "/health", tmp_path / "server.log", env) as url:
        yield url


def test_train_against_a_tracking_server_and_load_the_champion(mlflow_server, monkeypatch) -> None:
    import mlflow
    import numpy as np
    import pandas as pd

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    res = CliRunner().invoke(app, ["train", "--synthetic", "50000", "--bootstrap", "30"])
    assert res.exit_code == 0, res.output
    assert "is now 'champion'" in res.output

    mlflow.set_tracking_uri(mlflow_server)
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias("pe-risk", "champion")
    assert mv.tags["synthetic"] == "true"
    run = client.get_run(mv.run_id)
    assert run.info.status == "FINISHED" and "test_auroc" in run.data.metrics
    assert not str(run.info.artifact_uri).startswith("file:")  # artefacts went through the server

    state = Path(os.environ["PE_RISK_STATE_DIR"])
    cohort = pd.read_parquet(state / "cohorts" / "cohort-50000-7.parquet").head(50)
    p = mlflow.pyfunc.load_model("models:/pe-risk@champion").predict(cohort)
    assert list(p.columns) == ["pe_now", "new_pe_30d", "new_pe_90d", "new_pe_180d"]
    new = p[["new_pe_30d", "new_pe_90d", "new_pe_180d"]].to_numpy()
    assert new.shape == (50, 3) and np.all((new > 0) & (new < 1))
    assert np.all(np.diff(new, axis=1) >= 0)
    suspected = cohort["suspected_pe"].fillna(False).to_numpy(dtype=bool)
    assert p["pe_now"][suspected].between(0, 1).all() and p["pe_now"][~suspected].isna().all()
