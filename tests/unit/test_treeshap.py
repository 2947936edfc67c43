"""The TreeSHAP table equals XGBoost's ``pred_contribs`` and ``output_margin``, row for row.

XGBoost computes in float32, the table in float64: equal to rtol 1e-5, atol 1e-6.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit

from features.build import feature_matrix
from features.spec import MODEL_FEATURE_NAMES, MONOTONE_CONSTRAINTS
from features.table import validate_table
from models.artifact import Calibration, Head
from models.treeshap import MAX_DEPTH, PathTable

TOL = {"rtol": 1e-5, "atol": 1e-6}


def _data(seed: int, n: int = 1500, k: int = 8, nan: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Random rows with ``nan`` of values missing (so default directions matter), rounded
    to one decimal (so many values equal a threshold), and an outcome that depends on them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)).round(1)
    x[rng.random((n, k)) < nan] = np.nan
    z = np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) + np.isnan(x[:, 2]) + 0.5 * x[:, 3] ** 2
    y = (rng.random(n) < expit(np.nan_to_num(z) - 1)).astype(float)
    return x, y


def _train(x: np.ndarray, y: np.ndarray, rounds: int, **params: object) -> xgb.Booster:
    d = xgb.DMatrix(x, y, missing=np.nan)
    base = {"objective": "binary:logistic", "eta": 0.3, "seed": 1, "nthread": 1}
    return xgb.train({**base, **params}, d, rounds)


def _assert_equal(booster: xgb.Booster, table: PathTable, x: np.ndarray) -> None:
    names = list(booster.feature_names) if booster.feature_names is not None else None
    d = xgb.DMatrix(x, missing=np.nan, feature_names=names)
    margin, contribs = table.margin_and_contributions(x)
    assert contribs.shape == (len(x), x.shape[1] + 1)
    np.testing.assert_allclose(margin, booster.predict(d, output_margin=True), **TOL)
    np.testing.assert_array_equal(table.margin(x), margin)
    np.testing.assert_allclose(contribs, booster.predict(d, pred_contribs=True), **TOL)
    # and the table is self-consistent: the contributions sum to the margin
    np.testing.assert_allclose(contribs.sum(axis=1), margin, rtol=1e-9, atol=1e-9)


def _thresholds(booster: xgb.Booster) -> dict[int, np.ndarray]:
    """Each split feature's thresholds, float32 as XGBoost stores them."""
    out: dict[int, list[float]] = {}
    for tree in json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"][
        "trees"
    ]:
        for node, left in enumerate(tree["left_children"]):
            if left != -1:
                out.setdefault(tree["split_indices"][node], []).append(
                    tree["split_conditions"][node]
                )
    return {f: np.unique(np.asarray(t, dtype=np.float32)) for f, t in out.items()}


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_equal_to_xgboost_at_each_depth_with_missing_values(depth: int) -> None:
    x, y = _data(depth)
    booster = _train(x, y, 40, max_depth=depth)
    table = PathTable.of(booster)
    assert table.depth == depth
    _assert_equal(booster, table, x)
    _assert_equal(booster, table, np.full((3, x.shape[1]), np.nan))  # every default path


def test_equal_with_monotone_constraints_and_feature_names() -> None:
    x, y = _data(4)
    names = [f"v{i}" for i in range(x.shape[1])]
    d = xgb.DMatrix(x, y, missing=np.nan, feature_names=names)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.2, "nthread": 1}
    params["monotone_constraints"] = {"v0": 1, "v1": -1, "v3": 1, "v5": -1}
    booster = xgb.train(params, d, 60)
    table = PathTable.of(booster, tuple(names))
    assert table.feature_names == tuple(names)
    _assert_equal(booster, table, x)


def test_values_at_thresholds_in_float32_and_float64() -> None:
    """A value equal to a threshold goes right (``x < t`` is false); XGBoost compares in
    float32, so a float64 value a hair above or below the threshold that rounds to it goes
    right too, and the float32 neighbour below goes left."""
    x, y = _data(5)
    booster = _train(x, y, 50, max_depth=3)
    table = PathTable.of(booster)
    rows = []
    for f, t in _thresholds(booster).items():
        t64 = t.astype(np.float64)
        below32 = np.nextafter(t, np.float32(-np.inf)).astype(np.float64)
        ulp = np.spacing(t).astype(np.float64)
        for v in (t64, below32, t64 + ulp / 4, t64 - ulp / 4, t64 - 0.75 * ulp):
            block = np.tile(np.nanmedian(x, axis=0), (len(v), 1))
            block[:, f] = v
            rows.append(block)
    probe = np.vstack(rows)
    assert np.any(probe.astype(np.float32) != probe)  # float64 values that round in float32
    _assert_equal(booster, table, probe)


def test_single_leaf_trees_alone_and_mixed_with_splits() -> None:
    x, y = _data(6)
    # no split is worth a loss reduction of 1e9: every tree is a leaf
    leaves = _train(x, y, 5, max_depth=3, gamma=1e9)
    table = PathTable.of(leaves)
    assert table.depth == 0
    _assert_equal(leaves, table, x[:50])
    # trees with splits, then leaves, then deeper trees: one booster with all three
    mixed = _train(x, y, 10, max_depth=2)
    mixed = xgb.train(
        {"max_depth": 2, "gamma": 1e9, "nthread": 1}, xgb.DMatrix(x, y), 5, xgb_model=mixed
    )
    mixed = xgb.train(
        {"max_depth": 3, "gamma": 0, "nthread": 1}, xgb.DMatrix(x, y), 5, xgb_model=mixed
    )
    assert sum(t.startswith("0:leaf") for t in mixed.get_dump()) == 5
    assert PathTable.of(mixed).depth == 3
    _assert_equal(mixed, PathTable.of(mixed), x)


