"""Fit the PE-risk model: checked data → splits → monotone XGBoost → calibration map.

The recipe (design.md, "Model"):

1. The table is validated against the data contract (``features.table``); any bad row
   stops training with the validator's row report, before anything is written.
2. Splits are seeded and stratified on the outcome: *train* (with an early-stopping
   slice), *calibration* and *test*. With a ``site`` or ``index_date`` column the test
   split can instead be one held-out site or the latest period (external-style
   validation; TRIPOD+AI item 16).
3. XGBoost on the feature specification (names, order and monotone constraints from
   ``features.spec``; missing values kept missing), early stopping on the slice; an
   optional Optuna search over the usual hyper-parameters. Unknown values are taught and
   bounded as ``training.unknowns`` says: every split is fitted on the rows and a masked
   copy of them, every field that can be unknown gets a monotone direction (declared, or
   from a first fit), and no split keeps a branch for missing values alone.
4. The calibration map ``logit(p) = a·margin + b`` is fitted by unpenalised logistic
   regression on the calibration split and its masked copy, which the booster never saw
   (Platt scaling).
5. A logistic regression on the same features is fitted as a baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import statsmodels.api as sm
import xgboost as xgb
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from features.build import feature_matrix
from features.spec import MODEL_FEATURE_NAMES, MONOTONE_CONSTRAINTS
from features.table import RowIssue, TableReport
from models.artifact import Calibration, PERiskModel
from training import unknowns

Progress = Callable[[str], None]

#: Depth-2 trees with eta 0.2. Exact TreeSHAP costs O(trees · leaves · depth²) per row, so
#: the tree count is what a 1,000-record explained batch pays for (XGBoost, 2 threads:
#: ~75 µs per tree per 1,000 rows). The review's risk factors act mostly additively on the
#: log-odds: at seed 7 / 50,000 rows depth 2 with eta 0.1 matched depth 3 with eta 0.05
#: (test AUROC 0.812 vs 0.811) at a third of the cost, and over seeds 1, 2, 3, 5, 8 and 13
#: eta 0.2 against 0.1 halves the trees (mean 131 vs 274) for a test AUROC 0.0016 lower
#: (−0.004 to +0.002, an order of magnitude inside its bootstrap interval), Brier 0.0005
#: higher and ICI no worse. Cutting eta 0.1's trees short instead lost more (seed 7 at 130
#: trees: AUROC 0.809). ``--tune`` still searches depths 2-6 and eta 0.01-0.2.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 2,
    "eta": 0.2,
    "min_child_weight": 10.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "alpha": 0.0,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a fit; logged as the run's parameters."""

    seed: int = 7
    test_size: float = 0.2
    calibration_size: float = 0.2
    early_stopping_size: float = 0.15  # of the training split
    holdout_site: str | None = None
    holdout_after: str | None = None  # ISO date: rows on/after it are the test split
    tune_trials: int = 0
    masked_copies: int = 1  # masked copies of each row that teach what unknown means
    max_rounds: int = 3000
    early_stopping_rounds: int = 100
    min_events: int = 20  # per split, events and non-events alike
    nthread: int = 2
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))


class TrainingDataError(ValueError):
    """The table cannot be trained on; ``issues`` is the validator's row report, if any."""

    def __init__(self, message: str, issues: list[RowIssue] | None = None) -> None:
        super().__init__(message)
        self.issues = issues or []


@dataclass(frozen=True)
class Splits:
    """Row indices of each split, and how the test split was chosen."""

    train: np.ndarray
    valid: np.ndarray  # early stopping (a slice of the training rows)
    calibration: np.ndarray
    test: np.ndarray
    strategy: str

    def sizes(self, y: np.ndarray) -> dict[str, dict[str, int]]:
        return {
            name: {"rows": len(idx), "events": int(y[idx].sum())}
            for name, idx in self.__dict__.items()
            if isinstance(idx, np.ndarray)
        }


@dataclass
class Fitted:
    """What a fit produced: the served model and the comparison model, with their data."""

    model: PERiskModel
    logistic: Pipeline
    splits: Splits
    x: np.ndarray  # the model matrix for every row, columns = MODEL_FEATURE_NAMES
    y: np.ndarray
    params: dict[str, Any]
    best_iteration: int
    constraints: dict[str, int] = field(default_factory=dict)


def check_table(report: TableReport, config: TrainConfig) -> np.ndarray:
    """The outcome vector, or ``TrainingDataError`` saying why this table cannot be trained on."""
    if report.outcome is None:
        raise TrainingDataError(
            "the table has no 'pe_event' column: training needs the outcome (0/1) for every row",
            report.issues,
        )
    if report.issues:
        raise TrainingDataError(
            f"{report.n_bad} of {report.n_rows} rows fail the data contract "
            f"({len(report.issues)} issues); fix them, or drop them with "
            "`pe-risk validate --drop-invalid` and train on the result",
            report.issues,
        )
    y = report.outcome.astype(int)
    events = int(y.sum())
    if events in (0, len(y)):
        raise TrainingDataError(
            f"pe_event has one class only ({events} events in {len(y)} rows); "
            "training needs both events (1) and non-events (0)"
        )
    needed = config.min_events / min(config.test_size, config.calibration_size)
    if min(events, len(y) - events) < needed:
        raise TrainingDataError(
            f"{events} events in {len(y)} rows are too few: the calibration and test splits "
            f"each need at least {config.min_events} events and non-events, so the table needs "
            f"about {int(np.ceil(needed))}"
        )
    return y


