"""How good is a risk model on held-out rows: discrimination, calibration, clinical utility.

Metrics and their sources (clinical.md §5.2):

- AUROC and AUPRC (report AUPRC beside AUROC for rare outcomes).
- Brier score, and the scaled Brier ``1 − Brier / (p̄(1 − p̄))``.
- Calibration intercept (calibration-in-the-large: ``logit P(y) = a + offset(logit p̂)``)
  and calibration slope (``logit P(y) = a + b·logit p̂``); ideal 0 and 1. Van Calster B
  et al., BMC Med 2019;17:230 (STRATOS): report the slope at internal validation, the
  curve, intercept and slope at external validation; no Hosmer–Lemeshow.
- ICI, E50, E90, Emax: the absolute gap between p̂ and a loess smooth of y on p̂.
  Austin PC, Steyerberg EW, Stat Med 2019;38:4051.
- ECE with ten equal-width bins (secondary to ICI; Naeini MP, AAAI 2015; Guo C, ICML 2017).
- Net benefit ``TP/N − FP/N · pt/(1 − pt)`` against treat-all and treat-none
  (Vickers AJ, Elkin EB, Med Decis Making 2006).

Every metric gets a 95 % bootstrap interval over the test rows (``bootstrap``): the
percentile interval placed around the estimate, so that it always holds the estimate.

Each takes optional row weights ``w``: the inverse probability of censoring weights of a
horizon (``training.survival.ipcw``), which make the metrics of a binary outcome those of
the cumulative incidence at that horizon with censored follow-up (rows censored before
the horizon carry weight 0). The weighted AUROC is then the cumulative/dynamic
time-dependent AUROC with competing risks (Blanche P et al., Stat Med 2013;32:5381) and
the weighted Brier score the IPCW Brier score over all rows (Graf E et al., Stat Med
1999;18:2529). The smoothed calibration (ICI, E50, E90, Emax) smooths ``w·y``, whose
expectation given the predictors is the cumulative incidence at the horizon.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logit

from training import logistic
from training.lowess import lowess

EPS = 1e-6
THRESHOLDS = np.round(np.arange(0.02, 0.3001, 0.01), 2)  # decision curve, 2–30 %
PROBABILITY_METRICS = (
    "auroc",
    "auprc",
    "brier",
    "scaled_brier",
    "calibration_intercept",
    "calibration_slope",
    "ici",
    "e50",
    "e90",
    "emax",
    "ece",
)
RANK_METRICS = ("auroc", "auprc")  # for point scores, which are not probabilities


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, EPS, 1 - EPS))


Weights = np.ndarray | None


def _known(y: np.ndarray, p: np.ndarray, w: Weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows that carry weight, with their weights (all 1 without ``w``)."""
    if w is None:
        return y, p, np.ones(len(y))
    m = w > 0
    return y[m], p[m], w[m]


def calibration_intercept(
    y: np.ndarray, p: np.ndarray, w: Weights = None, start: float = 0.0
) -> float:
    """Calibration-in-the-large: ``a`` in ``logit P(y) = a + offset(logit p̂)``; ideal 0.
    Fitted by ``training.logistic`` (statsmodels' GLM is the reference in the tests)."""
    return logistic.fit_intercept(y, _logit(p), w, start)


def calibration_slope(
    y: np.ndarray, p: np.ndarray, w: Weights = None, start: tuple[float, float] = (0.0, 1.0)
) -> float:
    """``b`` in ``logit P(y) = a + b·logit p̂``; ideal 1, below 1 = predictions too extreme.
    ``start`` is ``(a, b)`` to start the fit from (``training.logistic``)."""
    return logistic.fit_slope(y, _logit(p), w, start)[1]


