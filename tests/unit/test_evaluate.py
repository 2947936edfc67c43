"""Evaluation metrics against their definitions (clinical.md §5.2)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from statsmodels.nonparametric.smoothers_lowess import lowess as sm_lowess

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


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("decimals", [None, 2, 0], ids=["continuous", "ties", "points"])
def test_roc_pr_areas_equal_scikit_learn(weighted: bool, decimals: int | None) -> None:
    """One sort for both areas; scikit-learn is the reference (issue 22)."""
    rng = np.random.default_rng(5)
    score = rng.normal(0, 1.5, 5000)
    y = (rng.random(5000) < _expit(score - 2)).astype(float)
    if decimals is not None:
        score = np.round(score, decimals)
    w = rng.uniform(0.5, 2.0, 5000) if weighted else None
    auroc, auprc = ev.roc_pr_areas(y, score, w)
    assert auroc == pytest.approx(roc_auc_score(y, score, sample_weight=w), abs=1e-12)
    assert auprc == pytest.approx(average_precision_score(y, score, sample_weight=w), abs=1e-12)
    order = np.argsort(score, kind="stable")  # presorted, as a bootstrap draw: no sort
    again = ev.roc_pr_areas(y[order], score[order], None if w is None else w[order])
    assert again == pytest.approx((auroc, auprc), abs=1e-12)


def test_one_class_has_no_areas() -> None:
    with pytest.warns(RuntimeWarning, match="one class"):
        assert np.isnan(ev.roc_pr_areas(np.zeros(5), np.arange(5.0))[0])


def test_brier_equals_scikit_learn(calibrated) -> None:
    y, p = calibrated
    assert ev.core_metrics(y[:3000], p[:3000])["brier"] == pytest.approx(
        brier_score_loss(y[:3000], p[:3000]), abs=1e-15
    )


def _previous_bootstrap(y, p, metrics, w, n_boot, seed):
    """``bootstrap_draws`` before issue 22: one draw after another, each on the resampled rows
    in the order drawn, with statsmodels' GLM and lowess and scikit-learn's areas."""
    point = metrics(y, p, w)
    rng = np.random.default_rng(seed)
    draws, n = [], len(y)
    while len(draws) < n_boot:
        idx = rng.integers(0, n, n)
        known = y[idx] if w is None else y[idx][w[idx] > 0]
        if 0 < known.sum() < len(known):
            draws.append(metrics(y[idx], p[idx], None if w is None else w[idx]))
    return point, {k: np.array([d[k] for d in draws]) for k in point}


def _previous_metrics(y, p, w=None):
    """``probability_metrics`` before issue 22 (statsmodels and scikit-learn)."""
    yk, pk, wk = (y, p, np.ones(len(y))) if w is None else (y[w > 0], p[w > 0], w[w > 0])
    logit_p = ev._logit(pk)
    binomial = sm.families.Binomial()
    intercept = sm.GLM(yk, np.ones((len(yk), 1)), binomial, offset=logit_p, var_weights=wk)
    slope = sm.GLM(yk, sm.add_constant(logit_p), binomial, var_weights=wk)
    smooth = sm_lowess(
        y if w is None else w * y, p, frac=0.75, it=0, delta=0.005 * np.ptp(p), return_sorted=False
    )
    gap = np.abs(p - smooth)
    brier = brier_score_loss(y, p) if w is None else np.sum(w * (y - p) ** 2) / len(y)
    prev = y.mean() if w is None else np.sum(w * y) / len(y)
    return {
        "auroc": roc_auc_score(yk, pk, sample_weight=wk),
        "auprc": average_precision_score(yk, pk, sample_weight=wk),
        "brier": brier,
        "calibration_intercept": intercept.fit().params[0],
        "calibration_slope": slope.fit().params[1],
        "scaled_brier": 1 - brier / (prev * (1 - prev)),
        "ici": gap.mean(),
        "e50": np.quantile(gap, 0.5),
        "e90": np.quantile(gap, 0.9),
        "emax": gap.max(),
        "ece": ev.ece(y, p, w=w),
    }


@pytest.fixture(scope="module")
def censored_sample():
    """600 predictions with IPCW-like weights (some rows censored: weight 0)."""
    rng = np.random.default_rng(12)
    y, p = _sample(12, 600)
    return y, p, np.where(rng.random(600) < 0.15, 0.0, rng.uniform(1.0, 1.5, 600))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_bootstrap_gives_the_previous_figures(censored_sample, weighted: bool) -> None:
    """Issue 22: the same seeded resamples, measured in parallel, sorted, and with the new
    fits, loess and areas, give the figures of the sequential statsmodels/scikit-learn
    version: equal to 1e-9 (the GLM's own tolerance), so equal as reported."""
    y, p, w = censored_sample
    w = w if weighted else None
    point, draws = ev.bootstrap_draws(y, p, ev.probability_metrics, w=w, n_boot=30, seed=3)
    old_point, old_draws = _previous_bootstrap(y, p, _previous_metrics, w, 30, 3)
    for k in ev.PROBABILITY_METRICS:
        assert point[k] == pytest.approx(old_point[k], abs=1e-9), k
        np.testing.assert_allclose(draws[k], old_draws[k], rtol=0, atol=1e-9, err_msg=k)
        new, old = (ev.interval(v, d[k]) for v, d in ((point[k], draws), (old_point[k], old_draws)))
        assert new.text(4) == old.text(4), k


@pytest.mark.parametrize("metrics", [ev.probability_metrics, ev.core_metrics, ev.rank_metrics])
def test_bootstrap_draws_do_not_depend_on_the_threads(censored_sample, metrics) -> None:
    y, p, w = censored_sample
    one = ev.bootstrap_draws(y, p, metrics, w=w, n_boot=25, seed=9, n_jobs=1)
    two = ev.bootstrap_draws(y, p, metrics, w=w, n_boot=25, seed=9, n_jobs=2)
    three = ev.bootstrap_draws(y, p, metrics, w=w, n_boot=25, seed=9, n_jobs=3)
    assert one[0] == two[0] == three[0]
    for k in one[1]:
        assert np.array_equal(one[1][k], two[1][k]) and np.array_equal(one[1][k], three[1][k]), k


def test_a_resample_with_one_class_is_redrawn() -> None:
    """Two events in 40 rows: many resamples hold none, and are redrawn as before."""
    y = np.zeros(40)
    y[[3, 17]] = 1
    p = np.linspace(0.01, 0.5, 40)
    _, draws = ev.bootstrap_draws(y, p, ev.rank_metrics, n_boot=50, seed=4, n_jobs=2)
    _, old = _previous_bootstrap(y, p, lambda y, p, w: ev.rank_metrics(y, p), None, 50, 4)
    np.testing.assert_allclose(draws["auroc"], old["auroc"], atol=1e-12)


def test_a_paired_bootstrap_gives_the_previous_figures(censored_sample) -> None:
    """Two columns resampled together (the logistic regression against pe-risk), measured
    in ascending order of the last."""
    from training.compare import _auroc_gain

    y, p, w = censored_sample
    other = np.clip(p + np.random.default_rng(1).normal(0, 0.05, len(p)), 0.001, 0.999)
    pair = np.column_stack([other, p])
    _, draws = ev.bootstrap_draws(y, pair, _auroc_gain, w=w, n_boot=30, seed=5, n_jobs=2)
    _, old = _previous_bootstrap(y, pair, _auroc_gain, w, 30, 5)
    np.testing.assert_allclose(draws["auroc_gain"], old["auroc_gain"], rtol=0, atol=1e-12)
