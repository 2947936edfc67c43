"""Unknown values: removal at random, masked copies, and splits that give "unknown" a branch
of its own (training.unknowns), on a real XGBoost booster."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from features.build import record_columns
from features.contract import REQUIRED, UNKNOWABLE
from features.records import parse_record
from features.spec import MODEL_FEATURE_NAMES
from tests.conftest import base_record
from training.unknowns import remove_at_random, route_unknowns_with_known, with_masked_copies


def _columns(n: int) -> dict[str, np.ndarray]:
    full = base_record(
        d_dimer=1.2, chemotherapy=True, prior_vte=False, platelets=410, days_since_surgery=20
    )
    return record_columns([parse_record(full)] * n)


def test_removal_touches_only_fields_a_record_may_leave_unknown() -> None:
    c = _columns(2000)
    gone = remove_at_random(c, 1.0, np.random.default_rng(1))
    for name in ("d_dimer", "chemotherapy", "prior_vte", "platelets"):
        assert np.isnan(gone[name]).all(), name
    assert "days_since_surgery" not in UNKNOWABLE  # absent means "no surgery" (data contract)
    assert (gone["days_since_surgery"] == 20).all()
    for name in REQUIRED:  # histology says "unknown" with a choice of its own
        expected = "unknown" if name == "histology" else c[name]
        assert (gone[name] == expected).all(), name
    kept = remove_at_random(c, 0.0, np.random.default_rng(1))
    assert (kept["d_dimer"] == 1.2).all()
    some = remove_at_random(c, 0.3, np.random.default_rng(1))
    assert 0.25 < np.isnan(some["d_dimer"]).mean() < 0.35
    per_row = remove_at_random(c, np.repeat([0.0, 1.0], 1000), np.random.default_rng(1))
    assert (
        not np.isnan(per_row["d_dimer"][:1000]).any() and np.isnan(per_row["d_dimer"][1000:]).all()
    )


def test_masked_copies_follow_the_rows_they_copy() -> None:
    c = _columns(50)
    y = np.arange(50) % 2
    rows = np.arange(10, 30)
    x, yy = with_masked_copies(c, rows, y, np.random.default_rng(2), MODEL_FEATURE_NAMES, copies=2)
    assert x.shape == (60, len(MODEL_FEATURE_NAMES))
    assert (yy == np.tile(y[rows], 3)).all()
    j = list(MODEL_FEATURE_NAMES).index("d_dimer")
    assert not np.isnan(x[:20, j]).any()  # the rows themselves come first, untouched
    assert np.isnan(x[20:, j]).any()


def _isolating_booster() -> tuple[xgb.Booster, np.ndarray]:
    """One yes/no feature with a monotone +1 constraint, where rows missing it have a far lower
    event rate than either value: XGBoost gives "missing" a branch of its own."""
    rng = np.random.default_rng(3)
    n = 6000
    x = rng.integers(0, 2, n).astype(float)
    missing = rng.random(n) < 0.4
    p = np.where(missing, 0.02, np.where(x == 1, 0.5, 0.3))
    x[missing] = np.nan
    y = (rng.random(n) < p).astype(float)
    d = xgb.DMatrix(x[:, None], y, feature_names=["f"], missing=np.nan)
    params = {
        "objective": "binary:logistic",
        "max_depth": 2,
        "eta": 0.3,
        "monotone_constraints": {"f": 1},
    }
    return xgb.train(params, d, 30), x[:, None]


def _margins(booster: xgb.Booster) -> tuple[float, float, float]:
    grid = np.array([[0.0], [1.0], [np.nan]])
    m = booster.predict(xgb.DMatrix(grid, feature_names=["f"], missing=np.nan), output_margin=True)
    return float(m[0]), float(m[1]), float(m[2])


def test_a_branch_of_its_own_for_unknown_is_turned_to_the_known_values() -> None:
    booster, x = _isolating_booster()
    no, yes, unknown = _margins(booster)
    assert unknown < no < yes  # the trap: unknown scores below both known values
    fixed, turned = route_unknowns_with_known(booster, x, ["f"])
    assert turned > 0
    no2, yes2, unknown2 = _margins(fixed)
    assert (no2, yes2) == (no, yes)  # known values are scored exactly as before
    assert no2 <= unknown2 <= yes2
    again, turned_again = route_unknowns_with_known(fixed, x, ["f"])
    assert turned_again == 0 and again is fixed  # nothing left to turn


def _per_tree(booster: xgb.Booster, rows: np.ndarray, names: list[str]) -> np.ndarray:
    """trees × rows: each tree's own output for each row."""
    d = xgb.DMatrix(rows, feature_names=names, missing=np.nan)
    return np.array(
        [
            booster[t : t + 1].predict(d, output_margin=True)
            for t in range(booster.num_boosted_rounds())
        ]
    )


def test_every_tree_scores_unknown_like_some_known_value_deep_trees() -> None:
    """Deep trees on a continuous feature and on a one-hot group (a category in four columns):
    after routing, each tree scores "unknown" exactly as it scores some real value or type."""
    rng = np.random.default_rng(4)
    n = 8000
    v = rng.normal(0, 1, n)
    kind = rng.integers(0, 5, n)  # 4 = the type with no column of its own ("other")
    onehot = np.stack([(kind == k).astype(float) for k in range(4)], axis=1)
    lost_v, lost_kind = rng.random(n) < 0.3, rng.random(n) < 0.3
    p = 1 / (1 + np.exp(-(v + 0.8 * (kind == 1) - 3.0 * lost_v + 2.0 * lost_kind)))
    x = np.column_stack([np.where(lost_v, np.nan, v), np.where(lost_kind[:, None], np.nan, onehot)])
    y = (rng.random(n) < p).astype(float)
    names = ["d_dimer", "adenocarcinoma", "squamous_cell", "small_cell", "large_cell"]
    params = {
        "objective": "binary:logistic",
        "max_depth": 5,
        "eta": 0.3,
        "monotone_constraints": {"d_dimer": 1},
    }
    booster = xgb.train(params, xgb.DMatrix(x, y, feature_names=names, missing=np.nan), 40)
    fixed, turned = route_unknowns_with_known(booster, x, names)
    assert turned > 0
    base = x[~lost_v & ~lost_kind][:50]
    cuts = np.unique(fixed.trees_to_dataframe().query("Feature == 'd_dimer'")["Split"])
    between_cuts = np.concatenate([[cuts[0] - 1], (cuts[1:] + cuts[:-1]) / 2, [cuts[-1] + 1]])
    for cols, options in (
        ([0], [np.array([val]) for val in between_cuts]),  # one value in every interval
        ([1, 2, 3, 4], [np.eye(4)[k] if k < 4 else np.zeros(4) for k in range(5)]),
    ):
        absent = base.copy()
        absent[:, cols] = np.nan
        out_absent = _per_tree(fixed, absent, names)
        outs = []
        for option in options:
            rows = base.copy()
            rows[:, cols] = option
            outs.append(_per_tree(fixed, rows, names))
        outs = np.array(outs)  # options × trees × rows
        assert np.isclose(outs, out_absent[None]).any(axis=0).all(), cols