def smoothed_calibration(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The loess-smoothed observed risk at each p̂ (Austin & Steyerberg 2019: span 0.75, no
    robustness iterations; ``delta`` interpolates between close points to keep it fast):
    statsmodels' ``lowess``, compiled in ``training.lowess``."""
    delta = 0.005 * float(np.ptp(p)) if len(p) > 1 else 0.0
    return lowess(y.astype(float), p, frac=0.75, delta=delta)


def calibration_errors(y: np.ndarray, p: np.ndarray, w: Weights = None) -> dict[str, float]:
    """ICI (mean), E50, E90 and Emax of ``|p̂ − loess(y ~ p̂)|``. With IPCW weights the loess
    smooths ``w·y`` over every row (weight-0 rows included): E[w·y | x] is the cumulative
    incidence at the horizon, so the smooth is the observed risk, as in the Brier score."""
    gap = np.abs(p - smoothed_calibration(y if w is None else w * y, p))
    e50, e90 = np.quantile(gap, [0.5, 0.9])
    return {
        "ici": float(gap.mean()),
        "e50": float(e50),
        "e90": float(e90),
        "emax": float(gap.max()),
    }


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10, w: Weights = None) -> float:
    """Σ (|B|/N)·|observed rate − mean p̂| over equal-width bins of p̂ (weighted: IPCW rates)."""
    w = np.ones(len(y)) if w is None else w
    idx = np.minimum((p * bins).astype(int), bins - 1)
    obs = np.bincount(idx, weights=w * y, minlength=bins)
    pred = np.bincount(idx, weights=w * p, minlength=bins)
    return float(np.abs(obs - pred).sum() / len(y))


def roc_pr_areas(y: np.ndarray, score: np.ndarray, w: Weights = None) -> tuple[float, float]:
    """AUROC and AUPRC (average precision) from one sort of the scores: scikit-learn's
    ``roc_auc_score`` and ``average_precision_score`` with ``sample_weight``, which the tests
    hold them equal to (1e-12), without their input checks and with one sort for both. The
    weighted true and false positives are summed down the distinct scores, highest first;
    AUROC is the trapezoidal area under (FPR, TPR), AUPRC ``Σ (Rₖ − Rₖ₋₁)·Pₖ``. Scores
    already ascending (a bootstrap draw, ``bootstrap_draws``) are not sorted again. NaN, with
    a warning as scikit-learn gives, when the weighted rows hold one class only."""
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    if len(score) > 1 and not np.all(score[1:] >= score[:-1]):
        order = np.argsort(score, kind="stable")
        y, score, w = y[order], score[order], w[order]
    # highest score first; the last row of each run of equal scores is a threshold
    tps = np.cumsum((w * y)[::-1])
    fps = np.cumsum((w * (1 - y))[::-1])
    ends = np.append(np.flatnonzero(np.diff(score[::-1])), len(y) - 1)
    tp, fp = tps[ends], fps[ends]
    if not (tp[-1] > 0 and fp[-1] > 0):
        warnings.warn(
            "only one class among the weighted rows: AUROC and AUPRC are not defined (NaN)",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan"), float("nan")
    auroc = np.trapezoid(np.append(0.0, tp / tp[-1]), np.append(0.0, fp / fp[-1]))
    positives = tp + fp
    precision = np.divide(tp, positives, out=np.zeros_like(tp), where=positives != 0)
    auprc = np.sum(np.diff(np.append(0.0, tp / tp[-1])) * precision)
    return float(auroc), float(max(0.0, auprc))


def core_metrics(
    y: np.ndarray, p: np.ndarray, w: Weights = None, start: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Discrimination and weak calibration (no smoothing): AUROC, AUPRC, Brier, intercept,
    slope. ``start``: these metrics on the rows a bootstrap draw resamples, where its
    calibration fits start (``bootstrap_draws``)."""
    y = y.astype(float)
    yk, pk, wk = _known(y, p, w)
    auroc, auprc = roc_pr_areas(yk, pk, wk)
    brier = float(np.mean((y - p) ** 2)) if w is None else float(np.sum(w * (y - p) ** 2) / len(y))
    intercept, slope = (0.0, (0.0, 1.0)) if start is None else _starts(start)
    x = _logit(p)  # as calibration_intercept and calibration_slope, computed once
    return {
        "auroc": auroc,
        "auprc": auprc,
        "brier": brier,
        "calibration_intercept": logistic.fit_intercept(y, x, w, intercept),
        "calibration_slope": logistic.fit_slope(y, x, w, slope)[1],
    }


def _starts(point: Mapping[str, float]) -> tuple[float, tuple[float, float]]:
    """Where a draw's calibration fits start: the intercept at the rows' intercept, the slope
    fit at the rows' slope with that intercept (its own intercept is not kept; any start
    near the maximum converges to it, as the tests check)."""
    intercept, slope = point["calibration_intercept"], point["calibration_slope"]
    if np.isnan(intercept) or np.isnan(slope):
        return 0.0, (0.0, 1.0)
    return intercept, (intercept, slope)


def probability_metrics(
    y: np.ndarray, p: np.ndarray, w: Weights = None, start: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Every metric of the module docstring for probabilities ``p`` and outcomes ``y`` (0/1);
    ``start`` as in ``core_metrics``."""
    core = core_metrics(y, p, w, start)
    prev = y.mean() if w is None else float(np.sum(w * y) / len(y))
    return {
        **core,
        "scaled_brier": float(1 - core["brier"] / (prev * (1 - prev))),
        **calibration_errors(y, p, w),
        "ece": ece(y, p, w=w),
    }


def rank_metrics(y: np.ndarray, score: np.ndarray, w: Weights = None) -> dict[str, float]:
    """AUROC and AUPRC of any score where higher means more risk (e.g. Khorana points)."""
    auroc, auprc = roc_pr_areas(*_known(y, score, w))
    return {"auroc": auroc, "auprc": auprc}


#: the metrics whose calibration fits a bootstrap draw starts from the rows' estimates
WARM_STARTED = (core_metrics, probability_metrics)

#: the values each metric can take; the intervals are clipped to them (others: unbounded)
BOUNDS: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("auroc", "auprc", "brier", "ici", "e50", "e90", "emax", "ece"), (0.0, 1.0)),
    "scaled_brier": (-np.inf, 1.0),
}


