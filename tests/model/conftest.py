"""One real training run on the synthetic cohort, tracked in a temporary SQLite MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from models.settings import Settings, get_settings
from training.cohort import generate, write
from training.track import Outcome, TrainingData, load_training_data, train_and_track
from training.train import TrainConfig

N, SEED, N_BOOT = 50_000, 7, 50


@pytest.fixture(scope="session")
def state(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return get_settings({"PE_RISK_STATE_DIR": str(tmp_path_factory.mktemp("trained"))})


@pytest.fixture(scope="session")
def cohort_path(state: Settings) -> Path:
    state.ensure_dirs()
    path = state.cohort_dir / f"cohort-{N}-{SEED}.parquet"
    write(generate(N, SEED), path)
    return path


@pytest.fixture(scope="session")
def table(cohort_path: Path) -> TrainingData:
    return load_training_data(cohort_path)


@pytest.fixture(scope="session")
def trained(table: TrainingData, state: Settings) -> Outcome:
    return train_and_track(table, TrainConfig(seed=SEED), state, n_boot=N_BOOT)


@pytest.fixture
def tracking(state: Settings):
    """Point MLflow at the session store for one test."""
    mlflow.set_tracking_uri(state.mlflow_tracking_uri)
    return state
