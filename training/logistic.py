"""Logistic regressions of one and two coefficients, by Newton–Raphson: the calibration
intercept and slope of ``training.evaluate``.

The calibration intercept is ``a`` in ``logit P(y) = a + offset(logit p̂)`` and the slope is
``b`` in ``logit P(y) = a + b·logit p̂`` (Van Calster B et al., BMC Med 2019;17:230), each the
maximum of the weighted binomial log-likelihood ``ℓ = Σ wᵢ[yᵢηᵢ − log(1 + e^ηᵢ)]``. That is
what statsmodels' ``GLM(Binomial, var_weights=w)`` computes, and it stays the reference in
the tests (equal to 1e-9, weighted and unweighted, near separation included). Here the fit
is a few lines of numpy: statsmodels builds a model and a results object per fit, and the
bootstrap draws' GLM fits were most of the time a 1,000,000-row training took (issue 22).

ℓ is concave, so Newton's method (McCullagh P, Nelder JA, Generalized Linear Models, 2nd
ed., 1989, §2.5) converges quadratically near its maximum; the fit stops at a step below
``TOL`` in both coefficients (the error left is of the order of the step squared). A step
that lowers ℓ is halved, as R's ``glm.fit`` does. ℓ itself is only computed for steps that
could lower it: a Newton step δ that moves no row's log-odds by more than 1 raises ℓ, since
each row's curvature ``p(1 − p)`` changes by at most a factor ``e^|Δη|`` along it, so
``ℓ(β + δ) − ℓ(β) ≥ q·(1 − (e − 2)) > 0`` with ``q = δᵀ(−H)δ``. A bootstrap draw starts from
the estimate on the rows themselves (``training.evaluate.bootstrap_draws``).

When there is no maximum there is no number: the rows with weight hold one class only, or
(for the slope) p̂ does not overlap between events and non-events (every event at or above
every non-event, or the reverse: ℓ grows without bound with the slope; Albert A, Anderson
JA, Biometrika 1984;71:1). Then, and if ``MAX_STEPS`` steps do not converge, the fit returns
NaN with a ``NoEstimateWarning`` that says why: a bootstrap interval with such a draw is NaN
too, and the model card shows it, rather than an arbitrary large slope.
"""

from __future__ import annotations

import warnings

import numpy as np

#: the largest last step, in either coefficient (what is left is of the order of its square)
TOL = 1e-6
MAX_STEPS = 50
MAX_HALVINGS = 30
#: a step that moves no row's log-odds by more than this raises ℓ (module docstring)
SAFE_STEP = 1.0
#: a step is halved when ℓ falls by more than this share of it (rounding in a sum of 10⁶
#: terms is ~1e-14 of it; a step that overshoots loses far more)
FALL = 1e-12


class NoEstimateWarning(RuntimeWarning):
    """A calibration fit has no estimate on these rows (NaN is returned)."""


