"""Settings: built by a function from the environment; nothing happens at import."""

from __future__ import annotations

from pathlib import Path

from models.settings import get_settings


def test_state_lives_under_one_folder(tmp_path: Path) -> None:
    s = get_settings({"PE_RISK_STATE_DIR": str(tmp_path / "st")})
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'st' / 'mlflow.db'}"
    for p in (s.mlflow_artifact_root, s.bentoml_home, s.cohort_dir, s.log_dir):
        assert p.is_relative_to(tmp_path / "st")
    assert not (tmp_path / "st").exists()  # building settings writes nothing
    s.ensure_dirs()
    assert s.cohort_dir.is_dir()


def test_default_is_the_checkout() -> None:
    s = get_settings({})
    assert s.state_dir == Path(__file__).resolve().parents[2] / ".pe-risk"


def test_environment_overrides(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("b\n\nc\n")
    s = get_settings(
        {
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
            "BENTOML_HOME": str(tmp_path),
            "PE_RISK_API_TOKEN": "s3cr3t-a",
            "PE_RISK_API_TOKEN_FILE": str(token_file),
        }
    )
    assert s.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert s.bentoml_home == tmp_path and s.api_tokens == ("s3cr3t-a", "b", "c")
    assert "s3cr3t" not in repr(s)
