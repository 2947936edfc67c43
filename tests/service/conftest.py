"""A trained champion imported into a BentoML store, and one in-process app for the session.

BentoML reads BENTOML_HOME when it is first imported, so the whole service tier shares one
state folder, set up here before the service module is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
import pytest

from models.settings import Settings, get_settings
from models.store import import_model
from tests.bundles import INDEX
from training.track import load_training_data, train_and_track
from training.train import TrainConfig

TOKEN = "test-token-\u2713".encode().hex()


@pytest.fixture(scope="session")
def served_state(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("served")
    settings = get_settings({"PE_RISK_STATE_DIR": str(root), "BENTOML_HOME": str(root / "bentoml")})
    settings.ensure_dirs()
    from training.cohort import generate, write

    path = settings.cohort_dir / "cohort.parquet"
    write(generate(50_000, 7), path)  # as `make serve`: fewer rows leave the gate to chance
    out = train_and_track(load_training_data(path), TrainConfig(), settings, n_boot=20)
    assert out.version, "the session model must pass the gate to be served"
    import_model(settings)
    return settings


@pytest.fixture(autouse=True)
def _served_env(served_state: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PE_RISK_STATE_DIR", str(served_state.state_dir))
    monkeypatch.setenv("BENTOML_HOME", str(served_state.bentoml_home))


FHIR_TOKEN = "smart-access-token"


@pytest.fixture(scope="session")
def fhir_server():
    """A FHIR server over real HTTP that the CDS Hooks service may fetch from."""
    from tests.fhir_server import FhirServer

    server = FhirServer(FHIR_TOKEN)
    yield server
    server.close()


@pytest.fixture(scope="session")
def client(served_state: Settings, fhir_server):
    """The one in-process app of the session (a second to_asgi() clashes in prometheus)."""
    os.environ["PE_RISK_API_TOKEN"] = TOKEN
    os.environ["PE_RISK_STATE_DIR"] = str(served_state.state_dir)
    os.environ["PE_RISK_FHIR_SERVERS"] = fhir_server.url
    from starlette.testclient import TestClient

    from serving.service import PERisk

    with TestClient(app=PERisk.to_asgi(), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        # CDS Hooks calls are assessed "today": the tests choose that day, the one the
        # example bundles are dated for, so that no value ages out as the calendar moves.
        bentoml.get_current_service().today = lambda: INDEX
        yield c
    os.environ.pop("PE_RISK_API_TOKEN", None)
    os.environ.pop("PE_RISK_FHIR_SERVERS", None)


@pytest.fixture(scope="session")
def audit_path(served_state: Settings) -> Path:
    return served_state.log_dir / "audit.jsonl"
