"""The fitted model against the established scores and a logistic regression, on the same test rows.

Comparators (design.md, "Model"; clinical.md §1–2):

- Khorana (Blood 2008;111:4902) on every test row: lung cancer scores ≥1 by site alone;
  AUROC ≈ 0.55–0.6 in lung cancer is the bar the model has to clear.
- Vienna CATS (Ay C, Blood 2010;116:5377) on rows where D-dimer and soluble P-selectin
  were both measured.
- Wells (Thromb Haemost 2000;83:416) and revised Geneva (Ann Intern Med 2006;144:165) on
  the rows where PE was suspected: they are diagnostic rules, not prognostic scores.
- A logistic regression on the same features (``training.train.fit_logistic``).
- Isotonic recalibration of the same booster, reported but never served (it has no exact
  explanation).

Each comparison also reports the model's AUROC on exactly the comparator's rows.

Calibration under missingness: the test rows are scored again with each field a record may
leave unknown removed at random (``training.unknowns.EVALUATION_RATE``, 30 %, seeded), and
discrimination and calibration are measured on those records too (``missing_metrics``), so
that a model which over-predicts on incomplete records is seen, and refused by the gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from features.build import take
from features.scores import ADDITIVE
from training import evaluate as ev
from training.train import Fitted
from training.unknowns import EVALUATION_RATE, remove_at_random

SCORES = {s.key: s for s in ADDITIVE}

#: comparator → (which test rows it applies to, plain words for that)
COMPARATORS = {
    "khorana": (lambda c: np.ones(len(c["age"]), dtype=bool), "all test rows"),
    "vienna_cats": (
        lambda c: ~np.isnan(c["d_dimer"]) & ~np.isnan(c["soluble_p_selectin"]),
        "rows with D-dimer and soluble P-selectin",
    ),
    "wells": (lambda c: c["suspected_pe"] == 1, "rows with PE suspected"),
    "revised_geneva": (lambda c: c["suspected_pe"] == 1, "rows with PE suspected"),
}
MIN_COMPARATOR_EVENTS = 10


@dataclass
class Evaluation:
    """Everything the run logs and the gate and model card read."""

    metrics: dict[str, ev.Estimate]  # the served model, bootstrap intervals
    baselines: dict[str, dict[str, Any]]  # comparator → rows, events, metrics, model_auroc
    isotonic: dict[str, float]
    decision_curve: pd.DataFrame
    subgroups: pd.DataFrame
    y: np.ndarray
    p: np.ndarray
    ranked: dict[str, np.ndarray]  # ROC curves: the model, the logistic regression, Khorana points
    reference: dict[str, float] = field(default_factory=dict)  # oracle AUROCs (synthetic)
    champion: dict[str, Any] | None = None
    missing_metrics: dict[str, ev.Estimate] = field(default_factory=dict)  # 30 % removed


def evaluate_fit(
    fitted: Fitted,
    columns: Mapping[str, np.ndarray],
    *,
    n_boot: int = 200,
    seed: int = 7,
    truth: pd.DataFrame | None = None,
) -> Evaluation:
    """Score the model and every comparator on the test split."""
    test = fitted.splits.test
    c = take(columns, test)
    x = fitted.x[test]
    y = fitted.y[test]
    p = fitted.model.probability(x)
    metrics = ev.bootstrap(y, p, ev.probability_metrics, n_boot=n_boot, seed=seed)
    incomplete = remove_at_random(c, EVALUATION_RATE, np.random.default_rng([seed, 30]))
    p_incomplete = fitted.model.probability(fitted.model.features(incomplete))
    missing_metrics = ev.bootstrap(y, p_incomplete, ev.core_metrics, n_boot=n_boot, seed=seed)

    points = {k: s.evaluate(c).points for k, s in SCORES.items() if k in COMPARATORS}
    baselines: dict[str, dict[str, Any]] = {}
    for key, (applies, rows_text) in COMPARATORS.items():
        m = applies(c)
        events = int(y[m].sum())
        entry: dict[str, Any] = {"title": SCORES[key].title, "rows": int(m.sum()), "events": events}
        entry["applies_to"] = rows_text
        if min(events, int(m.sum()) - events) >= MIN_COMPARATOR_EVENTS:
            entry["metrics"] = ev.bootstrap(
                y[m], points[key][m], ev.rank_metrics, n_boot=n_boot, seed=seed
            )
            entry["model_auroc"] = ev.rank_metrics(y[m], p[m])["auroc"]
        else:
            entry["skipped"] = f"fewer than {MIN_COMPARATOR_EVENTS} events or non-events"
        baselines[key] = entry

    p_lr = fitted.logistic.predict_proba(x)[:, 1]
    baselines["logistic"] = {
        "title": "Logistic regression, same features",
        "rows": len(y),
        "events": int(y.sum()),
        "applies_to": "all test rows",
        "metrics": ev.bootstrap(y, p_lr, ev.probability_metrics, n_boot=n_boot, seed=seed),
        "model_auroc": metrics["auroc"].value,
    }

    cal = fitted.splits.calibration
    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
    iso.fit(expit(fitted.model.margin(fitted.x[cal])), fitted.y[cal])
    p_iso = iso.predict(expit(fitted.model.margin(x)))
    isotonic = ev.probability_metrics(y, p_iso)

    curve = ev.decision_curve(
        y,
        {"pe-risk": p, "logistic": p_lr},
        rules={"Khorana ≥2": points["khorana"] >= 2},
    )
    reference = {}
    if truth is not None:
        for col, name in (("true_probability", "oracle"), ("observable_probability", "observable")):
            if col in truth:
                reference[f"{name}_auroc"] = ev.rank_metrics(y, truth[col].to_numpy()[test])[
                    "auroc"
                ]
    return Evaluation(
        metrics=metrics,
        baselines=baselines,
        isotonic=isotonic,
        decision_curve=curve,
        subgroups=ev.subgroup_table(c, y, p),
        y=y,
        p=p,
        ranked={"pe-risk": p, "logistic": p_lr, "Khorana": points["khorana"]},
        reference=reference,
        missing_metrics=missing_metrics,
    )


def flat_metrics(evaluation: Evaluation) -> dict[str, float]:
    """MLflow metric names → values: ``test_auroc``, ``test_auroc_ci_low``, ``khorana_auroc``, …"""
    out: dict[str, float] = {}
    for k, e in evaluation.metrics.items():
        out[f"test_{k}"] = e.value
        out[f"test_{k}_ci_low"] = e.low
        out[f"test_{k}_ci_high"] = e.high
    for k, e in evaluation.missing_metrics.items():
        out[f"missing30_{k}"] = e.value
        out[f"missing30_{k}_ci_low"] = e.low
        out[f"missing30_{k}_ci_high"] = e.high
    for name, entry in evaluation.baselines.items():
        for k, e in entry.get("metrics", {}).items():
            out[f"{name}_{k}"] = e.value
        if "model_auroc" in entry:
            out[f"pe_risk_auroc_on_{name}_rows"] = entry["model_auroc"]
    out.update({f"isotonic_{k}": v for k, v in evaluation.isotonic.items()})
    out.update(evaluation.reference)
    if evaluation.champion and "auroc" in evaluation.champion:
        out["champion_auroc_same_rows"] = evaluation.champion["auroc"]
    return {k: float(v) for k, v in out.items() if v == v}  # drop NaN
