"""Both questions' estimates against the established scores and a logistic regression, on the
same test rows.

**New PE by 30, 90 and 180 days** (rows without PE now; IPCW weights of each horizon,
``training.survival``): the time-dependent AUROC, the IPCW Brier score, calibration
intercept and slope, and the predicted cumulative incidence against the observed
(Aalen–Johansen) by risk group at each horizon; the decision curve at the longest horizon
(thromboprophylaxis thresholds, with Khorana ≥2 as the usual rule: clinical.md §5.2).
Comparators (clinical.md §1–2):

- Khorana (Blood 2008;111:4902) on every row: lung cancer scores ≥1 by site alone; AUROC
  ≈ 0.55–0.6 in lung cancer is the bar the model has to clear.
- Vienna CATS (Ay C, Blood 2010;116:5377) on rows where D-dimer and soluble P-selectin
  were both measured.
- ONKOTEV (Cella CA, Oncologist 2017;22:601; Fine–Gray, death competing) on every row.
- A logistic regression on the same features and weights (``training.train.fit_logistic``).
- Isotonic recalibration of the same booster, reported but never served (it has no exact
  explanation).

**PE now** (rows where PE was suspected): AUROC and calibration, against Wells
(Thromb Haemost 2000;83:416) and revised Geneva (Ann Intern Med 2006;144:165) points, and
four rule-out strategies, each with its failure rate (PE among those ruled out) and
efficiency (share spared imaging), with Clopper–Pearson intervals: Wells ≤4 with D-dimer
<0.5 mg/L FEU, Wells ≤4 with the age-adjusted cut-off (Righini, JAMA 2014;311:1117),
revised Geneva ≤10 with the age-adjusted cut-off (ADJUST-PE used either score), and YEARS
(van der Hulle, Lancet 2017;390:289). A rule rules out only when it holds whatever the
unknown items are (a missing D-dimer never rules out).

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

from features import thresholds as th
from features.build import take
from features.contract import new_pe_column
from features.scores import ADDITIVE, age_adjusted_cutoff, years_threshold
from models.artifact import NEW_PE, PE_NOW
from training import evaluate as ev
from training import survival
from training.train import Fitted, HeadFit
from training.unknowns import EVALUATION_RATE, remove_at_random

SCORES = {s.key: s for s in ADDITIVE}
Columns = Mapping[str, np.ndarray]

#: new-PE comparator → (which test rows it applies to, plain words for that)
COMPARATORS = {
    "khorana": (lambda c: np.ones(len(c["age"]), dtype=bool), "all test rows without PE now"),
    "vienna_cats": (
        lambda c: ~np.isnan(c["d_dimer"]) & ~np.isnan(c["soluble_p_selectin"]),
        "rows with D-dimer and soluble P-selectin",
    ),
    "onkotev": (lambda c: np.ones(len(c["age"]), dtype=bool), "all test rows without PE now"),
}
#: PE-now comparators: diagnostic scores, on the suspected rows
DIAGNOSTIC = ("wells", "revised_geneva")
MIN_COMPARATOR_EVENTS = 10
GENEVA_NOT_HIGH_MAX = 10  # revised Geneva 0–10: low or intermediate (Le Gal 2006; scores.py)


@dataclass
class Evaluation:
    """Everything the run logs and the gate and model card read.

    ``metrics`` and the fields after it are the new-PE estimate at its longest horizon (the
    one the gate checks); ``horizons`` and ``cif_calibration`` cover every horizon;
    ``pe_now`` is the diagnostic question's evaluation (None without a PE-now head).
    """

    metrics: dict[str, ev.Estimate]
    baselines: dict[str, dict[str, Any]]  # comparator → rows, events, metrics, model_auroc
    isotonic: dict[str, float]
    decision_curve: pd.DataFrame
    subgroups: pd.DataFrame
    y: np.ndarray
    p: np.ndarray
    w: np.ndarray
    ranked: dict[str, np.ndarray]  # ROC curves: the model, the logistic regression, Khorana points
    horizons: dict[int, dict[str, ev.Estimate]] = field(default_factory=dict)
    cif_calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    reference: dict[str, float] = field(default_factory=dict)  # oracle AUROCs (synthetic)
    champion: dict[str, Any] | None = None
    missing_metrics: dict[str, ev.Estimate] = field(default_factory=dict)  # 30 % removed
    pe_now: dict[str, Any] | None = None


def _new_pe(
    fit: HeadFit, fitted: Fitted, columns: Columns, n_boot: int, seed: int, truth: Any
) -> Evaluation:
    head, task = fit.head, fit.task
    rows = task.rows(fitted.splits.test)
    c = take(columns, rows)
    x = fitted.x[rows]
    outcomes = fitted.outcomes
    # the horizons both the model and the table answer (a pe_event table: 180 days alone)
    answered = [j for j, h in enumerate(head.horizons) if h in outcomes.horizons]
    probs = head.probabilities(x)[:, answered]
    hs = [head.horizons[j] for j in answered]
    last = hs[-1]
    by_horizon = {h: outcomes.at(h, rows) for h in hs}  # (y, w): IPCW
    y, w = by_horizon[last]
    p = probs[:, -1]
    metrics = ev.bootstrap(y, p, ev.probability_metrics, w=w, n_boot=n_boot, seed=seed)
    incomplete = remove_at_random(c, EVALUATION_RATE, np.random.default_rng([seed, 30]))
    p_incomplete = head.probability(fitted.model.features(incomplete))
    missing_metrics = ev.bootstrap(y, p_incomplete, ev.core_metrics, w=w, n_boot=n_boot, seed=seed)

    points = {k: SCORES[k].evaluate(c).points for k in COMPARATORS}
    baselines: dict[str, dict[str, Any]] = {}
    for key, (applies, rows_text) in COMPARATORS.items():
        m = applies(c)
        events = int(y[m & (w > 0)].sum())
        known = int((m & (w > 0)).sum())
        entry: dict[str, Any] = {"title": SCORES[key].title, "rows": int(m.sum()), "events": events}
        entry["applies_to"] = rows_text
        if min(events, known - events) >= MIN_COMPARATOR_EVENTS:
            entry["metrics"] = ev.bootstrap(
                y[m], points[key][m], ev.rank_metrics, w=w[m], n_boot=n_boot, seed=seed
            )
            entry["model_auroc"] = ev.rank_metrics(y[m], p[m], w[m])["auroc"]
        else:
            entry["skipped"] = f"fewer than {MIN_COMPARATOR_EVENTS} events or non-events"
        baselines[key] = entry

    ranked = {"pe-risk": p}
    # a registered model scored on another table (``training.external``) has no comparison
    # model and no out-of-fold margins: neither is fitted on the rows it is tested on
    if fit.logistic is not None:
        p_lr = fit.logistic.predict_proba(x)[:, 1]
        baselines["logistic"] = {
            "title": "Logistic regression, same features",
            "rows": len(y),
            "events": int(y[w > 0].sum()),
            "applies_to": "all test rows without PE now",
            "metrics": ev.bootstrap(y, p_lr, ev.probability_metrics, w=w, n_boot=n_boot, seed=seed),
            "model_auroc": metrics["auroc"].value,
            # paired (same resamples): does the plain model discriminate better?
            "auroc_minus_model": ev.bootstrap(
                y, np.column_stack([p_lr, p]), _auroc_gain, w=w, n_boot=n_boot, seed=seed
            )["auroc_gain"],
        }
        ranked["logistic"] = p_lr
    ranked["Khorana"] = points["khorana"]

    isotonic: dict[str, float] = {}
    if len(fit.oof_rows):
        y_oof, w_oof = outcomes.at(last, fit.oof_rows)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
        iso.fit(expit(fit.oof_margin), y_oof, sample_weight=w_oof)
        isotonic = ev.probability_metrics(y, iso.predict(expit(head.margin(x))), w)

    horizons: dict[int, dict[str, ev.Estimate]] = {}
    tables = []
    for j, h in enumerate(hs):
        yh, wh = by_horizon[h]
        at = ev.bootstrap(yh, probs[:, j], ev.core_metrics, w=wh, n_boot=n_boot, seed=seed)
        for key in ("khorana", "onkotev"):
            at[f"{key}_auroc"] = ev.bootstrap(
                yh, points[key], ev.rank_metrics, w=wh, n_boot=n_boot, seed=seed
            )["auroc"]
        horizons[h] = at
        if outcomes.timed:
            table = survival.calibration_by_group(
                probs[:, j], outcomes.time[rows], outcomes.cause[rows], h
            )
            tables.append(table.assign(horizon_days=h))
    curve = ev.decision_curve(
        y,
        {k: v for k, v in ranked.items() if k != "Khorana"},
        rules={"Khorana ≥2": points["khorana"] >= 2},
        w=w,
    )
    reference = {}
    if truth is not None and new_pe_column(last) in truth:
        oracle = truth[new_pe_column(last)].to_numpy()[rows]
        reference["oracle_auroc"] = ev.rank_metrics(y, oracle, w)["auroc"]
        reference["oracle_mean"] = float(oracle.mean())
    return Evaluation(
        metrics=metrics,
        baselines=baselines,
        isotonic=isotonic,
        decision_curve=curve,
        subgroups=ev.subgroup_table(c, y, p, w=w),
        y=y,
        p=p,
        w=w,
        ranked=ranked,
        horizons=horizons,
        cif_calibration=pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(),
        reference=reference,
        missing_metrics=missing_metrics,
    )


def _auroc_gain(y: np.ndarray, pair: np.ndarray, w: ev.Weights = None) -> dict[str, float]:
    """AUROC of the first column minus the second's, on the same rows (a paired bootstrap
    resamples both together)."""
    first, second = (ev.rank_metrics(y, pair[:, k], w)["auroc"] for k in (0, 1))
    return {"auroc_gain": first - second}


def logistic_note(entry: dict[str, Any]) -> str | None:
    """What the paired difference between the logistic regression and pe-risk means, in
    words, when the logistic regression's AUROC is the higher one; None otherwise."""
    diff = entry.get("auroc_minus_model")
    if diff is None or diff.value <= 0:
        return None
    lr, model = entry["metrics"]["auroc"].value, entry["model_auroc"]
    said = (
        f"The logistic regression on the same features discriminates better than pe-risk on "
        f"these rows: AUROC {lr:.3f} against {model:.3f}, a difference of {diff.text()} "
        "(paired bootstrap, 95 %)."
        if diff.low > 0
        else f"The logistic regression on the same features reached a slightly higher AUROC "
        f"than pe-risk on these rows ({lr:.3f} against {model:.3f}; difference {diff.text()}, "
        "paired bootstrap, 95 %): no evidence that it discriminates better."
    )
    return said + (
        " The booster's calibrated, monotone and exactly explained estimate is what pe-risk "
        "serves; with a difference like this, consider more rows or `--tune`."
        if diff.low > 0
        else ""
    )