def bootstrap_draws(
    y: np.ndarray,
    p: np.ndarray,
    metrics: Callable[..., dict[str, float]],
    *,
    w: Weights = None,
    n_boot: int = 200,
    seed: int = 7,
    n_jobs: int | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The metrics on the rows, and on ``n_boot`` seeded resamples of them (rows drawn with
    replacement). Resamples with a single class among the weighted rows are redrawn, so
    every draw is of a valid sample. With weights, Ĝ is not re-estimated in each resample,
    so the draws leave out its own uncertainty.

    The resamples are drawn in one sequence from ``default_rng(seed)`` and measured on
    ``n_jobs`` threads (default: every core this process may use), so the draws do not
    depend on ``n_jobs``. A resample is the same multiset of rows whatever their order, so
    each is measured in ascending ``p`` (the rows' sort, each row repeated as often as it
    was drawn; by the last column when ``p`` has several): the AUROC, AUPRC and loess then
    need no sort of their own. Every metric of this module is a sum over rows or a
    statistic of the sorted rows, so the order moves no more than the last digits of its
    sums (the tests hold the figures to the sequential statsmodels/scikit-learn version).
    The calibration fits of ``core_metrics`` and ``probability_metrics`` start from their
    estimates on the rows."""
    point = metrics(y, p) if w is None else metrics(y, p, w)
    extra: dict[str, Any] = {"start": point} if metrics in WARM_STARTED else {}
    n = len(y)
    order = np.argsort(p if p.ndim == 1 else p[:, -1], kind="stable")

    def measure(idx: np.ndarray) -> dict[str, float]:
        idx = np.repeat(order, np.bincount(idx, minlength=n)[order])  # the rows, by p
        if w is None:
            return metrics(y[idx], p[idx], **extra)
        return metrics(y[idx], p[idx], w[idx], **extra)

    resamples = _resamples(y, w, n_boot, seed)
    draws = list(_in_order(measure, resamples, n_jobs))
    return point, {k: np.array([d[k] for d in draws], dtype=float) for k in point}


def _resamples(y: np.ndarray, w: Weights, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The row indices of ``n_boot`` resamples with both classes among the weighted rows,
    drawn in sequence from ``default_rng(seed)`` (a resample with one class is redrawn)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    # 0 no event, 1 event, 2 no weight: a resample's counts of each tell whether it is valid
    kind = np.where(y > 0, 1, 0).astype(np.int8)
    if w is not None:
        kind[w <= 0] = 2
    accepted = 0
    while accepted < n_boot:
        idx = rng.integers(0, n, n)
        no_event, events, _ = np.bincount(kind[idx], minlength=3)
        if events > 0 and no_event > 0:
            accepted += 1
            yield idx


def _in_order(
    fn: Callable[[np.ndarray], dict[str, float]], items: Iterable[np.ndarray], n_jobs: int | None
) -> Iterator[dict[str, float]]:
    """``fn`` of each item, in the items' order, on ``n_jobs`` threads; at most two items per
    thread are drawn ahead, so a 1,000,000-row table holds a few resamples at a time. The
    work (numpy, the compiled loess) releases the GIL."""
    n_jobs = n_jobs or len(os.sched_getaffinity(0))
    if n_jobs == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(n_jobs, thread_name_prefix="bootstrap") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * n_jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def interval(
    value: float,
    draws: np.ndarray,
    bounds: tuple[float, float] = (-np.inf, np.inf),
    level: float = 0.95,
) -> Estimate:
    """The bootstrap percentile interval placed around the estimate: the quantiles of
    ``draws − (median(draws) − value)``, clipped to the values the metric can take.

    The percentile interval (Efron B, Tibshirani RJ, An Introduction to the Bootstrap,
    1993, §13.3) takes the quantiles of the draws as they are. For a statistic that the
    resampling biases, those can all lie on one side of the estimate: the calibration
    errors are ≥ 0, a resample adds its own noise to the loess smooth and an absolute gap
    grows with noise, so they come out larger in a resample than in the sample, and a
    model card showed Emax 0.053 (0.062–0.276). The reverse-percentile ("basic") and the
    bias-corrected percentile (BC; DiCiccio TJ, Efron B, Stat Sci 1996;11:189) intervals
    do not mend this: each holds the estimate exactly when the percentile interval does
    (BC when ``|z0| ≤ 1.96``, i.e. when the estimate lies within the draws' central 95 %,
    ``z0`` being the normal quantile of the share of draws below it). So the
    draws are first moved by the bootstrap estimate of the median bias, ``median(draws) −
    value`` (Efron & Tibshirani 1993, §10, with the median for the mean, which the skewed
    draws of a maximum such as Emax would drag), and the percentile interval is taken
    from them: the interval keeps the draws' width and skew and always holds the
    estimate, since the median of the moved draws is the estimate. For a statistic the
    resampling does not bias (AUROC, the calibration slope and intercept) the move is
    small and the interval is the percentile interval. The interval says how far the
    estimate moves from sample to sample; it does not correct the estimate's own bias (a
    calibration error near 0 is an upper estimate)."""
    if np.isnan(value) or np.isnan(draws).any():
        return Estimate(value, np.nan, np.nan)
    alpha = (1 - level) / 2
    q_lo, median, q_hi = np.quantile(draws, [alpha, 0.5, 1 - alpha])
    # the moved draws' quantiles, written so that rounding cannot put them past the estimate
    lo, hi = value - max(median - q_lo, 0.0), value + max(q_hi - median, 0.0)
    return Estimate(value, float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds)))


def bootstrap(
    y: np.ndarray,
    p: np.ndarray,
    metrics: Callable[..., dict[str, float]],
    *,
    w: Weights = None,
    n_boot: int = 200,
    seed: int = 7,
    n_jobs: int | None = None,
) -> dict[str, Estimate]:
    """Point estimates with 95 % bootstrap intervals that hold them (``interval``), from
    ``bootstrap_draws``."""
    point, draws = bootstrap_draws(y, p, metrics, w=w, n_boot=n_boot, seed=seed, n_jobs=n_jobs)
    return {k: interval(v, draws[k], BOUNDS.get(k, (-np.inf, np.inf))) for k, v in point.items()}


def net_benefit(y: np.ndarray, treat: np.ndarray, pt: float, w: Weights = None) -> float:
    """Net benefit of treating the rows where ``treat`` is true, at threshold probability ``pt``
    (with weights: IPCW-weighted true and false positives over all n rows)."""
    n = len(y)
    w = np.ones(n) if w is None else w
    tp = float(np.sum(w * (treat & (y == 1))))
    fp = float(np.sum(w * (treat & (y == 0))))
    return tp / n - fp / n * pt / (1 - pt)


def decision_curve(
    y: np.ndarray,
    models: Mapping[str, np.ndarray],
    rules: Mapping[str, np.ndarray] | None = None,
    thresholds: np.ndarray = THRESHOLDS,
    w: Weights = None,
) -> pd.DataFrame:
    """Net benefit per threshold for each probability model (treat when p̂ ≥ pt), each fixed
    rule (treat where the rule is true, e.g. Khorana ≥2), treat-all and treat-none."""
    prev = float(np.mean(y)) if w is None else float(np.sum(w * y) / len(y))
    rows = []
    for pt in thresholds:
        row = {
            "threshold": float(pt),
            "treat_all": prev - (1 - prev) * pt / (1 - pt),
            "treat_none": 0.0,
        }
        for name, p in models.items():
            row[name] = net_benefit(y, p >= pt, pt, w)
        for name, treat in (rules or {}).items():
            row[name] = net_benefit(y, treat.astype(bool), pt, w)
        rows.append(row)
    return pd.DataFrame(rows)


def _age_band(age: np.ndarray) -> np.ndarray:
    bands = np.select([age < 60, age < 70, age < 80], ["<60", "60–69", "70–79"], "≥80")
    return np.where(np.isnan(age), "unknown", bands).astype(object)


def _stage_group(stage: np.ndarray) -> np.ndarray:
    return np.where(np.isin(stage, ("III", "IV")), "III–IV", "I–II").astype(object)


def _setting(suspected: np.ndarray) -> np.ndarray:
    return np.where(suspected == 1, "PE suspected", "routine").astype(object)


def _label(values: np.ndarray) -> np.ndarray:
    return np.array(["unknown" if v is None else str(v) for v in values], dtype=object)


SUBGROUPS: dict[str, Callable[[Mapping[str, np.ndarray]], np.ndarray]] = {
    "sex": lambda c: _label(c["sex"]),
    "age band": lambda c: _age_band(c["age"]),
    "stage": lambda c: _stage_group(c["stage"]),
    "histology": lambda c: _label(c["histology"]),
    "setting": lambda c: _setting(c["suspected_pe"]),
}


def subgroup_table(
    columns: Mapping[str, np.ndarray],
    y: np.ndarray,
    p: np.ndarray,
    min_events: int = 10,
    w: Weights = None,
) -> pd.DataFrame:
    """Per subgroup (TRIPOD+AI 23a): rows, events, observed and mean predicted risk, the
    observed/expected ratio, and AUROC and calibration slope where there are enough events
    (with weights: IPCW-weighted observed risk, events among the rows with known status)."""
    w = np.ones(len(y)) if w is None else w
    rows = []
    for by, group_of in SUBGROUPS.items():
        groups = group_of(columns)
        for g in sorted(set(groups)):
            m = groups == g
            yy, pp, ww = y[m], p[m], w[m]
            events = int(yy[ww > 0].sum())
            enough = min_events <= events <= int((ww > 0).sum()) - min_events
            observed = float(np.sum(ww * yy) / len(yy))
            rows.append(
                {
                    "subgroup": by,
                    "level": g,
                    "rows": int(m.sum()),
                    "events": events,
                    "observed": observed,
                    "predicted": float(pp.mean()),
                    "o_e_ratio": float(observed / pp.mean()),
                    "auroc": rank_metrics(yy, pp, ww)["auroc"] if enough else np.nan,
                    "calibration_slope": calibration_slope(yy, pp, ww) if enough else np.nan,
                }
            )
    return pd.DataFrame(rows)


def calibration_curve_points(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed rate and mean prediction per decile of p̂ (the dots of the calibration plot)."""
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, bins):
        out.append({"predicted": float(p[chunk].mean()), "observed": float(y[chunk].mean())})
    return pd.DataFrame(out)