def test_several_hundred_trees() -> None:
    x, y = _data(7, n=3000, k=20)
    booster = _train(x, y, 400, max_depth=3, eta=0.05, subsample=0.8, colsample_bytree=0.8)
    table = PathTable.of(booster)
    assert table.n_trees == 400
    _assert_equal(booster, table, x)


def test_a_booster_like_the_project_s_new_pe_head() -> None:
    """The project's recipe on the synthetic cohort: its 51 features, parameters (depth 3,
    eta 0.05), monotone constraints, masked copies and unknowns routed with known values;
    and the calibrated probability that ``Head.explain`` serves, from the table."""
    from training.cohort import generate
    from training.train import DEFAULT_PARAMS, TrainConfig
    from training.unknowns import route_unknowns_with_known, with_masked_copies

    rng = np.random.default_rng(7)
    cohort = generate(4000, 7)
    columns = validate_table(cohort.frame).columns
    names = MODEL_FEATURE_NAMES
    y = (rng.random(4000) < cohort.truth["new_pe_180d"].to_numpy()).astype(float)
    x_fit, y_fit = with_masked_copies(columns, np.arange(4000), y, rng, names)
    params = {**DEFAULT_PARAMS, **TrainConfig().head_params["new_pe"], "nthread": 1, "seed": 7}
    params["monotone_constraints"] = {n: c for n, c in MONOTONE_CONSTRAINTS.items() if c}
    d = xgb.DMatrix(x_fit, y_fit, feature_names=list(names), missing=np.nan)
    booster = xgb.train(params, d, 169)
    booster, _ = route_unknowns_with_known(booster, x_fit, names)
    x = feature_matrix(columns, names)
    table = PathTable.of(booster, names)
    _assert_equal(booster, table, x_fit)

    head = Head("new_pe", booster, names, Calibration(0.9, (-2.0, -1.0, -0.5)), (30, 90, 180))
    p, expl = head.explain(x[:200], 90)
    margin, contribs = table.margin_and_contributions(x[:200])
    np.testing.assert_allclose(expit(0.9 * margin - 1.0), p, **TOL)
    np.testing.assert_allclose(0.9 * contribs[:, :-1], expl.contributions, **TOL)
    np.testing.assert_allclose(0.9 * contribs[:, -1] - 1.0, expl.base_value, **TOL)


@pytest.fixture(scope="module")
def depth3() -> tuple[xgb.Booster, PathTable, dict[int, np.ndarray]]:
    x, y = _data(8, k=5)
    booster = _train(x, y, 30, max_depth=3)
    return booster, PathTable.of(booster), _thresholds(booster)


@st.composite
def _rows(draw: st.DrawFn, thresholds: dict[int, np.ndarray], k: int) -> np.ndarray:
    """Rows whose values are NaN, a threshold, a float32 or float64 neighbour of one, or any
    finite float."""
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        row = []
        for f in range(k):
            t = thresholds.get(f, np.array([0.0], dtype=np.float32))
            th = float(t[draw(st.integers(0, len(t) - 1))])
            row.append(
                draw(
                    st.sampled_from(
                        [
                            np.nan,
                            th,
                            float(np.nextafter(np.float32(th), np.float32(-np.inf))),
                            float(np.nextafter(np.float32(th), np.float32(np.inf))),
                            float(np.nextafter(th, -np.inf)),
                            float(np.nextafter(th, np.inf)),
                        ]
                    )
                    | st.floats(-1e6, 1e6)
                )
            )
        rows.append(row)
    return np.array(rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_row_near_the_thresholds(depth3, data: st.DataObject) -> None:
    booster, table, thresholds = depth3
    _assert_equal(booster, table, data.draw(_rows(thresholds, 5)))


def test_refuses_deep_trees_naming_the_depth() -> None:
    x, y = _data(9)
    booster = _train(x, y, 3, max_depth=MAX_DEPTH + 1)
    with pytest.raises(ValueError, match=r"depth 4.*pred_contribs"):
        PathTable.of(booster)


def test_refuses_what_it_does_not_model() -> None:
    x, y = _data(10)
    with pytest.raises(ValueError, match="dart"):
        PathTable.of(_train(x, y, 3, max_depth=2, booster="dart"))
    named = xgb.train({"max_depth": 2}, xgb.DMatrix(x, y, feature_names=list("abcdefgh")), 2)
    with pytest.raises(ValueError, match="differ"):
        PathTable.of(named, tuple("abcdefgX"))
    table = PathTable.of(named)
    with pytest.raises(ValueError, match="rows × 8"):
        table.margin_and_contributions(x[:, :7])
    with pytest.raises(ValueError, match="without trees"):
        PathTable.of(_train(x, y, 0))


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e39])
def test_refuses_inf_as_xgboost_does(value: float) -> None:
    x, y = _data(12)
    booster = _train(x, y, 5, max_depth=2)
    bad = x[:3].copy()
    bad[1, 2] = value
    with pytest.raises(xgb.core.XGBoostError, match="inf"):
        xgb.DMatrix(bad, missing=np.nan)
    with pytest.raises(ValueError, match="inf"):
        PathTable.of(booster).margin_and_contributions(bad)


def test_is_frozen_and_handles_no_rows() -> None:
    x, y = _data(11)
    table = PathTable.of(_train(x, y, 5, max_depth=2))
    with pytest.raises(AttributeError):
        table.bias = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        table.contributions[0, 0] = 1.0
    margin, contribs = table.margin_and_contributions(np.empty((0, x.shape[1])))
    assert margin.shape == (0,) and contribs.shape == (0, x.shape[1] + 1)
