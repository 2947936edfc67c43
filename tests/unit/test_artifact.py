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
from models.artifact import (
    META_FILE,
    Calibration,
    Head,
    PERiskModel,
    RiskBands,
    booster_file,
    diagnostic_bands,
)
from tests.conftest import base_record

HORIZONS = (30, 90, 180)


def _booster(seed: int) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    n, k = 600, len(MODEL_FEATURE_NAMES)
    x = rng.normal(size=(n, k))
    x[rng.random((n, k)) < 0.3] = np.nan
    y = (rng.random(n) < 0.2).astype(float)
    d = xgb.DMatrix(x, y, feature_names=list(MODEL_FEATURE_NAMES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 3}, d, 20)


@pytest.fixture(scope="module")
def model() -> PERiskModel:
    names = MODEL_FEATURE_NAMES
    now = Head(
        "pe_now", _booster(1), names, Calibration(1.1, (-0.9,)), (0,), bands=diagnostic_bands()
    )
    new = Head("new_pe", _booster(0), names, Calibration(0.8, (-2.0, -1.1, -0.3)), HORIZONS)
    return PERiskModel(names, {"pe_now": now, "new_pe": new}, info={"trained_on": "test"})


def _columns(*records):
    return record_columns([parse_record(r) for r in records])


@pytest.mark.parametrize("head", ["pe_now", "new_pe"])
def test_contributions_sum_exactly_to_the_calibrated_log_odds(model, head) -> None:
    cols = _columns(base_record(d_dimer=2.5, platelets=410), base_record(stage="I"))
    x = model.features(cols)
    h = model.heads[head]
    for horizon in h.horizons:
        p, expl = h.explain(x, horizon)
        assert np.allclose(p, h.probability(x, horizon), atol=1e-12)
        assert np.allclose(expl.base_value + expl.contributions.sum(axis=1), logit(p), atol=1e-6)
        assert expl.contributions.shape == (2, len(MODEL_FEATURE_NAMES))


def test_horizons_share_the_contributions_and_never_decrease(model) -> None:
    cols = _columns(base_record(d_dimer=2.5), base_record(stage="I"), base_record(stage="IV"))
    x = model.features(cols)
    p = model.new_pe.probabilities(x)
    assert p.shape == (3, 3) and np.all(np.diff(p, axis=1) > 0)
    (_, e30), (_, e180) = (model.new_pe.explain(x, h) for h in (30, 180))
    assert np.array_equal(e30.contributions, e180.contributions)
    assert np.allclose(e180.base_value - e30.base_value, -0.3 - -2.0)
    with pytest.raises(ValueError, match="not 60"):
        model.new_pe.probability(x, 60)


def test_the_pyfunc_columns_leave_pe_now_empty_where_pe_is_not_suspected(model) -> None:
    cols = _columns(base_record(suspected_pe=True), base_record(suspected_pe=False), base_record())
    x = model.features(cols)
    out = model.predict_frame(x, cols["suspected_pe"])
    assert list(out) == model.columns() == ["pe_now", "new_pe_30d", "new_pe_90d", "new_pe_180d"]
    assert not np.isnan(out["pe_now"][0]) and np.isnan(out["pe_now"][1:]).all()
    assert np.allclose(out["pe_now"][0], model.pe_now.probability(x[:1]))


def test_save_and_load_round_trip_in_safe_formats(model, tmp_path) -> None:
    folder = model.save(tmp_path / "m")
    files = [booster_file("pe_now"), booster_file("new_pe"), META_FILE]
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["feature_names"] == list(MODEL_FEATURE_NAMES)
    assert meta["heads"]["new_pe"]["calibration"]["a"] == 0.8 and meta["trained_on"] == "test"
    assert meta["heads"]["new_pe"]["horizons_days"] == [30, 90, 180]
    loaded = PERiskModel.load(folder)
    cols = _columns(base_record(d_dimer=1.2, suspected_pe=True))
    for key, head in model.heads.items():
        x = model.features(cols)
        assert np.array_equal(loaded.heads[key].probabilities(x), head.probabilities(x))
        assert loaded.heads[key].bands == head.bands


def test_load_refuses_metadata_that_does_not_match_the_booster(model, tmp_path) -> None:
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / META_FILE).read_text())
    meta["feature_names"] = list(reversed(meta["feature_names"]))
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="features differ"):
        PERiskModel.load(folder)


def test_load_refuses_a_model_from_before_the_two_questions(model, tmp_path) -> None:
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "format": "pe-risk-model/1"}))
    with pytest.raises(ValueError, match="must be retrained"):
        PERiskModel.load(folder)


def test_pe_now_bands_are_the_revised_geneva_prevalences() -> None:
    bands = diagnostic_bands()
    assert (bands.low_below, bands.high_from) == (0.08, 0.28)
    assert "Le Gal" in bands.source


def test_risk_bands_at_their_edges() -> None:
    bands = RiskBands()
    assert bands.category(0.0499) == "low"
    assert bands.category(0.05) == "intermediate"
    assert bands.category(0.0889) == "intermediate"
    assert bands.category(0.089) == "high"


@pytest.mark.parametrize("top", [0, -3, True, 2.0])
def test_predict_records_refuses_a_count_that_is_not_one(model, top) -> None:
    """``top`` from Python is held to what the batch's ``top_contributions`` accepts."""
    from serving.answer.predict import predict_records

    records = [parse_record(base_record(suspected_pe=True))]
    with pytest.raises(ValueError, match="integer >= 1"):
        predict_records(model, "1", records, top=top)
    (answer,) = predict_records(model, "1", records, top=3)
    for key in ("pe_now", "new_pe"):
        e = answer["estimates"][key]["explanation"]
        assert (
            len(e["contributions"]) == 3 and e["rest"]["features"] == len(model.feature_names) - 3
        )