def make_splits(report: TableReport, y: np.ndarray, config: TrainConfig) -> Splits:
    """Seeded, outcome-stratified splits; optionally a held-out site or latest period as test."""
    rows = np.arange(len(y))
    if config.holdout_site and config.holdout_after:
        raise TrainingDataError("give --holdout-site or --holdout-after, not both")
    if config.holdout_site:
        site = _meta(report, "site", "--holdout-site")
        known = sorted({str(s) for s in site if s is not None})
        is_test = site == config.holdout_site
        if not is_test.any():
            raise TrainingDataError(
                f"site={config.holdout_site!r} is not in the table; sites: {known}"
            )
        test, rest = rows[is_test], rows[~is_test]
        strategy = f"held-out site {config.holdout_site!r}"
    elif config.holdout_after:
        dates = _meta(report, "index_date", "--holdout-after")
        try:
            when = np.array(dates, dtype="datetime64[D]")
            cut = np.datetime64(config.holdout_after, "D")
        except ValueError as exc:
            raise TrainingDataError(
                f"index_date or --holdout-after is not an ISO date: {exc}"
            ) from None
        is_test = when >= cut
        test, rest = rows[is_test], rows[~is_test]
        strategy = f"temporal: index_date ≥ {config.holdout_after}"
    else:
        rest, test = train_test_split(
            rows, test_size=config.test_size, stratify=y, random_state=config.seed
        )
        strategy = f"random, stratified on pe_event (seed {config.seed})"
    cal_share = config.calibration_size / (1 - config.test_size)
    train, calibration = _split(rest, y, cal_share, config.seed + 1)
    train, valid = _split(train, y, config.early_stopping_size, config.seed + 2)
    splits = Splits(np.sort(train), np.sort(valid), np.sort(calibration), np.sort(test), strategy)
    for name, size in splits.sizes(y).items():
        if name == "valid":
            continue
        if min(size["events"], size["rows"] - size["events"]) < config.min_events:
            raise TrainingDataError(
                f"the {name} split has {size['events']} events in {size['rows']} rows; "
                f"at least {config.min_events} events and non-events are needed ({strategy})"
            )
    return splits


def _meta(report: TableReport, column: str, option: str) -> np.ndarray:
    if column not in report.meta:
        raise TrainingDataError(f"{option} needs a {column!r} column in the table")
    return report.meta[column]


