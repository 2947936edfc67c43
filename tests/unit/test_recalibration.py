"""Logistic recalibration of a registered model's calibration map (``training.external``),
checked against scikit-learn's unpenalised logistic regression and against known shifts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from models.artifact import Calibration
from training import evaluate as ev
from training.external import updated_calibration

CAL = Calibration(a=0.9, intercepts=(-4.0, -3.2, -2.6))


def _sample(n: int, shift: float, slope: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    margin = rng.normal(0.0, 1.0, n)
    lp = CAL.a * margin[:, None] + np.asarray(CAL.intercepts)[None, :]
    true = expit(shift + slope * lp)
    y = (rng.random((n, 1)) < true).astype(float)
    y = np.maximum.accumulate(y, axis=1)  # a PE by 30 days is a PE by 90 and 180 days
    return margin, y, true


def test_the_slope_method_matches_an_unpenalised_logistic_regression() -> None:
    margin, y, _ = _sample(40_000, -0.5, 0.7)
    y180 = y[:, [-1]]
    got = updated_calibration(CAL, margin, y180, np.ones_like(y180), "slope", [2])
    lp = CAL.a * margin + CAL.intercepts[2]
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(lp[:, None], y180[:, 0])
    beta, alpha = float(ref.coef_[0, 0]), float(ref.intercept_[0])
    assert got.a == pytest.approx(beta * CAL.a, abs=1e-4)
    assert got.intercepts[2] == pytest.approx(beta * CAL.intercepts[2] + alpha, abs=1e-4)
    # one table horizon: the same α and β at every horizon (a common shift in log-odds)
    assert got.intercepts[0] == pytest.approx(beta * CAL.intercepts[0] + alpha, abs=1e-4)


def test_the_intercept_method_recovers_a_known_shift_and_keeps_the_slope() -> None:
    margin, y, _ = _sample(200_000, -0.7, 1.0, seed=1)
    got = updated_calibration(CAL, margin, y, np.ones_like(y), "intercept", [0, 1, 2])
    assert got.a == CAL.a
    shifts = np.asarray(got.intercepts) - np.asarray(CAL.intercepts)
    assert shifts == pytest.approx([-0.7] * 3, abs=0.06)


def test_after_an_intercept_update_the_fitting_rows_are_calibrated_in_the_large() -> None:
    margin, y, _ = _sample(20_000, 0.8, 1.0, seed=2)
    w = np.random.default_rng(3).uniform(0.5, 2.0, y.shape)  # IPCW-like weights
    got = updated_calibration(CAL, margin, y, w, "intercept", [0, 1, 2])
    for j in range(3):
        p = expit(got.log_odds(margin, j))
        before = expit(CAL.log_odds(margin, j))
        assert abs(ev.calibration_intercept(y[:, j], before, w[:, j])) > 0.5
        assert ev.calibration_intercept(y[:, j], p, w[:, j]) == pytest.approx(0, abs=1e-6)


def test_recalibrated_intercepts_never_decrease_with_the_horizon() -> None:
    margin, y, _ = _sample(5_000, 0.0, 1.0, seed=4)
    y[:, 2] = y[:, 1]  # no new PE after 90 days, and noise could invert the fitted order
    y[:, 1] = y[:, 0]
    got = updated_calibration(CAL, margin, y, np.ones_like(y), "slope", [0, 1, 2])
    assert list(got.intercepts) == sorted(got.intercepts)


def test_a_method_other_than_intercept_or_slope_is_refused() -> None:
    margin, y, _ = _sample(100, 0.0, 1.0)
    with pytest.raises(ValueError, match="choose intercept or slope"):
        updated_calibration(CAL, margin, y, np.ones_like(y), "isotonic", [0, 1, 2])
