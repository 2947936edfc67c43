"""The bridge from the MLflow registry to the BentoML model store (what the service loads).

``import_model`` downloads a registered version (by alias, default ``champion``), takes the
artefact folder out of it (``booster.ubj`` + ``model.json``, see ``models.artifact``) and
stores it as the BentoML model ``pe-risk`` labelled with the registry version, so that
``bentoml.models.BentoModel("pe-risk:latest")`` and ``bentoml build`` find it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from models.artifact import META_FILE, PERiskModel
from models.settings import Settings

BENTO_NAME = "pe-risk"


def _bentoml(settings: Settings) -> Any:
    os.environ["BENTOML_HOME"] = str(settings.bentoml_home)  # must precede the first import
    import bentoml

    return bentoml


def imported_version(settings: Settings) -> str | None:
    """The registry version of the latest model in the BentoML store, or None."""
    bentoml = _bentoml(settings)
    try:
        return bentoml.models.get(f"{BENTO_NAME}:latest").info.labels.get("version")
    except bentoml.exceptions.NotFound:
        return None


def import_model(settings: Settings, alias: str = "champion") -> tuple[str, str]:
    """Copy ``models:/<name>@<alias>`` into the BentoML store; returns (bento tag, version)."""
    import mlflow
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mv = MlflowClient().get_model_version_by_alias(settings.model_name, alias)
    bentoml = _bentoml(settings)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{settings.model_name}@{alias}", dst_path=tmp
            )
        )
        folder = next(p.parent for p in local.rglob(META_FILE))
        model = PERiskModel.load(folder)  # refuse anything that is not a valid artefact
        with bentoml.models.create(
            BENTO_NAME,
            labels={"version": str(mv.version), "alias": alias, "run_id": mv.run_id or ""},
            metadata={
                "trained_on": model.info.get("trained_on", ""),
                "synthetic": bool(model.info.get("synthetic")),
                "data_digest": model.info.get("data_digest", ""),
                "registry": settings.mlflow_tracking_uri,
            },
        ) as ref:
            for item in folder.iterdir():
                shutil.copy2(item, ref.path_of(item.name))
    return str(ref.tag), str(mv.version)


def load_imported(settings: Settings) -> tuple[PERiskModel, str]:
    """The model the service serves (``pe-risk:latest`` in the BentoML store) and its version.

    Raises ``LookupError`` with the command that fixes it when nothing was imported yet.
    """
    bentoml = _bentoml(settings)
    try:
        ref = bentoml.models.get(f"{BENTO_NAME}:latest")
    except bentoml.exceptions.NotFound:
        raise LookupError(
            f"no model in the BentoML store {settings.bentoml_home}: run `pe-risk train` "
            "then `pe-risk import-model` (or `make serve`, which does both)"
        ) from None
    return PERiskModel.load(ref.path), str(ref.info.labels.get("version", ref.tag.version))