def _split(
    rows: np.ndarray, y: np.ndarray, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    a, b = train_test_split(rows, test_size=share, stratify=y[rows], random_state=seed)
    return a, b


@dataclass(frozen=True)
class FitData:
    """The matrices the booster is fitted on: training rows and the early-stopping slice,
    each followed by its masked copies (``training.unknowns``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    n_train: int  # the training rows themselves: the first n_train of x_train

    @classmethod
    def of(
        cls,
        columns: dict[str, np.ndarray],
        y: np.ndarray,
        splits: Splits,
        config: TrainConfig,
    ) -> FitData:
        rng = np.random.default_rng([config.seed, 3])
        names, copies = MODEL_FEATURE_NAMES, config.masked_copies
        xt, yt = unknowns.with_masked_copies(columns, splits.train, y, rng, names, copies)
        xv, yv = unknowns.with_masked_copies(columns, splits.valid, y, rng, names, copies)
        return cls(xt, yt, xv, yv, len(splits.train))


def fit_booster(
    data: FitData,
    params: dict[str, Any],
    config: TrainConfig,
    constraints: dict[str, int],
    progress: Progress | None = None,
) -> tuple[xgb.Booster, float]:
    """Monotone XGBoost with early stopping; returns the booster and its best validation log-loss."""
    names = list(MODEL_FEATURE_NAMES)
    dtrain = xgb.DMatrix(data.x_train, data.y_train, feature_names=names, missing=np.nan)
    dvalid = xgb.DMatrix(data.x_valid, data.y_valid, feature_names=names, missing=np.nan)
    full = {
        **params,
        "monotone_constraints": {n: c for n, c in constraints.items() if c},
        "seed": config.seed,
        "nthread": config.nthread,
    }
    callbacks = [_Progress(progress, 250)] if progress else []
    booster = xgb.train(
        full,
        dtrain,
        num_boost_round=config.max_rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
        callbacks=callbacks,
    )
    booster = booster[: booster.best_iteration + 1]  # keep only the trees that helped
    return booster, float(booster.eval(dvalid).split(":")[-1])


def directions(
    data: FitData, params: dict[str, Any], config: TrainConfig
) -> tuple[dict[str, int], dict[str, dict[str, float]]]:
    """The monotone constraints of the fit: the declared ones, and for each feature that can
    be unknown without a declared direction, the sign of its effect in a first fit."""
    pilot, _ = fit_booster(data, params, config, dict(MONOTONE_CONSTRAINTS))
    free = unknowns.free_directions(
        pilot, data.x_train[: data.n_train], MODEL_FEATURE_NAMES, MONOTONE_CONSTRAINTS
    )
    constraints = dict(MONOTONE_CONSTRAINTS)
    constraints.update({k: int(v["direction"]) for k, v in free.items()})
    return constraints, free


class _Progress(xgb.callback.TrainingCallback):
    def __init__(self, progress: Progress, every: int) -> None:
        self.progress, self.every = progress, every

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        if epoch and epoch % self.every == 0:
            loss = evals_log["valid"]["logloss"][-1]
            self.progress(f"  boosting round {epoch}: validation log-loss {loss:.5f}")
        return False


def tune(
    data: FitData,
    constraints: dict[str, int],
    config: TrainConfig,
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Optuna TPE search (seeded) minimising validation log-loss; returns the best parameters."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        params = {
            **DEFAULT_PARAMS,
            "max_depth": trial.suggest_int("max_depth", 2, 6),
            "eta": trial.suggest_float("eta", 0.01, 0.2, log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "lambda": trial.suggest_float("lambda", 0.1, 20.0, log=True),
            "alpha": trial.suggest_float("alpha", 1e-3, 5.0, log=True),
        }
        _, loss = fit_booster(data, params, config, constraints)
        if on_trial:
            on_trial(trial.number, params, loss)
        if progress:
            progress(
                f"  trial {trial.number + 1}/{config.tune_trials}: validation log-loss {loss:.5f}"
            )
        return loss

    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.optimize(objective, n_trials=config.tune_trials)
    return {**DEFAULT_PARAMS, **study.best_params}


def fit_calibration(margin: np.ndarray, y: np.ndarray) -> Calibration:
    """Unpenalised logistic regression of the outcome on the booster margin (Platt scaling)."""
    fit = sm.Logit(y.astype(float), sm.add_constant(margin.astype(float))).fit(disp=0)
    b, a = (float(v) for v in fit.params)
    return Calibration(a=a, b=b, n_rows=len(y), n_events=int(y.sum()))


def fit_logistic(x: np.ndarray, y: np.ndarray) -> Pipeline:
    """The comparison model: logistic regression on the same features (median-imputed, with
    missing-value indicators, standardised, lightly L2-penalised)."""
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=5000),
    )
    return model.fit(x, y)


def fit(
    report: TableReport,
    config: TrainConfig,
    *,
    horizon_days: int,
    info: dict[str, Any] | None = None,
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
    progress: Progress | None = None,
) -> Fitted:
    """The whole recipe of this module's docstring, on a validated table."""
    say = progress or (lambda _msg: None)
    y = check_table(report, config)
    splits = make_splits(report, y, config)
    sizes = ", ".join(f"{k} {v['rows']} ({v['events']} events)" for k, v in splits.sizes(y).items())
    say(f"splits ({splits.strategy}): {sizes}")
    x = feature_matrix(report.columns, MODEL_FEATURE_NAMES)
    data = FitData.of(report.columns, y, splits, config)

    params = dict(config.params)
    say("choosing a direction for each feature that can be unknown (a first fit)")
    constraints, free = directions(data, params, config)
    if config.tune_trials:
        say(f"tuning: {config.tune_trials} Optuna trials")
        params = tune(data, constraints, config, on_trial=on_trial, progress=say)
    say(f"fitting the booster on {len(data.y_train)} rows with masked copies (early stopping)")
    booster, loss = fit_booster(data, params, config, constraints, progress=say)
    booster, turned = unknowns.route_unknowns_with_known(booster, data.x_train, MODEL_FEATURE_NAMES)
    say(
        f"  {booster.num_boosted_rounds()} trees, validation log-loss {loss:.5f}; "
        f"{turned} splits turned so that unknown values follow known ones"
    )

    cal = splits.calibration
    rng = np.random.default_rng([config.seed, 4])
    x_cal, y_cal = unknowns.with_masked_copies(
        report.columns, cal, y, rng, MODEL_FEATURE_NAMES, config.masked_copies
    )
    dcal = xgb.DMatrix(x_cal, feature_names=list(MODEL_FEATURE_NAMES), missing=np.nan)
    calibration = fit_calibration(booster.predict(dcal, output_margin=True), y_cal)
    say(f"calibration map: logit(p) = {calibration.a:.4f}·margin {calibration.b:+.4f}")
    info = {
        **(info or {}),
        "unknowns": unknowns.unknown_summary(free, turned, config.masked_copies),
    }

    model = PERiskModel(
        booster=booster,
        feature_names=MODEL_FEATURE_NAMES,
        calibration=calibration,
        monotone=constraints,
        horizon_days=horizon_days,
        info=info,
    )
    say("fitting the logistic-regression comparison model")
    logistic = fit_logistic(x[splits.train], y[splits.train])
    return Fitted(model, logistic, splits, x, y, params, booster.num_boosted_rounds(), constraints)
