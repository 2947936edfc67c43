"""The calibration intercept and slope fits (``training.logistic``) against statsmodels' GLM,
the reference they replaced (issue 22), and what they do where no estimate exists."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from training import logistic as lg


def _expit(z):
    return 1 / (1 + np.exp(-z))


def _glm(y, design, w, offset=None):
    """statsmodels' fit, as ``training.evaluate`` called it before issue 22 (on the rows with
    weight), and to 1e-12 rather than its default 1e-8 on the deviance."""
    keep = w > 0
    fit = sm.GLM(
        y[keep],
        design[keep],
        family=sm.families.Binomial(),
        offset=None if offset is None else offset[keep],
        var_weights=w[keep],
    )
    return fit.fit(tol=1e-12).params


def _rows(seed: int, n: int, slope: float, weighted: bool, intercept: float = -2.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(-2.5, 1.2, n)  # logit p̂
    y = (rng.random(n) < _expit(intercept + 2.5 * slope + slope * x)).astype(float)
    # IPCW-like weights: some rows censored (weight 0), the others above 1
    censored = rng.random(n) < 0.15
    w = np.where(censored, 0.0, rng.uniform(1.0, 1.6, n)) if weighted else np.ones(n)
    return y, x, w


CASES = {
    "calibrated": {"slope": 1.0, "intercept": -2.5},
    "too extreme": {"slope": 0.5, "intercept": -2.0},
    "too moderate": {"slope": 1.8, "intercept": -3.0},
    # near separation: a slope of 12 on logit p̂ (a spread of ±1.2) leaves a few overlapping rows
    "near separation": {"slope": 12.0, "intercept": 0.0},
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES)
def test_intercept_and_slope_equal_statsmodels(case: str, weighted: bool) -> None:
    y, x, w = _rows(11, 4000, weighted=weighted, **CASES[case])
    ones = np.ones((len(y), 1))
    ref_intercept = _glm(y, ones, w, offset=x)[0]
    ref_a, ref_b = _glm(y, sm.add_constant(x), w)
    given_w = w if weighted else None
    assert lg.fit_intercept(y, x, given_w) == pytest.approx(ref_intercept, rel=1e-9, abs=1e-9)
    a, b = lg.fit_slope(y, x, given_w)
    assert a == pytest.approx(ref_a, rel=1e-9, abs=1e-9)
    assert b == pytest.approx(ref_b, rel=1e-9, abs=1e-9)


def test_statsmodels_default_fit_is_the_same_number_to_1e8() -> None:
    """What ``training.evaluate`` reported before (statsmodels at its own tolerance)."""
    y, x, w = _rows(3, 5000, slope=0.8, weighted=True)
    keep = w > 0
    glm = sm.GLM(
        y[keep], sm.add_constant(x[keep]), family=sm.families.Binomial(), var_weights=w[keep]
    )
    assert lg.fit_slope(y, x, w)[1] == pytest.approx(glm.fit().params[1], rel=1e-8)


def test_rows_of_weight_zero_change_nothing() -> None:
    y, x, w = _rows(5, 3000, slope=0.9, weighted=True)
    keep = w > 0
    assert lg.fit_slope(y, x, w) == pytest.approx(
        lg.fit_slope(y[keep], x[keep], w[keep]), abs=1e-12
    )
    assert lg.fit_intercept(y, x, w) == pytest.approx(
        lg.fit_intercept(y[keep], x[keep], w[keep]), abs=1e-12
    )


@pytest.mark.parametrize("start", [(0.0, 1.0), (-3.0, 0.2), (2.0, 4.0), (-0.4, 12.0)])
def test_any_start_gives_the_same_estimate(start: tuple[float, float]) -> None:
    """A bootstrap draw starts from the rows' estimates; far starts take the halving path."""
    y, x, w = _rows(8, 3000, slope=1.4, weighted=True)
    reference = lg.fit_slope(y, x, w)
    assert lg.fit_slope(y, x, w, start=start) == pytest.approx(reference, abs=1e-10)
    assert lg.fit_intercept(y, x, w, start=start[0]) == pytest.approx(
        lg.fit_intercept(y, x, w), abs=1e-10
    )


