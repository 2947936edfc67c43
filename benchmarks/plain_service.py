"""The plain BentoML service pe-risk's serving speed is measured against (issue 22).

It does the least a service answering "the probability and its exact explanation" can: it
reads a JSON object of the model's feature values by name, builds one XGBoost matrix, and
returns the new-PE booster's probability (logistic of the margin) with its TreeSHAP
contributions (``pred_contribs``). Same booster as pe-risk's champion (tree count, depth),
same number of workers, BentoML's defaults otherwise: no validation of a clinical record,
no scores, no second question, no audit, no authentication.

``PLAIN_MODEL_DIR`` names a saved pe-risk model folder (``models.artifact``); the runner
(``benchmarks/ab.py``) exports the champion there and starts this with ``bentoml serve``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import xgboost as xgb

WORKERS = int(os.environ.get("PLAIN_WORKERS", "2"))


def _load() -> tuple[xgb.Booster, list[str]]:
    folder = Path(os.environ["PLAIN_MODEL_DIR"])
    names = json.loads((folder / "model.json").read_text())["feature_names"]
    booster = xgb.Booster()
    booster.load_model(folder / "new_pe.ubj")
    booster.set_param({"nthread": 1})
    return booster, names


def _answer(booster: xgb.Booster, names: list[str], rows: list[dict[str, Any]]) -> list[dict]:
    x = np.array(
        [[np.nan if (v := r.get(n)) is None else float(v) for n in names] for r in rows],
        dtype=np.float32,
    )
    d = xgb.DMatrix(x, feature_names=names, missing=np.nan, nthread=1)
    margin = booster.predict(d, output_margin=True)
    phi = booster.predict(d, pred_contribs=True)
    p = (1 / (1 + np.exp(-margin))).tolist()
    return [
        {
            "probability": p[i],
            "base_value": float(phi[i, -1]),
            "contributions": dict(zip(names, phi[i, :-1].tolist(), strict=True)),
        }
        for i in range(len(rows))
    ]


@bentoml.service(workers=WORKERS, traffic={"timeout": 10, "max_concurrency": 256})
class Plain:
    def __init__(self) -> None:
        self.booster, self.names = _load()

    @bentoml.api(route="/predict")
    def predict(self, features: dict[str, float | None]) -> dict[str, Any]:
        return _answer(self.booster, self.names, [features])[0]

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, patients: list[dict[str, float | None]]) -> list[dict[str, Any]]:
        if len(patients) > 1000:
            self.booster.set_param({"nthread": 2})
        try:
            return _answer(self.booster, self.names, patients)
        finally:
            self.booster.set_param({"nthread": 1})