def rule_outs(c: Columns) -> dict[str, np.ndarray]:
    """Which rows each diagnostic rule-out strategy rules out (no imaging), counting an unknown
    item against ruling out: the rule must hold whatever the unknown items are."""
    dd = c["d_dimer"]
    wells = SCORES["wells"].evaluate(c)
    geneva = SCORES["revised_geneva"].evaluate(c)
    unlikely = wells.max_points <= th.WELLS_UNLIKELY_MAX.value
    adjusted = age_adjusted_cutoff(c["age"])
    _, mx, thr = years_threshold(c)
    years_cut = np.where(mx > 0, th.YEARS_ANY_ITEM.value, thr)  # an unknown item could be present
    with np.errstate(invalid="ignore"):
        return {
            "Wells ≤4 and D-dimer <0.5 mg/L FEU": unlikely & (dd < th.D_DIMER_RULE_OUT.value),
            "Wells ≤4 and age-adjusted D-dimer": unlikely & (dd < adjusted),
            "revised Geneva ≤10 and age-adjusted D-dimer": (
                geneva.max_points <= GENEVA_NOT_HIGH_MAX
            )
            & (dd < adjusted),
            "YEARS": dd < years_cut,
        }


def _pe_now(
    fit: HeadFit, fitted: Fitted, columns: Columns, n_boot: int, seed: int, truth: Any
) -> dict[str, Any]:
    rows = fit.task.rows(fitted.splits.test)
    c = take(columns, rows)
    y = fitted.outcomes.pe_now[rows]
    p = fit.head.probability(fitted.x[rows])
    out: dict[str, Any] = {
        "rows": len(rows),
        "events": int(y.sum()),
        "metrics": ev.bootstrap(y, p, ev.probability_metrics, n_boot=n_boot, seed=seed),
        "baselines": {},
        "rule_outs": {
            name: survival.rule_out(y == 1, ruled) for name, ruled in rule_outs(c).items()
        },
    }
    for key in DIAGNOSTIC:
        points = SCORES[key].evaluate(c).points
        out["baselines"][key] = {
            "title": SCORES[key].title,
            "metrics": ev.bootstrap(y, points, ev.rank_metrics, n_boot=n_boot, seed=seed),
        }
    if fit.logistic is not None:
        p_lr = fit.logistic.predict_proba(fitted.x[rows])[:, 1]
        out["baselines"]["logistic"] = {
            "title": "Logistic regression, same features",
            "metrics": ev.bootstrap(y, p_lr, ev.probability_metrics, n_boot=n_boot, seed=seed),
        }
    if truth is not None and "pe_now_probability" in truth:
        out["reference"] = {
            "oracle_auroc": ev.rank_metrics(y, truth["pe_now_probability"].to_numpy()[rows])[
                "auroc"
            ]
        }
    return out


