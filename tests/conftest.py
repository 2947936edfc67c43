"""Shared fixtures. Tests never write outside pytest's tmp_path: the state folder is redirected."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("PE_RISK_STATE_DIR", str(state))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PE_RISK_API_TOKEN", raising=False)
    monkeypatch.delenv("PE_RISK_API_TOKEN_FILE", raising=False)


def base_record(**overrides: object) -> dict[str, object]:
    """A minimal valid record (the four required fields), with overrides."""
    record: dict[str, object] = {
        "age": 64,
        "sex": "female",
        "histology": "adenocarcinoma",
        "stage": "III",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not ...}
