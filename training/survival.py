"""A new PE by a horizon, with death competing and follow-up censored: estimates and metrics.

Every function works on rows *without* PE at the index date (the caller sets the rows with
``pe_days == 0`` apart for the diagnostic question); times are days from the index date.
Sources (clinical.md §5.2 and §6.3):

- Cumulative incidence of PE with death as a competing event: the Aalen–Johansen estimator,
  ``F₁(h) = Σ_{tⱼ ≤ h} S(tⱼ₋₁)·d₁ⱼ/nⱼ`` with S the all-cause Kaplan–Meier; 1 − KM (deaths
  censored) overestimates it (Blood Adv 2022: by up to 23 %). Its 95 % interval is the
  Greenwood-type delta-method variance with a log(−log) transform (Collett D, *Modelling
  Survival Data in Medical Research*, 3rd ed., p. 411), as lifelines' ``AalenJohansenFitter``.
  lifelines is the reference in the tests; here it is computed with numpy because lifelines
  jitters days that a PE and a death share (moving events across the horizon, reseeding
  numpy's global generator) and its variance loops over every event time.
- Inverse probability of censoring weights at a horizon h: Ĝ the Kaplan–Meier of the
  censoring times; weight 1/Ĝ(T⁻) for a PE or a death by h, 1/Ĝ(h) for rows event-free past
  h, 0 for rows censored by h; a death by h without PE is a 0 (no PE by h). Scheike TH,
  Zhang MJ, Gerds TA, Biometrika 2008;95:205 (direct binomial regression). With events
  counted before censorings on the same day, ``Σ wᵢyᵢ / n`` equals the Aalen–Johansen F₁(h)
  exactly, and ``Σ wᵢ = n`` whenever a row is followed past h.
- The metrics at a horizon (time-dependent AUROC, IPCW Brier score, calibration, net
  benefit) are ``training.evaluate``'s, given these weights.
- Rule-out among suspected PE: failure rate (PE among those ruled out) and efficiency (share
  spared imaging), each with a Clopper–Pearson 95 % interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from training.evaluate import Estimate

CENSORED, PE, DEATH = 0, 1, 2
Z95 = float(norm.ppf(0.975))


def first_event(
    pe_days: np.ndarray, death_days: np.ndarray, followup_days: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Time to the first of PE, death and end of follow-up, and its cause (0 censored, 1 PE,
    2 death without PE before it). A PE on the day of death counts as PE. An event recorded
    after ``followup_days`` is refused (the table validator names the row first)."""
    pe = np.asarray(pe_days, dtype=float)
    death = np.asarray(death_days, dtype=float)
    followup = np.asarray(followup_days, dtype=float)
    if np.any(pe <= 0):
        bad = pe[pe <= 0][0]
        raise ValueError(
            f"pe_days={bad:g}: rows with PE at the index date (pe_days = 0) answer the "
            "diagnostic question; set them apart before estimating a new PE by a horizon"
        )
    if not np.all(followup > 0):  # also refuses NaN
        bad = followup[~(followup > 0)][0]
        raise ValueError(f"followup_days={bad:g}: follow-up must be a positive number of days")
    with np.errstate(invalid="ignore"):
        late = (pe > followup) | (death > followup)
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise ValueError(
            f"pe_days={pe[i]:g}, death_days={death[i]:g}, followup_days={followup[i]:g}: an "
            "event after the end of follow-up"
        )
    is_pe = ~np.isnan(pe) & ~(death < pe)
    is_death = ~is_pe & ~np.isnan(death)
    cause = np.select([is_pe, is_death], [PE, DEATH], CENSORED).astype(np.int8)
    time = np.select([is_pe, is_death], [pe, death], followup)
    return time, cause


