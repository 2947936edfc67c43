"""A registered model on another site's or a later period's table (issue 21): external
validation (``pe-risk evaluate``) and logistic recalibration (``pe-risk recalibrate``).

**Validation.** Every row of the table is a test row. The registered model scores it as it
is, and the evaluation is the one training runs on its test split (``training.compare``):
discrimination, calibration with bootstrap intervals, the decision curve, subgroups and the
clinical scores on the same rows, for each question the table can answer. Nothing is fitted
on the rows, so there is no logistic-regression or isotonic comparison. TRIPOD+AI item 16
(development vs evaluation data); at external validation, report the calibration curve,
intercept and slope (Van Calster B, BMC Med 2019;17:230; clinical.md §5.2).

**Recalibration.** When a model moves to a new hospital its ranking often holds and its
calibration does not (the event rate and case mix differ); the first update is then the
model's calibration, not its trees (Steyerberg EW et al., Stat Med 2004;23:2567; Janssen
KJM et al., J Clin Epidemiol 2008;61:76; TRIPOD+AI item 12f). With the model's linear
predictor at horizon ``h``, ``LP_h = a·margin + b_h`` (``models.artifact.Calibration``),
fitted on part of the local table (the rest tests it):

- ``intercept`` (recalibration in the large): ``logit P(y_h) = α_h + LP_h``, one α per horizon;
- ``slope`` (logistic recalibration): ``logit P(y_h) = α_h + β·LP_h``, one β for all horizons.

The new map is ``a' = β·a`` and ``b'_h = β·b_h + α_h``, the intercepts made non-decreasing
(no estimate decreases with the horizon). The boosters are unchanged, so the explanations
keep their meaning and stay exact for the new probability (``models.artifact``). A table
with ``pe_event`` alone answers 180 days only: one α (and β) is then applied at every
horizon, a common shift in log-odds. The new-PE outcomes are IPCW-weighted as in training.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import statsmodels.api as sm
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sklearn.model_selection import train_test_split

from features.table import TableReport
from models.artifact import META_FILE, NEW_PE, PE_NOW, Calibration, PERiskModel
from training import evaluate as ev
from training.compare import Evaluation, evaluate_fit
from training.train import (
    Fitted,
    HeadFit,
    Outcomes,
    Splits,
    Task,
    TrainingDataError,
    table_outcomes,
)

#: method → what it fits, in words (the model card and the CLI say it)
METHODS = {
    "intercept": "recalibration in the large: one intercept per horizon, the slope kept",
    "slope": "logistic recalibration: one intercept per horizon and a common slope",
}
#: least events (and non-events) for a question to be evaluated or recalibrated on a table
MIN_EVENTS = 10
#: least events (and non-events) in each part when a table is split to recalibrate and test
MIN_SPLIT_EVENTS = 20


class ModelRefError(ValueError):
    """A ``--model`` that names no registered version."""


@dataclass(frozen=True)
class Found:
    """A registered version and its model, loaded from the registry."""

    name: str
    version: ModelVersion
    model: PERiskModel

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version.version}"


def _known_refs(client: MlflowClient, name: str) -> str:
    try:
        found = client.search_model_versions(f"name = '{name}'")
        aliases = client.get_registered_model(name).aliases if found else {}
    except MlflowException:
        found, aliases = [], {}
    if not found:
        return f"the registry holds no version of {name!r} yet (run `pe-risk train`)"
    numbers = ", ".join(sorted((str(v.version) for v in found), key=int))
    named = ", ".join(f"{name}@{a} (version {v})" for a, v in sorted(aliases.items()))
    return f"versions: {numbers}" + (f"; aliases: {named}" if named else "")


def resolve(client: MlflowClient, name: str, ref: str) -> Found:
    """The registered model ``ref`` names: ``pe-risk@champion``, ``pe-risk/3``, the same as
    ``models:/…`` URIs, a version number or an alias alone."""
    text = ref.strip().removeprefix("models:/")
    model_name, alias, number = name, None, None
    if "@" in text:
        model_name, alias = text.split("@", 1)
    elif "/" in text:
        model_name, number = text.rsplit("/", 1)
    elif text.isdigit():
        number = text
    else:
        alias = text
    accepted = f"accepted: {name}@<alias>, {name}/<version>, models:/… or a version number"
    if model_name != name or not (alias or number) or (number is not None and not number.isdigit()):
        raise ModelRefError(
            f"--model {ref!r} does not name a version of {name!r} ({accepted}); "
            + _known_refs(client, name)
        )
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, str(number))
        )
    except MlflowException:
        raise ModelRefError(
            f"--model {ref!r}: no such version in the registry; " + _known_refs(client, name)
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}", dst_path=tmp)
        )
        folder = next((p.parent for p in local.rglob(META_FILE)), None)
        if folder is None:
            raise ModelRefError(f"{name}/{mv.version} holds no pe-risk model artefact")
        model = PERiskModel.load(folder)
    return Found(name, mv, model)


def outcomes_of(report: TableReport, min_events: int = MIN_EVENTS) -> Outcomes:
    """The table's outcomes, or ``TrainingDataError`` when it has none, bad rows, or fewer
    than ``min_events`` new PEs or non-events at the longest horizon."""
    outcomes, events, known, what = table_outcomes(report)
    if min(events, known - events) < min_events:
        raise TrainingDataError(
            f"{events} {what} in {known} rows are too few to evaluate: at least {min_events} "
            "events and as many non-events are needed"
        )
    return outcomes


def _enough(y: np.ndarray, w: np.ndarray, least: int) -> bool:
    events = float((y * (w > 0)).sum())
    return min(events, float((w > 0).sum()) - events) >= least


def as_fitted(
    model: PERiskModel,
    report: TableReport,
    outcomes: Outcomes,
    test: np.ndarray,
    strategy: str,
    fit_rows: np.ndarray | None = None,
) -> Fitted:
    """A registered model and a table as ``training.compare`` reads a fit: ``test`` is the
    test split, ``fit_rows`` (recalibration) the calibration split; no comparison model,
    no out-of-fold margins. The PE-now question is evaluated only where the table has
    times and at least ``MIN_EVENTS`` suspected rows with and without PE now."""
    empty = np.array([], dtype=int)
    fit_rows = empty if fit_rows is None else fit_rows
    splits = Splits(empty, empty, fit_rows, test, strategy)
    horizons = tuple(h for h in model.new_pe.horizons if h in outcomes.horizons)
    if not horizons:
        raise TrainingDataError(
            f"the model answers at {model.new_pe.horizons} days and the table at "
            f"{outcomes.horizons}: no horizon in common"
        )
    suspected = report.columns["suspected_pe"]
    heads = {}
    for key, head in model.heads.items():
        task = Task(key, outcomes, horizons if key == NEW_PE else head.horizons, suspected)
        if key == PE_NOW:
            if not outcomes.timed:
                continue
            _, yw = task.targets(test)
            if not _enough(yw[:, 0], yw[:, 1], MIN_EVENTS):
                continue
        heads[key] = HeadFit(
            head, task, None, {}, head.booster.num_boosted_rounds(), head.monotone, {}, 0, empty,
            np.array([]),
        )  # fmt: skip
    heads = dict(sorted(heads.items(), key=lambda kv: kv[0] != PE_NOW))
    return Fitted(model, heads, splits, model.features(report.columns), outcomes)


def evaluate_registered(
    model: PERiskModel,
    report: TableReport,
    *,
    n_boot: int,
    seed: int,
    truth: Any = None,
) -> tuple[Fitted, Evaluation]:
    """The registered model evaluated on every row of the table (the module docstring)."""
    outcomes = outcomes_of(report)
    rows = np.arange(len(report.columns["age"]))
    fitted = as_fitted(model, report, outcomes, rows, "external: every row of the table is tested")
    return fitted, evaluate_fit(fitted, report.columns, n_boot=n_boot, seed=seed, truth=truth)


def split_for_recalibration(
    outcomes: Outcomes, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows to recalibrate on and rows to test the result on: stratified on the outcome
    (PE now, new PE, neither), seeded; each part needs ``MIN_SPLIT_EVENTS`` new PEs and
    non-events at the longest horizon."""
    from training.train import TrainingDataError

    label = outcomes.label()
    rows = np.arange(len(label))
    fit_rows, test = train_test_split(rows, test_size=test_size, stratify=label, random_state=seed)
    for part, idx in (("fitting", fit_rows), ("test", test)):
        new = idx[outcomes.new_rows[idx]]
        y, w = outcomes.at(outcomes.horizons[-1], new)
        if not _enough(y, w, MIN_SPLIT_EVENTS):
            events = int(y[w > 0].sum())
            raise TrainingDataError(
                f"the {part} part ({len(idx)} rows) has {events} new PEs among "
                f"{int((w > 0).sum())} rows with an outcome; recalibration needs at least "
                f"{MIN_SPLIT_EVENTS} events and non-events in each part: a larger table, or "
                "another --test-size"
            )
    return np.sort(fit_rows), np.sort(test)