def evaluate_fit(
    fitted: Fitted,
    columns: Columns,
    *,
    n_boot: int = 200,
    seed: int = 7,
    truth: pd.DataFrame | None = None,
) -> Evaluation:
    """Score both heads and every comparator on the test split."""
    evaluation = _new_pe(fitted.heads[NEW_PE], fitted, columns, n_boot, seed, truth)
    if PE_NOW in fitted.heads:
        evaluation.pe_now = _pe_now(fitted.heads[PE_NOW], fitted, columns, n_boot, seed, truth)
    return evaluation


def flat_metrics(evaluation: Evaluation) -> dict[str, float]:
    """MLflow metric names → values: ``test_auroc`` (new PE at the longest horizon),
    ``new_pe_90d_auroc``, ``pe_now_auroc``, ``khorana_auroc``, …"""
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
        if "auroc_minus_model" in entry:
            gain = entry["auroc_minus_model"]
            out[f"{name}_auroc_minus_pe_risk"] = gain.value
            out[f"{name}_auroc_minus_pe_risk_ci_low"] = gain.low
            out[f"{name}_auroc_minus_pe_risk_ci_high"] = gain.high
    for h, metrics in evaluation.horizons.items():
        for k, e in metrics.items():
            out[f"new_pe_{h}d_{k}"] = e.value
    if evaluation.pe_now:
        now = evaluation.pe_now
        out.update({f"pe_now_{k}": e.value for k, e in now["metrics"].items()})
        for name, entry in now["baselines"].items():
            out[f"pe_now_{name}_auroc"] = entry["metrics"]["auroc"].value
        for name, r in now["rule_outs"].items():
            slug = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
            out[f"pe_now_ruleout_{slug}_failure_rate"] = r["failure_rate"].value
            out[f"pe_now_ruleout_{slug}_efficiency"] = r["efficiency"].value
        out.update({f"pe_now_{k}": v for k, v in now.get("reference", {}).items()})
    out.update({f"isotonic_{k}": v for k, v in evaluation.isotonic.items()})
    out.update(evaluation.reference)
    if evaluation.champion and "auroc" in evaluation.champion:
        out["champion_auroc_same_rows"] = evaluation.champion["auroc"]
    return {k: float(v) for k, v in out.items() if v == v}  # drop NaN