def _risk_table(time: np.ndarray, cause: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distinct times with the number at risk, PEs, deaths and censorings at each."""
    t, inverse = np.unique(np.asarray(time, dtype=float), return_inverse=True)
    cause = np.asarray(cause)
    counts = [np.bincount(inverse, weights=cause == c, minlength=t.size) for c in (PE, DEATH)]
    removed = np.bincount(inverse, minlength=t.size)
    at_risk = len(cause) - np.concatenate(([0], np.cumsum(removed)[:-1]))
    pe, death = counts
    return t, at_risk.astype(float), pe, death, removed - pe - death


def censoring_survival(time: np.ndarray, cause: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Ĝ(t⁻), the left limit of the Kaplan–Meier of censoring (cause 0 is its event).

    Events on a day come before censorings on that day, so those censored on day t were at
    risk of a PE on day t: the factor at t is ``1 − c/(n − d)``. Without ties this is the
    ordinary Kaplan–Meier (lifelines' ``KaplanMeierFitter`` on ``cause == 0``). Ĝ(h) itself,
    censorings at h included, is ``G(np.nextafter(h, np.inf))``.
    """
    t, n, pe, death, censored = _risk_table(time, cause)
    left = n - pe - death
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(left > 0, 1 - censored / left, 1.0)
    after = np.cumprod(factor)

    def g_left(s: np.ndarray) -> np.ndarray:
        i = np.searchsorted(t, np.asarray(s, dtype=float), side="left") - 1
        return np.where(i >= 0, after[np.maximum(i, 0)], 1.0)

    return g_left


def ipcw(time: np.ndarray, cause: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Outcome ``y`` (PE by h) and inverse probability of censoring weight ``w`` per row:
    1/Ĝ(T⁻) for a PE or death by h, 1/Ĝ(h⁻) if event-free through h (followed to day h or
    past it), 0 if censored before h. A row whose follow-up ends on day h itself is known to
    be event-free at h: tables often close everyone's follow-up on the horizon's day."""
    time = np.asarray(time, dtype=float)
    cause = np.asarray(cause)
    g = censoring_survival(time, cause)
    event_by_h = (time <= horizon) & (cause != CENSORED)
    through = (time >= horizon) & ~event_by_h
    w = np.zeros(time.size)
    w[event_by_h] = 1 / g(time[event_by_h])
    w[through] = 1 / g(np.asarray(float(horizon)))
    y = (event_by_h & (cause == PE)).astype(float)
    return y, w


def cumulative_incidence(
    time: np.ndarray, cause: np.ndarray, horizons: Sequence[float]
) -> pd.DataFrame:
    """Aalen–Johansen cumulative incidence of PE at each horizon with its 95 % interval, the
    PEs and deaths by h and the rows still followed past h.

    The interval is log(−log) delta-method (Collett, as lifelines). With no PE by h the CIF
    is 0 and that interval degenerates: the upper bound is then the one-sided Clopper–Pearson
    ``1 − 0.025^(1/m)`` over the m rows whose status at h is known (past h, or died by h).
    """
    t, n, d1, d2, _ = _risk_table(time, cause)
    d = d1 + d2
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1 - d / n)
        lag = np.concatenate(([1.0], surv[:-1]))
        cif = np.cumsum(lag * d1 / n)
        a = np.where(n > d, d / (n * (n - d)), 0.0)  # Greenwood; 0 where all left have events
        b = lag**2 * d1 * (n - d1) / n**3
        c = lag * d1 / n**2
    time = np.asarray(time, dtype=float)
    cause = np.asarray(cause)
    rows = []
    for h in horizons:
        k = int(np.searchsorted(t, h, side="right"))  # times ≤ h
        f = float(cif[k - 1]) if k else 0.0
        gap = f - cif[:k]
        var = float(np.sum(gap**2 * a[:k] + b[:k] - 2 * gap * c[:k]))
        pe_by_h = int(np.sum((time <= h) & (cause == PE)))
        deaths = int(np.sum((time <= h) & (cause == DEATH)))
        past = int(np.sum(time > h))
        if f <= 0:
            known = past + deaths
            low, high = 0.0, (1 - 0.025 ** (1 / known)) if known else 1.0
        elif f >= 1 or var <= 0:
            low = high = f
        else:
            se = np.sqrt(var) / (f * abs(np.log(f)))
            low = float(np.exp(-np.exp(np.log(-np.log(f)) + Z95 * se)))
            high = float(np.exp(-np.exp(np.log(-np.log(f)) - Z95 * se)))
        rows.append(
            {
                "horizon": h,
                "cif": f,
                "low": low,
                "high": high,
                "pe": pe_by_h,
                "deaths": deaths,
                "followed_past": past,
            }
        )
    return pd.DataFrame(rows)


def calibration_by_group(
    p: np.ndarray, time: np.ndarray, cause: np.ndarray, horizon: float, groups: int = 10
) -> pd.DataFrame:
    """Rows sorted by p̂ in equal-size groups; per group the rows, mean predicted risk at h and
    the observed Aalen–Johansen cumulative incidence at h with its 95 % interval."""
    p, time, cause = np.asarray(p, dtype=float), np.asarray(time), np.asarray(cause)
    order = np.argsort(p, kind="stable")
    out = []
    for g, rows in enumerate(np.array_split(order, groups), start=1):
        obs = cumulative_incidence(time[rows], cause[rows], [horizon]).iloc[0]
        out.append(
            {
                "group": g,
                "rows": rows.size,
                "predicted": float(p[rows].mean()),
                "observed": float(obs["cif"]),
                "low": float(obs["low"]),
                "high": float(obs["high"]),
                "pe": int(obs["pe"]),
            }
        )
    return pd.DataFrame(out)


def _proportion(k: int, n: int) -> Estimate:
    if n == 0:
        return Estimate(np.nan, np.nan, np.nan)
    low, high = proportion_confint(k, n, alpha=0.05, method="beta")
    return Estimate(k / n, float(low), float(high))


def rule_out(pe_now: np.ndarray, ruled_out: np.ndarray) -> dict[str, int | Estimate]:
    """A diagnostic rule-out strategy among suspected-PE rows: the failure rate (PE among those
    ruled out) and the efficiency (share ruled out, spared imaging), each with a
    Clopper–Pearson 95 % interval, and the counts. With nobody ruled out the failure rate is
    undefined: NaN, with a warning."""
    pe_now = np.asarray(pe_now, dtype=bool)
    ruled_out = np.asarray(ruled_out, dtype=bool)
    n, n_out = len(pe_now), int(ruled_out.sum())
    failures = int(np.sum(pe_now & ruled_out))
    if n_out == 0:
        warnings.warn(
            f"no row of {n} was ruled out: the failure rate is undefined (NaN); "
            "report the efficiency (0) alone",
            stacklevel=2,
        )
    return {
        "rows": n,
        "ruled_out": n_out,
        "failures": failures,
        "failure_rate": _proportion(failures, n_out),
        "efficiency": _proportion(n_out, n),
    }