def updated_calibration(
    cal: Calibration,
    margin: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    method: str,
    answered: list[int],
) -> Calibration:
    """The calibration map refitted as the module docstring says. ``y`` and ``w`` are rows ×
    answered horizons (indices ``answered`` into ``cal.intercepts``); when the table answers
    fewer horizons than the model, one α is common to all of them."""
    if method not in METHODS:
        raise ValueError(f"--method {method!r}: choose {' or '.join(METHODS)}")
    b = np.asarray(cal.intercepts)
    lp = cal.a * margin[:, None] + b[None, answered]
    common = len(answered) < len(b)
    k = len(answered)
    dummies = np.ones((len(margin) * k, 1)) if common else np.tile(np.eye(k), (len(margin), 1))
    yy, ww, ll = y.ravel(), w.ravel(), lp.ravel()
    keep = ww > 0
    family = sm.families.Binomial()
    if method == "intercept":
        fit = sm.GLM(yy[keep], dummies[keep], family=family, offset=ll[keep], var_weights=ww[keep])
        alpha, beta = np.asarray(fit.fit().params), 1.0
    else:
        design = np.column_stack([ll, dummies])
        params = np.asarray(
            sm.GLM(yy[keep], design[keep], family=family, var_weights=ww[keep]).fit().params
        )
        beta, alpha = float(params[0]), params[1:]
    alpha = np.repeat(alpha, len(b)) if common else alpha
    intercepts = np.maximum.accumulate(beta * b + alpha)
    return replace(cal, a=beta * cal.a, intercepts=tuple(float(v) for v in intercepts))


