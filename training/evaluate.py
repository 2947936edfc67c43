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

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import logit
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from statsmodels.nonparametric.smoothers_lowess import lowess

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


def calibration_intercept(y: np.ndarray, p: np.ndarray, w: Weights = None) -> float:
    """Calibration-in-the-large: ``a`` in ``logit P(y) = a + offset(logit p̂)``; ideal 0."""
    y, p, w = _known(y, p, w)
    fit = sm.GLM(
        y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=_logit(p), var_weights=w
    ).fit()
    return float(fit.params[0])


def calibration_slope(y: np.ndarray, p: np.ndarray, w: Weights = None) -> float:
    """``b`` in ``logit P(y) = a + b·logit p̂``; ideal 1, below 1 = predictions too extreme."""
    y, p, w = _known(y, p, w)
    fit = sm.GLM(y, sm.add_constant(_logit(p)), family=sm.families.Binomial(), var_weights=w).fit()
    return float(fit.params[1])


def smoothed_calibration(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The loess-smoothed observed risk at each p̂ (Austin & Steyerberg 2019: span 0.75, no
    robustness iterations; ``delta`` interpolates between close points to keep it fast)."""
    delta = 0.005 * float(np.ptp(p)) if len(p) > 1 else 0.0
    return lowess(y.astype(float), p, frac=0.75, it=0, delta=delta, return_sorted=False)


def calibration_errors(y: np.ndarray, p: np.ndarray, w: Weights = None) -> dict[str, float]:
    """ICI (mean), E50, E90 and Emax of ``|p̂ − loess(y ~ p̂)|``. With IPCW weights the loess
    smooths ``w·y`` over every row (weight-0 rows included): E[w·y | x] is the cumulative
    incidence at the horizon, so the smooth is the observed risk, as in the Brier score."""
    gap = np.abs(p - smoothed_calibration(y if w is None else w * y, p))
    return {
        "ici": float(gap.mean()),
        "e50": float(np.quantile(gap, 0.5)),
        "e90": float(np.quantile(gap, 0.9)),
        "emax": float(gap.max()),
    }


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10, w: Weights = None) -> float:
    """Σ (|B|/N)·|observed rate − mean p̂| over equal-width bins of p̂ (weighted: IPCW rates)."""
    w = np.ones(len(y)) if w is None else w
    idx = np.minimum((p * bins).astype(int), bins - 1)
    obs = np.bincount(idx, weights=w * y, minlength=bins)
    pred = np.bincount(idx, weights=w * p, minlength=bins)
    return float(np.abs(obs - pred).sum() / len(y))


def core_metrics(y: np.ndarray, p: np.ndarray, w: Weights = None) -> dict[str, float]:
    """Discrimination and weak calibration (no smoothing): AUROC, AUPRC, Brier, intercept, slope."""
    y = y.astype(float)
    yk, pk, wk = _known(y, p, w)
    brier = float(brier_score_loss(y, p)) if w is None else float(np.sum(w * (y - p) ** 2) / len(y))
    return {
        "auroc": float(roc_auc_score(yk, pk, sample_weight=wk)),
        "auprc": float(average_precision_score(yk, pk, sample_weight=wk)),
        "brier": brier,
        "calibration_intercept": calibration_intercept(y, p, w),
        "calibration_slope": calibration_slope(y, p, w),
    }


def probability_metrics(y: np.ndarray, p: np.ndarray, w: Weights = None) -> dict[str, float]:
    """Every metric of the module docstring for probabilities ``p`` and outcomes ``y`` (0/1)."""
    core = core_metrics(y, p, w)
    prev = y.mean() if w is None else float(np.sum(w * y) / len(y))
    return {
        **core,
        "scaled_brier": float(1 - core["brier"] / (prev * (1 - prev))),
        **calibration_errors(y, p, w),
        "ece": ece(y, p, w=w),
    }


def rank_metrics(y: np.ndarray, score: np.ndarray, w: Weights = None) -> dict[str, float]:
    """AUROC and AUPRC of any score where higher means more risk (e.g. Khorana points)."""
    yk, sk, wk = _known(y, score, w)
    return {
        "auroc": float(roc_auc_score(yk, sk, sample_weight=wk)),
        "auprc": float(average_precision_score(yk, sk, sample_weight=wk)),
    }


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
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The metrics on the rows, and on ``n_boot`` seeded resamples of them (rows drawn with
    replacement). Resamples with a single class among the weighted rows are redrawn, so
    every draw is of a valid sample. With weights, Ĝ is not re-estimated in each resample,
    so the draws leave out its own uncertainty."""
    point = metrics(y, p) if w is None else metrics(y, p, w)
    rng = np.random.default_rng(seed)
    draws: list[dict[str, float]] = []
    n = len(y)
    while len(draws) < n_boot:
        idx = rng.integers(0, n, n)
        known = y[idx] if w is None else y[idx][w[idx] > 0]
        if 0 < known.sum() < len(known):
            draws.append(metrics(y[idx], p[idx]) if w is None else metrics(y[idx], p[idx], w[idx]))
    return point, {k: np.array([d[k] for d in draws], dtype=float) for k in point}


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
) -> dict[str, Estimate]:
    """Point estimates with 95 % bootstrap intervals that hold them (``interval``), from
    ``bootstrap_draws``."""
    point, draws = bootstrap_draws(y, p, metrics, w=w, n_boot=n_boot, seed=seed)
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
