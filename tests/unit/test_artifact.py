"""The model artefact: safe files, exact explanations, features matched by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from scipy.special import logit

from features.build import record_columns
from features.records import parse_record
from features.spec import MODEL_FEATURE_NAMES
from models.artifact import BOOSTER_FILE, META_FILE, Calibration, PERiskModel, RiskBands
from tests.conftest import base_record


@pytest.fixture(scope="module")
def model() -> PERiskModel:
    rng = np.random.default_rng(0)
    n, k = 600, len(MODEL_FEATURE_NAMES)
    x = rng.normal(size=(n, k))
    x[rng.random((n, k)) < 0.3] = np.nan
    y = (rng.random(n) < 0.2).astype(float)
    d = xgb.DMatrix(x, y, feature_names=list(MODEL_FEATURE_NAMES))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, d, 20)
    return PERiskModel(
        booster, MODEL_FEATURE_NAMES, Calibration(a=0.8, b=-0.3), info={"trained_on": "test"}
    )


def _columns(*records):
    return record_columns([parse_record(r) for r in records])


def test_contributions_sum_exactly_to_the_calibrated_log_odds(model) -> None:
    cols = _columns(base_record(d_dimer=2.5, platelets=410), base_record(stage="I"))
    x = model.features(cols)
    p, expl = model.explain(x)
    assert np.allclose(p, model.probability(x), atol=1e-12)
    assert np.allclose(expl.base_value + expl.contributions.sum(axis=1), logit(p), atol=1e-6)
    assert expl.contributions.shape == (2, len(MODEL_FEATURE_NAMES))


def test_save_and_load_round_trip_in_safe_formats(model, tmp_path) -> None:
    folder = model.save(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == sorted([BOOSTER_FILE, META_FILE])
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["feature_names"] == list(MODEL_FEATURE_NAMES)
    assert meta["calibration"]["a"] == 0.8 and meta["trained_on"] == "test"
    loaded = PERiskModel.load(folder)
    cols = _columns(base_record(d_dimer=1.2))
    assert np.array_equal(
        loaded.probability(loaded.features(cols)), model.probability(model.features(cols))
    )


def test_load_refuses_metadata_that_does_not_match_the_booster(model, tmp_path) -> None:
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / META_FILE).read_text())
    meta["feature_names"] = list(reversed(meta["feature_names"]))
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="features differ"):
        PERiskModel.load(folder)


def test_risk_bands_at_their_edges() -> None:
    bands = RiskBands()
    assert bands.category(0.0499) == "low"
    assert bands.category(0.05) == "intermediate"
    assert bands.category(0.0889) == "intermediate"
    assert bands.category(0.089) == "high"