def recalibrated(fitted: Fitted, method: str, table: str) -> tuple[PERiskModel, list[str]]:
    """The model with each head's calibration refitted on the calibration split of
    ``fitted`` (``as_fitted(..., fit_rows=...)``), and the heads kept as they were because
    the rows hold too few events for them."""
    model, kept, heads = fitted.model, [], {}
    fit_rows = fitted.splits.calibration
    for key, head in model.heads.items():
        hf = fitted.heads.get(key)
        if hf is None:
            kept.append(key)
            heads[key] = head
            continue
        answered = [head.horizons.index(h) for h in hf.task.horizons]
        rows = hf.task.rows(fit_rows)
        ys, ws = zip(*(hf.task.targets(fit_rows, h)[1].T for h in hf.task.horizons), strict=True)
        y, w = np.column_stack(ys), np.column_stack(ws)
        if not _enough(y[:, -1], w[:, -1], MIN_EVENTS):
            kept.append(key)
            heads[key] = head
            continue
        cal = updated_calibration(
            head.calibration, head.margin(fitted.x[rows]), y, w, method, answered
        )
        cal = replace(
            cal,
            method=f"{head.calibration.method}; recalibrated ({METHODS[method]}) on {table}",
            n_rows=len(rows),
            n_events=round(float((y[:, -1] * w[:, -1]).sum())),
        )
        heads[key] = replace(head, calibration=cal)
    return PERiskModel(model.feature_names, heads, copy.deepcopy(model.info)), kept


def calibration_shift(before: Fitted, after: Fitted) -> dict[str, dict[str, dict[str, float]]]:
    """Per head, the calibration intercept and slope on the test split, before and after."""
    out = {}
    for key, hf in after.heads.items():
        rows = hf.task.rows(after.splits.test)
        pair = {}
        for when, fit in (("before", before), ("after", after)):
            head = fit.model.heads[key]
            x = fit.x[rows]
            if key == PE_NOW:
                y, w = hf.task.targets(after.splits.test)[1].T
                p = head.probability(x)
            else:
                h = hf.task.horizons[-1]
                y, w = after.outcomes.at(h, rows)
                p = head.probability(x, h)
            pair[when] = {
                "calibration_intercept": ev.calibration_intercept(y, p, w),
                "calibration_slope": ev.calibration_slope(y, p, w),
                "auroc": ev.rank_metrics(y, p, w)["auroc"],
            }
        out[key] = pair
    return out
