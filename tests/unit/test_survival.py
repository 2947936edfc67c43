"""A new PE by a horizon with death competing: estimates checked against lifelines, sklearn,
statsmodels, scipy, hand counts and a simulation whose true cumulative incidence is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from scipy.stats import binomtest
from sklearn.metrics import brier_score_loss, roc_auc_score

from training import evaluate as ev
from training import survival as sv

# Six rows by hand (days, cause): PE 10, censored 20, death 20, PE 40, censored 50 and 60.
# At h = 45: AJ = 1/6 + (4/6)(1/3) = 7/18; 1 − KM with deaths censored = 8/18;
# "censored = no PE" = 6/18. Censoring KM, events first: Ĝ(20) = 1 − 1/(5 − 1) = 3/4.
HAND_TIME = np.array([10, 20, 20, 40, 50, 60.0])
HAND_CAUSE = np.array([1, 0, 2, 1, 0, 0])


def _true_cif(lam_pe: float, lam_death: float, h: float) -> float:
    lam = lam_pe + lam_death
    return lam_pe / lam * (1 - math.exp(-lam * h))


def _simulate(n: int, seed: int, lam_pe=0.002, lam_death=0.004, censor_max=400.0):
    """Exponential PE and death hazards, uniform censoring; continuous times (no ties)."""
    rng = np.random.default_rng(seed)
    t_pe = rng.exponential(1 / np.broadcast_to(lam_pe, n))
    t_death = rng.exponential(1 / lam_death, n)
    followup = np.minimum(rng.uniform(0, censor_max, n), t_death)
    pe = np.where(t_pe <= followup, t_pe, np.nan)
    death = np.where(t_death <= followup, t_death, np.nan)
    return sv.first_event(pe, death, followup)


def _lifelines_aj(time, cause, h: float) -> tuple[float, float, float]:
    aj = AalenJohansenFitter(calculate_variance=True).fit(time, cause, event_of_interest=1)
    ci = aj.confidence_interval_.loc[:h].iloc[-1]
    return float(aj.cumulative_density_.loc[:h].iloc[-1, 0]), float(ci.min()), float(ci.max())


@pytest.fixture(scope="module")
def cohort():
    return _simulate(3000, seed=1)


# first_event


def test_first_event_by_hand() -> None:
    pe = np.array([30, np.nan, 50, np.nan, 20])
    death = np.array([np.nan, 60, 50, np.nan, 90])
    followup = np.array([200, 60, 50, 180, 90.0])
    time, cause = sv.first_event(pe, death, followup)
    # PE; death; PE on the day of death counts as PE; censored; PE before death
    assert time.tolist() == [30, 60, 50, 180, 20]
    assert cause.tolist() == [1, 2, 1, 0, 1]


def test_first_event_refuses_an_event_after_follow_up() -> None:
    with pytest.raises(ValueError, match=r"pe_days=400.*after the end of follow-up"):
        sv.first_event(np.array([400.0]), np.array([np.nan]), np.array([365.0]))


def test_follow_up_closed_on_the_horizons_day_is_known_event_free() -> None:
    """Many tables end everyone's follow-up on day 180: those rows are event-free at 180, not
    censored before it (with them dropped the risk read 0.37 where the truth was 0.11)."""
    rng = np.random.default_rng(4)
    n, lam_pe, lam_death = 20_000, 0.0006, 0.0012
    t_pe, t_death = rng.exponential(1 / lam_pe, n), rng.exponential(1 / lam_death, n)
    first = np.ceil(np.minimum(t_pe, t_death))
    pe = np.where((t_pe <= t_death) & (first <= 180), first, np.nan)
    death = np.where((t_death < t_pe) & (first <= 180), first, np.nan)
    followup = np.where(np.isnan(pe) & np.isnan(death), 180.0, first)
    followup = np.where(np.isnan(death), followup, death)
    time, cause = sv.first_event(pe, death, followup)
    y, w = sv.ipcw(time, cause, 180)
    assert (w > 0).all() and np.allclose(w, 1)  # no one's status at 180 is unknown
    truth = _true_cif(lam_pe, lam_death, 180)
    assert np.sum(w * y) / n == pytest.approx(truth, rel=0.06)


def test_first_event_refuses_pe_at_index() -> None:
    with pytest.raises(ValueError, match=r"pe_days=0.*set them apart"):
        sv.first_event(np.array([0.0, 5]), np.array([np.nan, np.nan]), np.array([30.0, 30]))


def test_first_event_refuses_missing_followup() -> None:
    with pytest.raises(ValueError, match="followup_days=nan"):
        sv.first_event(np.array([np.nan]), np.array([np.nan]), np.array([np.nan]))


# censoring weights


def test_censoring_survival_is_lifelines_km_without_ties(cohort) -> None:
    time, cause = cohort
    km = KaplanMeierFitter().fit(time, cause == 0)
    at = np.array([0.5, 17.0, 90.0, 180.0, 333.3])
    expected = km.survival_function_at_times(np.nextafter(at, -np.inf)).to_numpy()
    assert sv.censoring_survival(time, cause)(at) == pytest.approx(expected, rel=1e-12)


def test_censoring_survival_is_a_left_limit_with_events_first() -> None:
    g = sv.censoring_survival(HAND_TIME, HAND_CAUSE)
    assert g(np.array([20.0, 20.5, 50.0, 50.5, 61.0])) == pytest.approx([1, 3 / 4, 3 / 4, 3 / 8, 0])


def test_ipcw_by_hand() -> None:
    y, w = sv.ipcw(HAND_TIME, HAND_CAUSE, horizon=45)
    assert y.tolist() == [1, 0, 0, 1, 0, 0]
    assert w == pytest.approx([1, 0, 1, 4 / 3, 4 / 3, 4 / 3])
    assert np.sum(w * y) / 6 == pytest.approx(7 / 18)


def test_without_censoring_or_deaths_weights_are_one_and_cif_is_the_proportion() -> None:
    time = np.array([5, 12, 12, 30, 200, 200, 365, 365.0])
    cause = np.array([1, 1, 1, 1, 0, 0, 0, 0])  # the last four followed past h without PE
    y, w = sv.ipcw(time, cause, horizon=180)
    assert np.all(w == 1)
    assert y.mean() == pytest.approx(4 / 8)
    assert sv.cumulative_incidence(time, cause, [180]).cif.item() == pytest.approx(4 / 8)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 15), st.integers(0, 2)), min_size=1, max_size=40),
    st.integers(1, 16),
)
def test_ipcw_mean_is_the_aalen_johansen_cif_with_ties(rows, horizon) -> None:
    time = np.array([r[0] for r in rows], dtype=float)
    cause = np.array([r[1] for r in rows])
    y, w = sv.ipcw(time, cause, horizon)
    cif = sv.cumulative_incidence(time, cause, [horizon]).cif.item()
    assert np.sum(w * y) / len(y) == pytest.approx(cif, abs=1e-12)
    if np.any(time > horizon):  # else Σw = n·(1 − S(h)): nobody stands for those censored
        assert np.sum(w) == pytest.approx(len(y))
    assert np.all((w == 0) | (w >= 1))


def test_ipcw_mean_equals_lifelines_aalen_johansen(cohort) -> None:
    time, cause = cohort
    for h in (30, 90, 180):
        y, w = sv.ipcw(time, cause, h)
        assert np.mean(w * y) == pytest.approx(_lifelines_aj(time, cause, h)[0], rel=1e-9)


# cumulative incidence


def test_cumulative_incidence_matches_lifelines_with_interval(cohort) -> None:
    time, cause = cohort
    table = sv.cumulative_incidence(time, cause, [30, 90, 180])
    for row in table.itertuples():
        value, low, high = _lifelines_aj(time, cause, row.horizon)
        assert (row.cif, row.low, row.high) == pytest.approx((value, low, high), rel=1e-9)
        assert row.pe == np.sum((time <= row.horizon) & (cause == 1))


def test_without_deaths_aj_equals_one_minus_km(cohort) -> None:
    time, cause = cohort
    cause = np.where(cause == 2, 0, cause)  # deaths become censorings: nothing competes
    km = KaplanMeierFitter().fit(time, cause == 1)
    for h in (30, 90, 180):
        aj = sv.cumulative_incidence(time, cause, [h]).cif.item()
        assert aj == pytest.approx(1 - km.survival_function_at_times(h).item(), rel=1e-9)


def test_km_overestimates_when_deaths_compete(cohort) -> None:
    time, cause = cohort
    km = KaplanMeierFitter().fit(time, cause == 1)  # deaths censored
    for h in (30, 90, 180):
        aj = sv.cumulative_incidence(time, cause, [h]).cif.item()
        assert aj < 1 - km.survival_function_at_times(h).item()
    hand = sv.cumulative_incidence(HAND_TIME, HAND_CAUSE, [45]).cif.item()
    assert hand == pytest.approx(7 / 18)  # against 8/18 for 1 − KM


def test_no_pe_gives_zero_with_a_one_sided_upper_bound() -> None:
    time = np.array([10, 20, 50, 100, 200.0])
    cause = np.array([2, 0, 0, 0, 0])
    row = sv.cumulative_incidence(time, cause, [30]).iloc[0]
    # status at 30 known for the death and the three followed past 30
    assert (row.cif, row.low) == (0.0, 0.0)
    assert row.high == pytest.approx(1 - 0.025 ** (1 / 4))
    assert row.high == pytest.approx(binomtest(0, 4).proportion_ci(0.95, "exact").high)


def test_ipcw_recovers_the_true_cif_where_censored_as_no_pe_is_biased() -> None:
    lam_pe, lam_death = 0.002, 0.004
    time, cause = _simulate(20_000, seed=11, lam_pe=lam_pe, lam_death=lam_death)
    for h in (90, 180):
        truth = _true_cif(lam_pe, lam_death, h)
        y, w = sv.ipcw(time, cause, h)
        row = sv.cumulative_incidence(time, cause, [h]).iloc[0]
        se = (row.high - row.low) / (2 * 1.96)  # about 0.003
        assert abs(np.mean(w * y) - truth) < 4 * se
        naive = np.mean((time <= h) & (cause == 1))  # censored counted as "no PE"
        assert naive < truth - 4 * se  # biased low
        km = KaplanMeierFitter().fit(time, cause == 1).survival_function_at_times(h).item()
        assert 1 - km > truth + 4 * se  # biased high: deaths treated as censoring


# metrics at a horizon


def test_td_auroc_with_unit_weights_is_sklearn_auroc() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(500) < 0.2).astype(float)
    p = np.clip(0.2 + 0.2 * y + rng.normal(0, 0.15, 500), 0.01, 0.99)
    assert ev.rank_metrics(y, p, np.ones(500))["auroc"] == pytest.approx(roc_auc_score(y, p))


def test_td_auroc_weights_count_as_copies_and_ignore_censored_rows() -> None:
    y = np.array([1, 1, 0, 0, 0, 1, 0.0])
    p = np.array([0.9, 0.3, 0.4, 0.2, 0.1, 0.05, 0.99])
    w = np.array([2, 1, 3, 1, 1, 0, 0.0])  # the last two censored before h
    copies = np.repeat(np.arange(7), w.astype(int))
    assert ev.rank_metrics(y, p, w)["auroc"] == pytest.approx(roc_auc_score(y[copies], p[copies]))


def test_brier_counts_censored_rows_in_n() -> None:
    y = np.tile([1, 0, 0, 0.0, 1, 0], 20)
    p = np.tile([0.5, 0.5, 0.2, 0.9, 0.3, 0.1], 20)
    w = np.tile([2, 1, 0, 0.0, 1, 1], 20)  # rows 3 and 4 of each six censored: still in n
    brier = np.sum(w * (y - p) ** 2) / len(y)
    assert brier == pytest.approx(20 * (2 * 0.25 + 0.25 + 0.49 + 0.01) / 120)
    assert ev.core_metrics(y, p, w)["brier"] == pytest.approx(brier)
    assert ev.core_metrics(y, p, np.ones(120))["brier"] == pytest.approx(brier_score_loss(y, p))


def test_weighted_calibration_with_unit_weights_is_the_unweighted_fit() -> None:
    rng = np.random.default_rng(8)
    p = 1 / (1 + np.exp(-rng.normal(-1.5, 1, 3000)))
    y = (rng.random(3000) < p).astype(float)
    one = np.ones(3000)
    assert ev.calibration_intercept(y, p, one) == pytest.approx(ev.calibration_intercept(y, p))
    assert ev.calibration_slope(y, p, one) == pytest.approx(ev.calibration_slope(y, p))
    w = rng.integers(0, 4, 3000).astype(float)  # integer weights = copies of rows
    copies = np.repeat(np.arange(3000), w.astype(int))
    assert ev.calibration_slope(y, p, w) == pytest.approx(
        ev.calibration_slope(y[copies], p[copies])
    )
    assert ev.calibration_intercept(y, p, w) == pytest.approx(
        ev.calibration_intercept(y[copies], p[copies])
    )


def test_true_risks_are_calibrated_at_the_horizon() -> None:
    rng = np.random.default_rng(21)
    n, h, lam_death = 20_000, 180, 0.002
    lam_pe = 0.002 * np.exp(rng.normal(0, 0.6, n))
    time, cause = _simulate(n, seed=22, lam_pe=lam_pe, lam_death=lam_death, censor_max=1000)
    lam = lam_pe + lam_death
    truth = lam_pe / lam * (1 - np.exp(-lam * h))
    y, w = sv.ipcw(time, cause, h)
    assert ev.calibration_intercept(y, truth, w) == pytest.approx(0, abs=0.08)
    assert ev.calibration_slope(y, truth, w) == pytest.approx(1, abs=0.1)
    assert ev.calibration_intercept(y, np.minimum(2 * truth, 0.99), w) < -0.5

    groups = sv.calibration_by_group(truth, time, cause, h)
    assert groups.rows.max() - groups.rows.min() <= 1 and groups.rows.sum() == n
    assert groups.predicted.is_monotonic_increasing
    assert np.all(np.abs(groups.observed - groups.predicted) <= 0.25 * groups.predicted)
    doubled = sv.calibration_by_group(2 * truth, time, cause, h)
    assert np.any(np.abs(doubled.observed - doubled.predicted) > 0.25 * doubled.predicted)


def test_net_benefit_by_hand_and_against_unweighted() -> None:
    y = np.array([1, 1, 0, 0, 0, 0.0])
    w = np.array([1.5, 1, 1.5, 1, 0, 1.0])
    treat = np.array([1, 0, 1, 0, 1, 0], dtype=bool)  # TP 1.5, FP 1.5 (+ a censored row)
    assert ev.net_benefit(y, treat, 0.2, w) == pytest.approx(1.5 / 6 - 1.5 / 6 * 0.25)
    p = np.array([0.9, 0.05, 0.3, 0.1, 0.5, 0.02])
    mine = ev.decision_curve(y, {"m": p}, thresholds=np.array([0.05, 0.1, 0.2]), w=np.ones(6))
    theirs = ev.decision_curve(y, {"m": p}, thresholds=np.array([0.05, 0.1, 0.2]))
    assert np.allclose(mine[theirs.columns].to_numpy(), theirs.to_numpy())


def test_treating_everyone_is_treat_all() -> None:
    y, w = sv.ipcw(HAND_TIME, HAND_CAUSE, horizon=45)
    curve = ev.decision_curve(y, {"all": np.ones(6)}, thresholds=np.array([0.1, 0.3]), w=w)
    assert np.allclose(curve["all"], curve.treat_all)
    assert curve.treat_all[0] == pytest.approx(7 / 18 - 11 / 18 * 0.1 / 0.9)


# rule-out


def test_rule_out_by_hand_with_exact_intervals() -> None:
    pe_now = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0, 0], dtype=bool)
    ruled_out = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    out = sv.rule_out(pe_now, ruled_out)
    assert (out["rows"], out["ruled_out"], out["failures"]) == (10, 4, 1)
    exact = binomtest(1, 4).proportion_ci(0.95, "exact")
    assert (out["failure_rate"].value, out["failure_rate"].low, out["failure_rate"].high) == (
        pytest.approx((0.25, exact.low, exact.high))
    )
    exact = binomtest(4, 10).proportion_ci(0.95, "exact")
    assert (out["efficiency"].low, out["efficiency"].high) == pytest.approx((exact.low, exact.high))


def test_rule_out_with_nobody_ruled_out_is_undefined() -> None:
    with pytest.warns(UserWarning, match="failure rate is undefined"):
        out = sv.rule_out(np.array([1, 0, 0], dtype=bool), np.zeros(3, dtype=bool))
    assert math.isnan(out["failure_rate"].value) and out["efficiency"].value == 0


# bootstrap


def test_bootstrap_is_seeded_and_brackets_the_estimate(cohort) -> None:
    time, cause = cohort
    y, w = sv.ipcw(time, cause, 90)
    p = np.full(len(y), np.mean(w * y)) + np.random.default_rng(2).normal(0, 0.01, len(y))
    a = ev.bootstrap(y, p, ev.core_metrics, w=w, n_boot=30, seed=4)
    assert a == ev.bootstrap(y, p, ev.core_metrics, w=w, n_boot=30, seed=4)
    for est in a.values():
        assert isinstance(est, ev.Estimate) and est.low <= est.value <= est.high
    assert a["auroc"].low < 0.5 < a["auroc"].high  # p carries no information


def test_bootstrap_redraws_samples_with_one_class() -> None:
    y = np.zeros(30)
    y[0] = 1
    w = np.ones(30)
    w[1:10] = 0

    def both_classes(y, p, w):
        scored = y[w > 0]
        assert 0 < scored.sum() < scored.size
        return {"n": float(len(y))}

    assert ev.bootstrap(y, np.zeros(30), both_classes, w=w, n_boot=20, seed=0)["n"].value == 30
