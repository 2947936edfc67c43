"""The synthetic cohort after the index date: a new PE, death and the end of follow-up.

Part of the generator of ``training.cohort`` (its steps 5 and 6): the PE hazard is the
row's base hazard times the post-operative factor of the effect table evaluated at the
time since surgery (so the month-one peak after surgery emerges in time), the death hazard
follows stage and performance status, latent times are drawn from each, the first event
wins, and follow-up ends at the data cut-off, by loss to follow-up, or after a year.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from features import thresholds as th
from features.contract import HORIZONS_DAYS, STAGES

if TYPE_CHECKING:
    from training.cohort import Effects

#: the longest follow-up: the end of the daily grid (1 year)
MAX_FOLLOWUP_DAYS = int(th.MONTHS_12.value)
#: index dates are drawn over these years; the data cut-off follows the last one
FIRST_INDEX_DATE, INDEX_YEARS = np.datetime64("2021-01-01"), 4

# ---------------------------------------------------------------------------------------
# 5. New PE and death after the index date: daily hazards, constant on pieces
# ---------------------------------------------------------------------------------------

#: the post-operative bands of the effect table and the last day after surgery of each
SURGERY_BANDS = (
    ("surgery_0_30d", th.MONTH_1.value),
    ("surgery_31_91d", th.MONTHS_3.value),
    ("surgery_92_182d", th.MONTHS_6.value),
)


@dataclass(frozen=True)
class _Pieces:
    """Days ``1..MAX_FOLLOWUP_DAYS`` of some rows cut into consecutive pieces on which the PE
    hazard is constant: piece ``j`` of a row covers days ``start[:, j]``..``stop[:, j]``
    (empty when ``stop < start``) and multiplies the row's hazard by ``factor[:, j]``."""

    rows: np.ndarray  # indices into the cohort
    start: np.ndarray  # (k, J)
    stop: np.ndarray
    factor: np.ndarray

    def days(self, horizon: int) -> np.ndarray:
        """How many days of each piece fall within ``1..horizon``."""
        return np.clip(np.minimum(self.stop, horizon) - self.start + 1, 0, None)


def hazard_pieces(days_since_surgery: np.ndarray, ors: dict[str, float]) -> list[_Pieces]:
    """The rows in two groups: those operated in the 182 days before the index date, whose
    hazard steps down through the post-operative bands as the time since surgery
    ``days_since_surgery + t`` passes each band's last day, and the rest (one piece)."""
    d = days_since_surgery
    window = np.flatnonzero(d < SURGERY_BANDS[-1][1])  # NaN (no surgery) is not in it
    rest = np.setdiff1d(np.arange(len(d)), window)
    k = len(rest)
    one = _Pieces(
        rest,
        np.ones((k, 1)),
        np.full((k, 1), float(MAX_FOLLOWUP_DAYS)),
        np.ones((k, 1)),
    )
    dw = d[window][:, None]
    last = np.array([day for _, day in SURGERY_BANDS] + [np.inf])
    first = np.concatenate([[0.0], last[:-1] + 1])
    factor = np.array([ors[name] for name, _ in SURGERY_BANDS] + [1.0])
    start = np.maximum(first - dw, 1)
    stop = np.minimum(last - dw, MAX_FOLLOWUP_DAYS)
    post_op = _Pieces(window, start, stop, np.broadcast_to(factor, start.shape))
    return [one, post_op]


def _incidence(
    rate: np.ndarray, death: np.ndarray, pieces: _Pieces, horizons: tuple[int, ...]
) -> np.ndarray:
    """The cumulative incidence of PE by each horizon, death competing, for ``pieces.rows``:
    ``F(h) = Σ_{t≤h} (1 − e^{−c_t})·e^{−Σ_{s<t}(c_s + μ)}`` with ``c_t`` the day's PE hazard
    (``rate`` × the piece's factor) and ``μ`` the daily death hazard; summed over each
    constant piece as a geometric series. Returns shape ``(k, len(horizons))``."""
    c = rate[pieces.rows, None] * pieces.factor
    x = c + death[pieces.rows, None]
    first_day = -np.expm1(-c)  # P(PE on a day | alive without PE at its start)
    per_day = -np.expm1(-x)
    out = np.empty((len(pieces.rows), len(horizons)))
    for i, h in enumerate(horizons):
        m = pieces.days(h)
        spent = x * m
        # the all-cause hazard before each piece (none before the first)
        before = np.cumsum(spent, axis=1) - spent if spent.shape[1] > 1 else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            series = np.where(per_day > 0, -np.expm1(-spent) / per_day, m)
        out[:, i] = (first_day * np.exp(-before) * series).sum(axis=1)
    return out


def incidence_all(
    rate: np.ndarray, death: np.ndarray, timeline: list[_Pieces], horizons: tuple[int, ...]
) -> np.ndarray:
    out = np.empty((len(rate), len(horizons)))
    for pieces in timeline:
        out[pieces.rows] = _incidence(rate, death, pieces, horizons)
    return out