def _expit(eta: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # e^−η = inf for η < −709: p = 0, as it should
        return 1.0 / (1.0 + np.exp(-eta))


def _log_likelihood(eta: np.ndarray, w: np.ndarray, wy: np.ndarray) -> float:
    """``Σ w[yη − log(1 + e^η)]`` (``wy = w·y``), with ``log(1 + e^η) = max(η, 0) +
    log(1 + e^−|η|)``, which cannot overflow."""
    soft = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
    return float(np.sum(wy * eta) - np.sum(w * soft))


def _newton(
    y: np.ndarray,
    w: np.ndarray,
    x: np.ndarray | None,
    offset: np.ndarray | float,
    start: float | tuple[float, float],
) -> np.ndarray | None:
    """The maximum-likelihood ``[a]`` (``x`` None) or ``[a, b]`` of ``logit P(y) = offset +
    a (+ b·x)`` from ``start``; None when ``MAX_STEPS`` steps do not converge."""

    def eta_of(beta: np.ndarray) -> np.ndarray:
        return offset + beta[0] if x is None else offset + beta[0] + beta[1] * x

    wy = w * y
    score_y = [wy.sum()] if x is None else [wy.sum(), np.sum(wy * x)]
    x_max = 0.0 if x is None else float(np.max(np.abs(x)))
    beta = np.atleast_1d(np.asarray(start, dtype=float))
    eta = eta_of(beta)
    loglik = None  # ℓ(beta), computed when a step needs checking
    for _ in range(MAX_STEPS):
        mu = _expit(eta)
        wmu = w * mu
        info = wmu * (1.0 - mu)
        if info.sum() <= 0.0:  # every p̂ saturated at 0 or 1: no curvature, no estimate
            return None
        if x is None:
            step = np.array([(score_y[0] - wmu.sum()) / info.sum()])
        else:
            info_x = info * x
            hessian = [[info.sum(), info_x.sum()], [info_x.sum(), np.sum(info_x * x)]]
            score = [score_y[0] - wmu.sum(), score_y[1] - np.sum(wmu * x)]
            try:
                step = np.linalg.solve(hessian, score)
            except np.linalg.LinAlgError:  # x constant where p̂ is not saturated: no slope
                return None
        if np.max(np.abs(step)) <= TOL:
            return beta + step
        if abs(step[0]) + (abs(step[1]) * x_max if x is not None else 0.0) <= SAFE_STEP:
            beta = beta + step
            eta, loglik = eta_of(beta), None
            continue
        if loglik is None:
            loglik = _log_likelihood(eta, w, wy)
        for _ in range(MAX_HALVINGS):
            trial_eta = eta_of(beta + step)
            trial_loglik = _log_likelihood(trial_eta, w, wy)
            if trial_loglik >= loglik - FALL * abs(loglik):
                break
            step = step / 2
        else:
            return None
        beta, eta, loglik = beta + step, trial_eta, trial_loglik
    return None


def _no_estimate(why: str) -> None:
    warnings.warn(
        f"no calibration estimate: {why}; it is reported as NaN", NoEstimateWarning, stacklevel=3
    )


ONE_CLASS = "the rows with weight hold one class only"
NOT_CONVERGED = f"Newton's method did not converge in {MAX_STEPS} steps"


def _rows(y: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes as floats, weights (1 without ``w``; rows of weight 0 add nothing to ℓ and
    are kept) and which rows have weight."""
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    return y, w, w > 0


def fit_intercept(
    y: np.ndarray, offset: np.ndarray, w: np.ndarray | None = None, start: float = 0.0
) -> float:
    """``a`` of ``logit P(y) = a + offset`` (weighted by ``w``); NaN, with a
    ``NoEstimateWarning``, when the rows with weight hold one class only or the fit does not
    converge."""
    y, w, weighted = _rows(y, w)
    event = weighted & (y == 1)
    if not (event.any() and (weighted & ~event).any()):
        _no_estimate(ONE_CLASS)
        return float("nan")
    beta = _newton(y, w, None, np.asarray(offset, dtype=float), start)
    if beta is None:
        _no_estimate(NOT_CONVERGED)
        return float("nan")
    return float(beta[0])


def fit_slope(
    y: np.ndarray,
    x: np.ndarray,
    w: np.ndarray | None = None,
    start: tuple[float, float] = (0.0, 1.0),
) -> tuple[float, float]:
    """``(a, b)`` of ``logit P(y) = a + b·x`` (weighted by ``w``), from ``start`` (by default
    the ideal calibration); ``(NaN, NaN)``, with a ``NoEstimateWarning``, when the rows with
    weight hold one class only, when ``x`` does not overlap between events and non-events
    (no finite maximum), or when the fit does not converge."""
    y, w, weighted = _rows(y, w)
    x = np.asarray(x, dtype=float)
    event, other = weighted & (y == 1), weighted & (y != 1)
    if not (event.any() and other.any()):
        _no_estimate(ONE_CLASS)
        return float("nan"), float("nan")
    lo_event, hi_event = (
        np.min(x, where=event, initial=np.inf),
        np.max(x, where=event, initial=-np.inf),
    )
    lo_other, hi_other = (
        np.min(x, where=other, initial=np.inf),
        np.max(x, where=other, initial=-np.inf),
    )
    if not (lo_event < hi_other and lo_other < hi_event):
        _no_estimate("p̂ does not overlap between events and non-events, so no slope is finite")
        return float("nan"), float("nan")
    beta = _newton(y, w, x, 0.0, start)
    if beta is None:
        _no_estimate(NOT_CONVERGED)
        return float("nan"), float("nan")
    return float(beta[0]), float(beta[1])
