"""Evaluation metrics against their definitions (clinical.md §5.2)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import evaluate as ev


def _expit(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(3)
    p = _expit(rng.normal(-2.5, 1.0, 200_000))
    y = (rng.random(p.size) < p).astype(float)
    return y, p


def test_calibrated_predictions_have_slope_one_and_intercept_zero(calibrated) -> None:
    y, p = calibrated
    assert ev.calibration_slope(y, p) == pytest.approx(1.0, abs=0.03)
    assert ev.calibration_intercept(y, p) == pytest.approx(0.0, abs=0.03)
    assert ev.calibration_errors(y, p)["ici"] < 0.005


def test_too_extreme_predictions_have_slope_below_one(calibrated) -> None:
    y, p = calibrated
    extreme = _expit(2 * ev._logit(p))  # log-odds doubled → slope 1/2
    assert ev.calibration_slope(y, extreme) == pytest.approx(0.5, abs=0.02)


def test_underestimated_risk_has_positive_intercept(calibrated) -> None:
    y, p = calibrated
    low = _expit(ev._logit(p) - 0.5)
    assert ev.calibration_intercept(y, low) == pytest.approx(0.5, abs=0.03)
    assert ev.calibration_errors(y, low)["ici"] > 0.02


def test_ece_by_hand() -> None:
    # bin [0.1, 0.2): predictions 0.15 ×4, one event → |1 − 0.6| = 0.4
    # bin [0.9, 1.0]: predictions 0.95 ×1, one event → |1 − 0.95| = 0.05
    y = np.array([1, 0, 0, 0, 1.0])
    p = np.array([0.15, 0.15, 0.15, 0.15, 0.95])
    assert ev.ece(y, p) == pytest.approx((0.4 + 0.05) / 5)


def test_net_benefit_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    treat = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)  # 1 TP, 2 FP
    pt = 0.2
    assert ev.net_benefit(y, treat, pt) == pytest.approx(1 / 10 - 2 / 10 * 0.25)


def test_decision_curve_reference_strategies() -> None:
    y = np.array([1, 0, 0, 0])
    curve = ev.decision_curve(y, {"m": np.array([0.9, 0.05, 0.05, 0.05])})
    row = curve[curve["threshold"] == 0.1].iloc[0]
    assert row["treat_all"] == pytest.approx(0.25 - 0.75 * 0.1 / 0.9)
    assert row["treat_none"] == 0.0
    assert row["m"] == pytest.approx(0.25)  # the one event treated, no false positives
    assert curve["threshold"].min() == 0.02 and curve["threshold"].max() == 0.3


def test_bootstrap_is_seeded_and_brackets_the_estimate(calibrated) -> None:
    y, p = calibrated[0][:5000], calibrated[1][:5000]
    a = ev.bootstrap(y, p, ev.rank_metrics, n_boot=40, seed=1)
    b = ev.bootstrap(y, p, ev.rank_metrics, n_boot=40, seed=1)
    assert a == b
    assert a["auroc"].low < a["auroc"].value < a["auroc"].high


def _sample(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = _expit(rng.normal(-2.5, 1.0, n))
    return (rng.random(n) < p).astype(float), p


def _gap(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """|mean p̂ − mean y|: ≥ 0, and larger in a resample than in the sample."""
    return {"gap": float(abs(p.mean() - y.mean()))}


def test_interval_holds_a_biased_estimate_that_the_percentile_interval_excludes() -> None:
    """Issue 21: the card showed Emax 0.053 (0.062–0.276). A statistic ≥ 0 that resampling
    inflates: here the predictions' mean equals the outcome rate, so the estimate is 0 and
    every draw is above it; the percentile interval excludes it, this one does not."""
    y, p = _sample(1, 600)
    p = p * y.mean() / p.mean()
    value, draws = ev.bootstrap_draws(y, p, _gap, n_boot=200, seed=7)
    assert value["gap"] == pytest.approx(0, abs=1e-12)
    assert np.quantile(draws["gap"], 0.025) > value["gap"]  # the percentile interval misses it
    est = ev.interval(value["gap"], draws["gap"], (0.0, 1.0))
    assert 0.0 == est.low <= est.value <= est.high
    spread = np.quantile(draws["gap"], 0.975) - np.median(draws["gap"])
    assert est.high == pytest.approx(est.value + spread)  # the draws' upper spread, kept


@pytest.mark.parametrize("seed", range(5))
def test_every_interval_holds_its_estimate_and_its_bounds(seed: int) -> None:
    y, p = _sample(seed, 400)
    for name, est in ev.bootstrap(y, p, ev.probability_metrics, n_boot=40, seed=seed).items():
        assert est.low <= est.value <= est.high, (name, est)
        low, high = ev.BOUNDS.get(name, (-np.inf, np.inf))
        assert low <= est.low and est.high <= high, (name, est)


def test_an_unbiased_statistic_keeps_its_percentile_interval(calibrated) -> None:
    """AUROC is barely biased by resampling: the interval moves by under a tenth of its width."""
    y, p = calibrated[0][:5000], calibrated[1][:5000]
    value, draws = ev.bootstrap_draws(y, p, ev.rank_metrics, n_boot=100, seed=2)
    est = ev.interval(value["auroc"], draws["auroc"], ev.BOUNDS["auroc"])
    lo, hi = np.quantile(draws["auroc"], [0.025, 0.975])
    assert abs(est.low - lo) < 0.1 * (hi - lo) and abs(est.high - hi) < 0.1 * (hi - lo)


@settings(max_examples=200, deadline=None)
@given(
    value=st.floats(0, 1),
    draws=st.lists(st.floats(0, 1), min_size=1, max_size=50),
)
def test_interval_law(value: float, draws: list[float]) -> None:
    """For any draws, the interval holds the estimate and stays within the bounds."""
    est = ev.interval(value, np.array(draws), (0.0, 1.0))
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0


def test_subgroups_cover_every_row_once_per_grouping() -> None:
    rng = np.random.default_rng(0)
    n = 400
    cols = {
        "sex": rng.choice(np.array(["female", "male"], dtype=object), n),
        "age": rng.uniform(40, 90, n),
        "stage": rng.choice(np.array(["I", "II", "III", "IV"], dtype=object), n),
        "histology": rng.choice(np.array(["adenocarcinoma", None], dtype=object), n),
        "suspected_pe": rng.choice([0.0, 1.0, np.nan], n),
    }
    p = rng.uniform(0.01, 0.5, n)
    y = (rng.random(n) < p).astype(float)
    table = ev.subgroup_table(cols, y, p)
    assert set(table["subgroup"]) == set(ev.SUBGROUPS)
    assert (table.groupby("subgroup")["rows"].sum() == n).all()
    assert "unknown" in set(table.loc[table["subgroup"] == "histology", "level"])


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_shap_plot_of_a_feature_unknown_in_every_row_warns_nothing(tmp_path) -> None:
    """Issue 21: numpy's "All-NaN slice encountered" when a plotted feature has no value."""
    from training.plots import shap_summary_plot

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[:, 1] = np.nan  # unknown in every row, yet it contributes (unknown has an effect)
    contributions = rng.normal(size=(200, 3)) * [1, 3, 1]
    path = shap_summary_plot(contributions, x, ["a", "b", "c"], tmp_path / "shap.png")
    assert path.stat().st_size > 0