def draw_pe_day(rate: np.ndarray, e: np.ndarray, timeline: list[_Pieces]) -> np.ndarray:
    """The latent day of a new PE: the first day on which the cumulative PE hazard reaches
    ``e`` (standard exponential), i.e. inversion of ``P(T ≤ t) = 1 − exp(−Λ(t))``; NaN when
    it is not reached by the end of the grid."""
    out = np.full(len(rate), np.nan)
    for p in timeline:
        c = rate[p.rows, None] * p.factor
        spent = c * p.days(MAX_FOLLOWUP_DAYS)
        cum = np.cumsum(spent, axis=1)
        ep = e[p.rows]
        j = (cum < ep[:, None]).sum(axis=1)  # pieces passed before the hazard reaches e
        hit = j < cum.shape[1]
        r, j = np.flatnonzero(hit), j[hit]
        day = p.start[r, j] - 1 + np.ceil((ep[hit] - cum[r, j] + spent[r, j]) / c[r, j])
        out[p.rows[hit]] = np.clip(day, p.start[r, j], p.stop[r, j])  # against rounding
    return out


def death_hazard(stage: np.ndarray, ecog: np.ndarray, fx: Effects) -> np.ndarray:
    """The daily death hazard: a rate per stage times the table's hazard ratio per ECOG
    point, the stage's rate solved so that its mean P(death by 180 days) is the table's."""
    hr = fx("ecog", "death_hazard_ratio_per_point") ** ecog
    horizon = HORIZONS_DAYS[-1]
    out = np.empty(len(stage))
    for s in STAGES:
        rows = stage == s
        target = fx("death", f"p_by_180d_stage_{s}")
        log_rate = brentq(
            lambda v, rows=rows, target=target: (
                -np.expm1(-horizon * np.exp(v) * hr[rows]).mean() - target
            ),
            -25.0,
            5.0,
            xtol=1e-12,
        )
        out[rows] = np.exp(log_rate) * hr[rows]
    return out


@dataclass(frozen=True)
class _Calibration:
    b0: float  # intercept of the base risk (logit)
    beta: float  # conditional log odds ratio of stage III–IV
    h0: float  # log daily PE hazard with every factor absent (stage I–II)


def _solve(f: Callable[[float], float], target: float, lo: float, hi: float) -> float:
    """The root of an increasing ``f(v) = target`` in ``[lo, hi]`` (Brent's method)."""
    return float(brentq(lambda v: f(v) - target, lo, hi, xtol=1e-12))


def calibrate(
    eta_now: np.ndarray,
    eta_later: np.ndarray,
    advanced: np.ndarray,
    death: np.ndarray,
    timeline: list[_Pieces],
    q: float,
    incidence: float,
    marginal_or: float,
) -> _Calibration:
    """Solve ``b0`` so that the mean base probability is the incidence, ``h0`` so that the
    mean 180-day PE risk ``q·p + (1 − q·p)·F(180)`` is too (a share ``q`` of 180-day PEs is
    then present now), and ``β`` so that the stage III–IV vs I–II odds ratio of the mean
    180-day risks is the marginal target."""
    horizon = (HORIZONS_DAYS[-1],)

    def at(beta: float) -> tuple[_Calibration, np.ndarray]:
        lin = eta_now + beta * advanced
        b0 = _solve(lambda b: expit(lin + b).mean(), incidence, -15.0, 10.0)
        now = q * expit(lin + b0)
        later = np.exp(eta_later + beta * advanced + b0)

        def risk(h: float) -> np.ndarray:
            new = incidence_all(later * np.exp(h), death, timeline, horizon)[:, 0]
            return now + (1 - now) * new

        h = _solve(lambda v: risk(v).mean(), incidence, -25.0, 5.0)
        return _Calibration(b0, beta, h + b0), risk(h)

    def log_or(beta: float) -> float:
        r = at(beta)[1]
        a, b = r[advanced].mean(), r[~advanced].mean()
        return float(np.log(a / (1 - a)) - np.log(b / (1 - b)))

    return at(_solve(log_or, np.log(marginal_or), -2.0, 4.0))[0]


# ---------------------------------------------------------------------------------------
# 6. Censoring: the data cut-off, loss to follow-up, one year at most
# ---------------------------------------------------------------------------------------

SITES = ("site-A", "site-B", "site-C", "site-D")


def sites_and_days(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A site and an index date (days after ``FIRST_INDEX_DATE``) per row, for site and
    temporal hold-out validation.

    Drawn from their own random stream, independent of every clinical value, so the
    cohort has no site or period effect: a hold-out split tests the machinery, not
    a real shift (a hospital's own table brings the real one).
    """
    site = rng.choice(np.array(SITES, dtype=object), size=n, p=(0.4, 0.3, 0.2, 0.1))
    return site, rng.integers(0, INDEX_YEARS * 365, size=n)


def data_cutoff(fx: Effects) -> np.datetime64:
    """The data cut-off: the table's number of days after the last possible index date."""
    last_index = FIRST_INDEX_DATE + np.timedelta64(INDEX_YEARS * 365 - 1, "D")
    return last_index + np.timedelta64(int(fx("followup", "cutoff_days_after_last_index")), "D")


def loss_rate(fx: Effects) -> float:
    """The daily hazard of loss to follow-up that leaves the table's share lost by 180 days."""
    return -np.log1p(-fx("followup", "p_lost_by_180")) / HORIZONS_DAYS[-1]