def _separated(ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every event's logit p̂ at or above every non-event's (``ties``: one of each at −1)."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-5, -1, 300), rng.uniform(-1, 1, 30)])
    y = np.concatenate([np.zeros(300), np.ones(30)])
    if ties:
        x[0], x[-1] = -1.0, -1.0
    else:
        x[-1] = -0.5
    return y, x


@pytest.mark.parametrize("ties", [False, True], ids=["complete", "quasi-complete"])
def test_separated_rows_have_no_slope_and_say_so(ties: bool) -> None:
    """Where statsmodels warned and returned some large slope, the fit returns NaN with a
    warning that says why (no maximum exists: Albert & Anderson 1984)."""
    y, x = _separated(ties)
    with pytest.warns(lg.NoEstimateWarning, match="does not overlap"):
        a, b = lg.fit_slope(y, x)
    assert np.isnan(a) and np.isnan(b)
    if not ties:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit()
        assert any(issubclass(c.category, PerfectSeparationWarning) for c in caught)
    # the intercept alone (slope fixed at 1) still has a maximum
    assert np.isfinite(lg.fit_intercept(y, x))


def test_one_overlapping_pair_is_enough_for_a_slope() -> None:
    y, x = _separated(ties=False)
    x[0] = 0.2  # one non-event above the lowest event
    a, b = lg.fit_slope(y, x)
    ref = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-12).params
    assert (a, b) == pytest.approx(tuple(ref), rel=1e-9)
    assert b > 5  # steep, and finite


@pytest.mark.parametrize("w", [None, np.array([1.0, 0, 0, 2.0, 0])])
def test_one_class_among_the_weighted_rows_has_no_estimate(w) -> None:
    y = np.array([1.0, 0, 0, 1, 0])
    x = np.array([-1.0, -2, -3, 0, 1])
    if w is None:
        y = np.ones(5)
    with pytest.warns(lg.NoEstimateWarning, match="one class"):
        assert np.isnan(lg.fit_intercept(y, x, w))
    with pytest.warns(lg.NoEstimateWarning, match="one class"):
        assert np.isnan(lg.fit_slope(y, x, w)[1])


def test_saturated_start_is_nan_with_a_warning_not_an_error() -> None:
    """Every p̂ at exactly 0 or 1 (|logit| ~800 in float64) leaves no curvature: the 2×2
    information is singular (the slope) or zero (the intercept). That ends the fit as not
    converged, with a warning, rather than raising or dividing 0 by 0."""
    y = np.array([0.0, 1, 1, 0])
    x = np.array([-800.0, 800, -800, 800])  # events and non-events overlap: a slope exists
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 on the way
        with pytest.warns(lg.NoEstimateWarning, match="did not converge"):
            assert all(np.isnan(lg.fit_slope(y, x)))
        with pytest.warns(lg.NoEstimateWarning, match="did not converge"):
            assert np.isnan(lg.fit_intercept(y, x))


def test_not_converging_is_nan_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    y, x, _ = _rows(1, 2000, slope=3.0, weighted=False)
    monkeypatch.setattr(lg, "MAX_STEPS", 1)
    with pytest.warns(lg.NoEstimateWarning, match="did not converge"):
        assert np.isnan(lg.fit_slope(y, x, start=(5.0, -2.0))[1])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(30, 600),
    slope=st.floats(0.1, 6.0),
    weighted=st.booleans(),
)
def test_the_score_vanishes_at_every_estimate(seed: int, n: int, slope: float, weighted: bool):
    """The law of a maximum-likelihood fit: where an estimate is returned, the weighted score
    ``Σ w(y − p)·(1, x)`` is 0 (to rounding); where NaN, a warning said why."""
    y, x, w = _rows(seed, n, slope=slope, weighted=weighted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, b = lg.fit_slope(y, x, w)
    if np.isnan(b):
        assert any(issubclass(c.category, lg.NoEstimateWarning) for c in caught)
        return
    resid = w * (y - _expit(a + b * x))
    scale = np.sum(w) * (1 + np.max(np.abs(x)))
    assert abs(resid.sum()) < 1e-9 * scale and abs(np.sum(resid * x)) < 1e-9 * scale
