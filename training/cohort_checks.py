"""The synthetic cohort against the published figures it was built to reproduce.

``describe`` compares a generated cohort (and its truth) with the review and the effect
table: incidence, the stage and marker odds ratios, the histology of PE cases, the
post-operative peak, Khorana's discrimination, and the ceilings any model can reach (the
oracle and the observable AUROC). ``pe-risk cohort --describe`` prints it and the data tests
assert it; the generator itself is ``training.cohort``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from features import thresholds as th
from features.contract import OUTCOME
from training.cohort import load_effects


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    low: float  # 99 % interval (sampling error) where one applies, else the value
    high: float
    published: str
    ok: bool
    source: str


def _odds_ratio(y: np.ndarray, exposed: np.ndarray) -> tuple[float, float, float]:
    """Odds ratio with a 99 % Woolf interval."""
    a, b = (y & exposed).sum(), (~y & exposed).sum()
    c, d = (y & ~exposed).sum(), (~y & ~exposed).sum()
    log_or = np.log((a * d) / (b * c))
    se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return (
        float(np.exp(log_or)),
        float(np.exp(log_or - 2.576 * se)),
        float(np.exp(log_or + 2.576 * se)),
    )


def _tested_odds_ratio(
    frame: pd.DataFrame, y: np.ndarray, marker: str
) -> tuple[float, float, float]:
    """Odds ratio of a marker among the rows where it was tested (untested = missing)."""
    x = frame[marker].to_numpy(dtype=float, na_value=np.nan)
    tested = ~np.isnan(x)
    return _odds_ratio(y[tested], x[tested] == 1)


def _rate(y: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Proportion with a 99 % Wilson interval."""
    n, k = mask.sum(), (y & mask).sum()
    p, z = k / n, 2.576
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(p), float(centre - half), float(centre + half)


def describe(frame: pd.DataFrame, truth: pd.DataFrame) -> list[Check]:
    """Compare a cohort with the published figures it was built to reproduce."""
    from sklearn.metrics import roc_auc_score

    from features.build import frame_columns
    from features.scores import KHORANA

    fx = load_effects()
    y = frame[OUTCOME].to_numpy() == 1
    checks: list[Check] = []
    inc = _rate(y, np.ones(len(y), dtype=bool))
    checks.append(
        Check(
            "incidence of PE within 180 days",
            *inc,
            "5–12 % by case mix",
            0.05 <= inc[0] <= 0.12,
            load_effects().rows[("incidence", "target")][1][:60],
        )
    )
    oracle = float(roc_auc_score(y, truth["true_probability"]))
    checks.append(
        Check(
            "oracle AUROC (true probability)",
            oracle,
            oracle,
            oracle,
            "upper bound for any model",
            0.7 <= oracle <= 0.95,
            "this generator",
        )
    )
    seen = float(roc_auc_score(y, truth["observable_probability"]))
    checks.append(
        Check(
            "observable AUROC (from the record)",
            seen,
            seen,
            seen,
            "ceiling from the record",
            0.6 <= seen <= oracle,
            "hidden values at their expectation",
        )
    )
    calib = float(truth["true_probability"].mean())
    checks.append(
        Check(
            "mean true probability",
            calib,
            calib,
            calib,
            "= incidence",
            inc[1] <= calib <= inc[2],
            "Bayes: E[p_true] = P(PE)",
        )
    )
    advanced = frame["stage"].isin(["III", "IV"]).to_numpy()
    target = fx("stage_iii_iv", "target_marginal_or")
    orr = _odds_ratio(y, advanced)
    checks.append(
        Check(
            "OR stage III–IV vs I–II",
            *orr,
            f"{target:g}",
            orr[1] <= target <= orr[2],
            "review, ref 19",
        )
    )
    cases = frame.loc[y, "histology"].value_counts(normalize=True)
    adeno = float(cases.get("adenocarcinoma", 0))
    checks.append(
        Check(
            "adenocarcinoma share of PE cases",
            adeno,
            adeno,
            adeno,
            f"most common (next: {cases.index[1]} {cases.iloc[1]:.2f})",
            cases.index[0] == "adenocarcinoma",
            "review (Cui; our centre)",
        )
    )
    alk_or = _tested_odds_ratio(frame, y, "alk_rearrangement")
    checks.append(
        Check(
            "OR ALK+ vs ALK− (tested)",
            *alk_or,
            "HR 1.87–3.70",
            alk_or[1] > 1,
            "Al-Samkari 2020; Icht 2023",
        )
    )
    egfr_or = _tested_odds_ratio(frame, y, "egfr_mutation")
    checks.append(
        Check(
            "OR EGFR+ vs EGFR− (tested)",
            *egfr_or,
            "not raised (HR 0.46)",
            egfr_or[1] <= 1.0,
            "Dou 2018; Multidiscip Respir Med 2017",
        )
    )
    days = frame["days_since_surgery"].to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        edges = [0, *(int(w.value) for w in (th.MONTH_1, th.MONTHS_3, th.MONTHS_6, th.MONTHS_12))]
        bands = [(lo + (lo > 0), hi) for lo, hi in pairwise(edges)]
        rates = [_rate(y, (days >= lo) & (days <= hi)) for lo, hi in bands]
    first = rates[0]
    later = max(r[0] for r in rates[1:])
    checks.append(
        Check(
            "PE rate ≤1 month after surgery",
            *first,
            f"peak in month one (later bands ≤{later:.3f})",
            first[0] > later,
            "Yang (review, ref 23)",
        )
    )
    khorana = KHORANA.evaluate(frame_columns(frame)).points
    k_auc = float(roc_auc_score(y, khorana))
    checks.append(
        Check(
            "Khorana AUROC",
            k_auc,
            k_auc,
            k_auc,
            "0.55–0.62 in lung cancer",
            0.55 <= k_auc <= 0.62,
            "Cancers 2024 (0.57); van Es 2020",
        )
    )
    return checks


def format_checks(checks: list[Check]) -> str:
    lines = [f"{'check':<38} {'cohort':>8} {'99% interval':>17}  {'published':<32} ok"]
    for ch in checks:
        interval = f"{ch.low:.3f}–{ch.high:.3f}" if ch.low != ch.high else ""
        lines.append(
            f"{ch.name:<38} {ch.value:>8.3f} {interval:>17}  {ch.published:<32} "
            f"{'yes' if ch.ok else 'NO'}"
        )
    return "\n".join(lines)
