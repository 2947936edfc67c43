"""Fit the PE-risk model: checked data → splits → two monotone XGBoost heads → calibration.

The two questions (design.md, "What it is"; ``models.artifact``):

- **PE now** (``pe_now``), fitted on the rows where PE was suspected: the outcome is a PE
  found by the work-up at the index assessment (``pe_days == 0``).
- **New PE by 30, 90 and 180 days** (``new_pe``), fitted on the rows without PE now. A
  hospital's table does not hold a clean yes/no at 180 days: people die, and follow-up ends
  early. The outcome at horizon ``h`` is a PE by ``h`` (1) against no PE by ``h``, a death
  before ``h`` without PE counting as no PE (0: the cumulative incidence with death as a
  competing risk), and each row is weighted by the inverse probability of still being
  followed (IPCW, ``training.survival``); rows censored before ``h`` carry weight 0. This
  is direct binomial regression of the cumulative incidence (Scheike TH, Zhang MJ, Gerds
  TA, Biometrika 2008;95:205), chosen over a discrete-time hazard model because it gives
  one booster and one exact explanation per horizon, and over Fine–Gray because the
  learner stays a weighted binary one that XGBoost fits as is. The booster learns the
  180-day cumulative incidence; the horizons share its margin and get one intercept each.
  A table with only ``pe_event`` is read as complete follow-up at 180 days (documented):
  no weights, no PE-now head, one horizon.

The recipe (design.md, "Model"):

1. The table is validated against the data contract (``features.table``); any bad row
   stops training with the validator's row report, before anything is written.
2. Splits are seeded and stratified on the outcome (PE now, new PE by 180 days, neither):
   *train* (with an early-stopping slice), *calibration* and *test*. With a ``site`` or
   ``index_date`` column the test split can instead be one held-out site or the latest
   period (external-style validation; TRIPOD+AI item 16).
3. Per head, XGBoost on the feature specification (names, order and monotone constraints
   from ``features.spec``; missing values kept missing), early stopping on the slice and at
   most ``max_trees`` trees (serving pays per tree; the training output and the model card
   say when the cap stopped a head first); an optional Optuna search over the usual
   hyper-parameters. Unknown values are taught and bounded as ``training.unknowns`` says:
   every split is fitted on the rows and a masked copy of them, every field that can be
   unknown gets a monotone direction (declared, or from a first fit), and no split keeps a
   branch for missing values alone.
4. The calibration map ``logit(p_h) = a·margin + b_h`` is fitted by unpenalised (IPCW-
   weighted) logistic regression on out-of-fold margins of every row outside the test split
   and their masked copies (``cross_fitted``: Platt scaling as Platt did it), the horizons
   stacked with one intercept each; the intercepts are made non-decreasing, so no estimate
   decreases with the horizon. The served booster is then fitted on those rows with the
   early-stopped tree count.
5. A logistic regression on the same features (same rows, same weights) is fitted as a
   baseline.
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
from features.contract import FOLLOWUP_DAYS, HORIZONS_DAYS, OUTCOME, TIME_OUTCOMES
from features.spec import MODEL_FEATURE_NAMES, MONOTONE_CONSTRAINTS
from features.table import HORIZON_OF_PE_EVENT, RowIssue, TableReport
from models.artifact import (
    NEW_PE,
    PE_NOW,
    Calibration,
    Head,
    PERiskModel,
    RiskBands,
    diagnostic_bands,
)
from training import survival, unknowns

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
    calibration_folds: int = 5  # out-of-fold margins the calibration map is fitted on
    #: the most trees a head may have. Early stopping alone grows them with the table (seed
    #: 7, PE now / new PE: 101 / 169 trees at 50,000 rows, 193 / 253 at 200,000, 396 / 535
    #: at 1,000,000) and serving pays per tree (exact TreeSHAP, ``DEFAULT_PARAMS``). Cut at
    #: 300 (``benchmarks/bench_tree_cap.py``), test AUROC: 200,000 rows unchanged (PE now
    #: 0.9810, new PE 0.7576); 1,000,000 rows PE now unchanged (0.9804), new PE 0.7579
    #: against 0.7586 uncapped (0.7573 at 250, 0.7584 at 400; its 95 % interval is about
    #: ±0.005 wide), for 600 trees instead of 931. 50,000 rows are not affected.
    max_trees: int = 300
    early_stopping_rounds: int = 100
    min_events: int = 20  # per split, events and non-events alike
    nthread: int = 2
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    #: per-head changes to ``params``. The new-PE outcome is rarer and IPCW-weighted, and its
    #: truth is not additive in log-odds (death competes more where PE risk is high): at
    #: seed 7 depth 2 / eta 0.2 reached 0.948 × the generator's true time-dependent AUROC at
    #: 50,000 rows, and depth 2 / eta 0.1 left the lowest tenth 26 % under its true risk at
    #: 200,000 rows; depth 3 / eta 0.05 gives 0.954 and 0.964 × the truth, every tenth within
    #: 8 % and 14 %, the mean within 0.1 % and 2.5 % (seeds 1, 2, 3: 0.955, 0.968, 0.961), for
    #: 169 trees. PE now keeps depth 2 / eta 0.2.
    head_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"new_pe": {"eta": 0.05, "max_depth": 3}}
    )


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


@dataclass(frozen=True)
class Outcomes:
    """What every row of a table says about the two questions.

    ``pe_now`` is 1/0 (NaN when the table cannot tell: ``pe_event`` only). ``time`` and
    ``cause`` are the first event after the index date for the rows without PE now (cause
    1 = PE, 2 = death, 0 = censored; -1 on the rows with PE now, which the new-PE question
    leaves out). ``timed`` is False for a ``pe_event``-only table: complete follow-up at 180
    days is then assumed (data-contract.md), and the new-PE outcome is ``pe_event``.
    """

    pe_now: np.ndarray
    time: np.ndarray
    cause: np.ndarray
    timed: bool
    horizons: tuple[int, ...]

    @classmethod
    def of(cls, report: TableReport) -> Outcomes:
        if report.times:
            pe, death, follow = (report.times[k] for k in TIME_OUTCOMES)
            now = pe == 0
            time, cause = survival.first_event(np.where(now, np.nan, pe), death, follow)
            return cls(
                now.astype(float),
                np.where(now, 0.0, time),
                np.where(now, -1, cause),
                True,
                HORIZONS_DAYS,
            )
        assert report.outcome is not None
        y = report.outcome.astype(int)
        days = np.full(len(y), float(HORIZON_OF_PE_EVENT))
        return cls(np.full(len(y), np.nan), days, y, False, (HORIZON_OF_PE_EVENT,))

    @property
    def new_rows(self) -> np.ndarray:
        """The rows the new-PE question is asked of: without PE now."""
        return self.cause >= 0

    def at(self, horizon: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(y, w)`` of a new PE by ``horizon`` for ``rows`` (without PE now): IPCW weights
        from the censoring of those rows (``training.survival.ipcw``); all 1 without times."""
        if not self.timed:
            return (self.cause[rows] == 1).astype(float), np.ones(len(rows))
        return survival.ipcw(self.time[rows], self.cause[rows], horizon)

    def label(self) -> np.ndarray:
        """The stratum of each row: 2 = PE now, 1 = new PE by the longest horizon, 0 = neither."""
        new = (self.cause == 1) & (self.time <= self.horizons[-1])
        return np.where(self.pe_now == 1, 2, new.astype(int))


def split_counts(splits: Splits, outcomes: Outcomes) -> dict[str, dict[str, int]]:
    """Rows, PEs now and new PEs (by the longest horizon, as recorded) in each split."""
    label = outcomes.label()
    return {
        name: {
            "rows": len(idx),
            "pe_now": int((label[idx] == 2).sum()),
            "new_pe": int((label[idx] == 1).sum()),
        }
        for name, idx in splits.__dict__.items()
        if isinstance(idx, np.ndarray)
    }


def table_outcomes(report: TableReport) -> tuple[Outcomes, int, int, str]:
    """The outcomes of a table with an outcome and no bad rows, with its events and rows with
    an outcome at the longest horizon and what they are, in words; or ``TrainingDataError``."""
    if report.outcome is None and not report.times:
        raise TrainingDataError(
            f"the table has no outcome: training needs {OUTCOME!r} (0/1, PE within "
            f"{HORIZON_OF_PE_EVENT} days, complete follow-up) or the time-to-event columns "
            f"{', '.join(TIME_OUTCOMES)}",
            report.issues,
        )
    if report.issues:
        raise TrainingDataError(
            f"{report.n_bad} of {report.n_rows} rows fail the data contract "
            f"({len(report.issues)} issues); fix them, or drop them with "
            "`pe-risk validate --drop-invalid` and use the result",
            report.issues,
        )
    outcomes = Outcomes.of(report)
    rows = np.flatnonzero(outcomes.new_rows)
    y, w = outcomes.at(outcomes.horizons[-1], rows)
    known, events = int((w > 0).sum()), int(y[w > 0].sum())
    what = f"new PEs by {outcomes.horizons[-1]} days" if outcomes.timed else f"{OUTCOME}=1 rows"
    if events in (0, known):
        raise TrainingDataError(
            f"{what}: {events} among {known} rows with an outcome; the table needs both "
            "events and non-events"
            + (f" ({FOLLOWUP_DAYS} may be too short)" if outcomes.timed and not events else "")
        )
    return outcomes, events, known, what


def check_table(report: TableReport, config: TrainConfig) -> Outcomes:
    """The outcomes, or ``TrainingDataError`` saying why this table cannot be trained on,
    its splits included (a held-out site or period): checked before any MLflow run starts."""
    outcomes, events, known, what = table_outcomes(report)
    needed = config.min_events / min(config.test_size, config.calibration_size)
    if min(events, known - events) < needed:
        raise TrainingDataError(
            f"{events} {what} in {known} rows are too few: the calibration and test splits "
            f"each need at least {config.min_events} events and non-events, so the table needs "
            f"about {int(np.ceil(needed))}"
        )
    # a held-out site or period that cannot be the test split starts no run either
    make_splits(report, outcomes, config)
    return outcomes


#: how many of the table's sites a message lists
SHOWN_SITES = 10


def holdout_rows(report: TableReport, config: TrainConfig) -> tuple[np.ndarray, str] | None:
    """The rows of a held-out test split (``--holdout-site``, ``--holdout-after``) and how
    they were chosen, or ``None`` for a random split; ``TrainingDataError`` naming the
    option, its value and what is accepted when the option cannot choose them."""
    site_given, after_given = config.holdout_site is not None, config.holdout_after is not None
    if site_given and after_given:
        raise TrainingDataError(
            f"--holdout-site={config.holdout_site!r} and --holdout-after="
            f"{config.holdout_after!r} were both given; give one: a held-out site or a later "
            "period is the test split"
        )
    if site_given:
        site = _meta(report, "site", "--holdout-site")
        known = np.array([None if _blank(s) else str(s) for s in site], dtype=object)
        is_test = known == str(config.holdout_site)
        if not is_test.any():
            sites = sorted({s for s in known if s is not None})
            listed = ", ".join(repr(s) for s in sites[:SHOWN_SITES])
            more = f" and {len(sites) - SHOWN_SITES} more" if len(sites) > SHOWN_SITES else ""
            raise TrainingDataError(
                f"--holdout-site={config.holdout_site!r} is not a site of the table; "
                + (f"its sites are {listed}{more}" if sites else "its 'site' column is empty")
            )
        return is_test, f"held-out site {config.holdout_site!r}"
    if after_given:
        given = str(config.holdout_after)
        try:
            if len(given) != 10:  # YYYY-MM-DD only: numpy also reads "2024" and "2024-07"
                raise ValueError(given)
            cut = np.datetime64(given, "D")
        except ValueError:
            raise TrainingDataError(
                f"--holdout-after={given!r} is not a date; give it as YYYY-MM-DD, e.g. "
                "2024-07-01 (rows with index_date on or after it are the test split)"
            ) from None
        dates = _meta(report, "index_date", "--holdout-after")
        when = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[D]")
        for i, d in enumerate(dates):
            if _blank(d):
                continue
            try:
                when[i] = np.datetime64(str(d)[:10], "D")
            except ValueError:
                raise TrainingDataError(
                    f"index_date={d!r} in row {i + 1} is not a date (YYYY-MM-DD); "
                    "--holdout-after needs the index date of every row that has one"
                ) from None
        return when >= cut, f"temporal: index_date ≥ {given}"
    return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def make_splits(report: TableReport, outcomes: Outcomes, config: TrainConfig) -> Splits:
    """Seeded, outcome-stratified splits; optionally a held-out site or latest period as test."""
    y = outcomes.label()
    rows = np.arange(len(y))
    held_out = holdout_rows(report, config)
    if held_out is not None:
        is_test, strategy = held_out
        test, rest = rows[is_test], rows[~is_test]
        for part, rows_of in (("the test split", test), ("the rows left to train on", rest)):
            events = int(np.sum(y[rows_of] == 1))
            if min(events, len(rows_of) - events) < config.min_events:
                raise TrainingDataError(
                    f"{strategy}: {part} has {events} new PEs in {len(rows_of)} rows; at "
                    f"least {config.min_events} events and non-events are needed"
                )
    else:
        rest, test = train_test_split(
            rows, test_size=config.test_size, stratify=y, random_state=config.seed
        )
        strategy = f"random, stratified on the outcome (seed {config.seed})"
    cal_share = config.calibration_size / (1 - config.test_size)
    train, calibration = _split(rest, y, cal_share, config.seed + 1)
    train, valid = _split(train, y, config.early_stopping_size, config.seed + 2)
    splits = Splits(np.sort(train), np.sort(valid), np.sort(calibration), np.sort(test), strategy)
    new = (y == 1).astype(int)
    for name, size in splits.sizes(new).items():
        if name == "valid":
            continue
        if min(size["events"], size["rows"] - size["events"]) < config.min_events:
            raise TrainingDataError(
                f"the {name} split has {size['events']} new PEs in {size['rows']} rows; "
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
    """The matrices one head's booster is fitted on: training rows and the early-stopping
    slice, each followed by its masked copies (``training.unknowns``), with their outcome
    and weight (rows of weight 0, censored before the horizon, are left out)."""

    x_train: np.ndarray
    y_train: np.ndarray
    w_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    w_valid: np.ndarray
    n_train: int  # the training rows themselves: the first n_train of x_train

    @classmethod
    def of(
        cls,
        columns: dict[str, np.ndarray],
        task: Task,
        splits: Splits,
        config: TrainConfig,
    ) -> FitData:
        rng = np.random.default_rng([config.seed, 3, HEAD_SEED[task.key]])
        names, copies = MODEL_FEATURE_NAMES, config.masked_copies
        parts = []
        for split in (splits.train, splits.valid):
            rows, yw = task.targets(split)
            keep = yw[:, 1] > 0
            rows, yw = rows[keep], yw[keep]
            full = np.zeros((len(columns["age"]), 2))
            full[rows] = yw
            x, y = unknowns.with_masked_copies(columns, rows, full, rng, names, copies)
            parts.append((x, y[:, 0], y[:, 1], len(rows)))
        (xt, yt, wt, n), (xv, yv, wv, _) = parts
        return cls(xt, yt, wt, xv, yv, wv, n)


#: a seed stream per head, so that adding one never changes the other's draws
HEAD_SEED = {NEW_PE: 0, PE_NOW: 1}


@dataclass(frozen=True)
class Task:
    """One head's learning problem: its rows in each split and their outcome at a horizon."""

    key: str
    outcomes: Outcomes
    horizons: tuple[int, ...]
    suspected: np.ndarray = field(repr=False)  # the suspected_pe column (1/0/NaN)

    def rows(self, split: np.ndarray) -> np.ndarray:
        """The rows of ``split`` this head learns from and is evaluated on."""
        if self.key == PE_NOW:
            known = ~np.isnan(self.outcomes.pe_now[split])
            return split[(self.suspected[split] == 1) & known]
        return split[self.outcomes.new_rows[split]]

    def targets(
        self, split: np.ndarray, horizon: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The head's rows of ``split`` and, per row, [outcome, weight] at ``horizon``."""
        rows = self.rows(split)
        if self.key == PE_NOW:
            return rows, np.column_stack([self.outcomes.pe_now[rows], np.ones(len(rows))])
        y, w = self.outcomes.at(self.horizons[-1] if horizon is None else horizon, rows)
        return rows, np.column_stack([y, w])


def tasks(
    report: TableReport, outcomes: Outcomes, splits: Splits, config: TrainConfig
) -> list[Task]:
    """The heads this table can train: new PE always; PE now when the table has times and
    every split has enough suspected rows with and without PE now."""
    out = [Task(NEW_PE, outcomes, outcomes.horizons, report.columns["suspected_pe"])]
    if outcomes.timed:
        now = Task(PE_NOW, outcomes, (0,), report.columns["suspected_pe"])
        counts = []
        for split in (splits.train, splits.calibration, splits.test):
            _, yw = now.targets(split)
            counts.append((int(yw[:, 0].sum()), len(yw)))
        if all(min(k, n - k) >= config.min_events for k, n in counts):
            out.insert(0, now)
    return out


def fit_booster(
    data: FitData,
    params: dict[str, Any],
    config: TrainConfig,
    constraints: dict[str, int],
    progress: Progress | None = None,
) -> tuple[xgb.Booster, float, bool]:
    """Monotone XGBoost with early stopping, at most ``config.max_trees`` trees; returns the
    booster (its best round's trees), its validation log-loss there, and whether the cap
    stopped it before early stopping would have (the loss still fell within the last
    ``early_stopping_rounds`` rounds)."""
    names = list(MODEL_FEATURE_NAMES)
    dtrain = xgb.DMatrix(
        data.x_train, data.y_train, weight=data.w_train, feature_names=names, missing=np.nan
    )
    dvalid = xgb.DMatrix(
        data.x_valid, data.y_valid, weight=data.w_valid, feature_names=names, missing=np.nan
    )
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
        num_boost_round=config.max_trees,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
        callbacks=callbacks,
    )
    capped = booster.best_iteration + config.early_stopping_rounds >= config.max_trees
    booster = booster[: booster.best_iteration + 1]  # keep only the trees that helped
    return booster, float(booster.eval(dvalid).split(":")[-1]), capped


def directions(
    data: FitData, params: dict[str, Any], config: TrainConfig
) -> tuple[dict[str, int], dict[str, dict[str, float]]]:
    """The monotone constraints of the fit: the declared ones, and for each feature that can
    be unknown without a declared direction, the sign of its effect in a first fit."""
    pilot, _, _ = fit_booster(data, params, config, dict(MONOTONE_CONSTRAINTS))
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
        _, loss, _ = fit_booster(data, params, config, constraints)
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


def fit_calibration(margin: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> Calibration:
    """Unpenalised logistic regression of the outcome on the booster margin (Platt scaling),
    weighted when ``w`` is given. ``y`` and ``w`` may have one column per horizon: the
    horizons are stacked with a common slope and one intercept each, and the intercepts
    made non-decreasing (a running maximum), so no estimate decreases with the horizon."""
    y = y.reshape(len(margin), -1).astype(float)
    w = np.ones_like(y) if w is None else w.reshape(y.shape).astype(float)
    k = y.shape[1]
    design = np.column_stack(
        [np.repeat(margin.astype(float), k), np.tile(np.eye(k), (len(margin), 1))]
    )
    yy, ww = y.ravel(), w.ravel()
    keep = ww > 0
    fit = sm.GLM(yy[keep], design[keep], family=sm.families.Binomial(), var_weights=ww[keep]).fit()
    a, intercepts = float(fit.params[0]), np.maximum.accumulate(fit.params[1:])
    events = float((y[:, -1] * w[:, -1]).sum())  # weighted: the expected count at the horizon
    return Calibration(
        a=a,
        intercepts=tuple(float(b) for b in intercepts),
        n_rows=len(margin),
        n_events=round(events),
    )


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> Pipeline:
    """The comparison model: logistic regression on the same features (median-imputed, with
    missing-value indicators, standardised, lightly L2-penalised), with the same weights."""
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=5000),
    )
    return model.fit(x, y, logisticregression__sample_weight=w)


def _fit_rounds(
    task: Task,
    report: TableReport,
    rows: np.ndarray,
    table: np.ndarray,
    rng: np.random.Generator,
    rounds: int,
    params: dict[str, Any],
    constraints: dict[str, int],
    config: TrainConfig,
) -> tuple[xgb.Booster, int]:
    """A booster of the head's recipe with a fixed tree count on ``rows`` and their masked
    copies (``table``: [outcome, weight] per horizon by table row), unknowns routed; and how
    many splits were turned."""
    names = MODEL_FEATURE_NAMES
    keep = table[rows, 2 * len(task.horizons) - 1] > 0  # weight at the longest horizon
    x, yw = unknowns.with_masked_copies(
        report.columns, rows[keep], table, rng, names, config.masked_copies
    )
    full = {**params, "monotone_constraints": {n: c for n, c in constraints.items() if c}}
    full |= {"seed": config.seed, "nthread": config.nthread}
    dfit = xgb.DMatrix(x, yw[:, -2], weight=yw[:, -1], feature_names=list(names), missing=np.nan)
    booster = xgb.train(full, dfit, num_boost_round=rounds, verbose_eval=False)
    return unknowns.route_unknowns_with_known(booster, x, names)


def cross_fitted(
    task: Task,
    report: TableReport,
    splits: Splits,
    params: dict[str, Any],
    constraints: dict[str, int],
    rounds: int,
    config: TrainConfig,
) -> CrossFit:
    """The served booster and its calibration map, both from every row outside the test split.

    Platt (1999) fitted the sigmoid on cross-validated outputs, so that it sees margins of
    rows the booster did not learn from, and scikit-learn's ``CalibratedClassifierCV(
    ensemble=False)`` does the same: ``config.calibration_folds`` boosters with the recipe and
    the early-stopped tree count of the first fit are fitted on the other folds (with their
    masked copies) and score their own fold and its masked copies; the calibration map is
    fitted on those out-of-fold margins, and the served booster is then fitted on all the
    rows. With a rare outcome this uses about five times the events of a calibration split
    alone: at 50,000 synthetic rows the slope of the split alone varied by ±0.1 between
    seeds, enough to fail the gate by chance.
    """
    pool = np.sort(np.concatenate([splits.train, splits.valid, splits.calibration]))
    rows = task.rows(pool)
    yw = np.column_stack([np.column_stack(task.targets(rows, h)[1].T) for h in task.horizons])
    table = np.zeros((len(report.columns["age"]), yw.shape[1]))
    table[rows] = yw
    rng = np.random.default_rng([config.seed, 4, HEAD_SEED[task.key]])
    fold = rng.permutation(len(rows)) % config.calibration_folds
    fit = (task, report)
    margins, outcomes = [], []
    oof = np.full(len(table), np.nan)  # each row's out-of-fold margin, as recorded
    for k in range(config.calibration_folds):
        booster, _ = _fit_rounds(
            *fit, rows[fold != k], table, rng, rounds, params, constraints, config
        )
        own = rows[fold == k]
        x_own, yw_own = unknowns.with_masked_copies(
            report.columns, own, table, rng, MODEL_FEATURE_NAMES, config.masked_copies
        )
        down = xgb.DMatrix(x_own, feature_names=list(MODEL_FEATURE_NAMES), missing=np.nan)
        margins.append(booster.predict(down, output_margin=True))
        oof[own] = margins[-1][: len(own)]
        outcomes.append(yw_own)
    yw_all = np.vstack(outcomes)
    calibration = fit_calibration(np.concatenate(margins), yw_all[:, 0::2], yw_all[:, 1::2])
    served, turned = _fit_rounds(*fit, rows, table, rng, rounds, params, constraints, config)
    return CrossFit(served, calibration, turned, rows, oof[rows])


@dataclass(frozen=True)
class CrossFit:
    """What ``cross_fitted`` gives: the served booster, its calibration map, the splits turned
    in it, and the out-of-fold margin of every row it learned from (as recorded)."""

    booster: xgb.Booster
    calibration: Calibration
    turned: int
    rows: np.ndarray
    oof_margin: np.ndarray


@dataclass
class HeadFit:
    """One head as fitted, with its comparison model and what the run logs about it."""

    head: Head
    task: Task
    logistic: Pipeline | None  # None: a registered model scored on another table
    params: dict[str, Any]
    best_iteration: int
    constraints: dict[str, int]
    free: dict[str, dict[str, float]]
    turned: int
    oof_rows: np.ndarray  # the rows the served booster learned from
    oof_margin: np.ndarray  # their out-of-fold margins (isotonic comparison, not served)
    capped: bool = False  # the tree cap stopped it before early stopping would have


def fit_head(
    task: Task,
    report: TableReport,
    x: np.ndarray,
    splits: Splits,
    config: TrainConfig,
    *,
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
    progress: Progress | None = None,
) -> HeadFit:
    """Steps 3–5 of the module docstring for one head."""
    say = progress or (lambda _msg: None)
    data = FitData.of(report.columns, task, splits, config)
    params = {**config.params, **config.head_params.get(task.key, {})}
    say(f"[{task.key}] choosing a direction for each feature that can be unknown (a first fit)")
    constraints, free = directions(data, params, config)
    if config.tune_trials:
        say(f"[{task.key}] tuning: {config.tune_trials} Optuna trials")
        params = tune(data, constraints, config, on_trial=on_trial, progress=say)
    say(f"[{task.key}] fitting the booster on {len(data.y_train)} rows with masked copies")
    booster, loss, capped = fit_booster(data, params, config, constraints, progress=say)
    if capped:
        say(
            f"  {booster.num_boosted_rounds()} trees: stopped by the cap of {config.max_trees} "
            f"(max_trees) before early stopping, validation log-loss {loss:.5f} and still falling"
        )
    else:
        say(
            f"  {booster.num_boosted_rounds()} trees (early stopping), validation log-loss {loss:.5f}"
        )
    say(
        f"[{task.key}] {config.calibration_folds} out-of-fold boosters for the calibration map, "
        "then the served booster on every row outside the test split"
    )
    cross = cross_fitted(
        task, report, splits, params, constraints, booster.num_boosted_rounds(), config
    )
    booster, calibration, turned = cross.booster, cross.calibration, cross.turned
    say(f"  {turned} splits turned so that unknown values follow known ones")
    bs = ", ".join(
        f"{h} d {b:+.4f}" for h, b in zip(task.horizons, calibration.intercepts, strict=True)
    )
    say(f"[{task.key}] calibration map: logit(p) = {calibration.a:.4f}·margin + b ({bs})")
    head = Head(
        key=task.key,
        booster=booster,
        feature_names=MODEL_FEATURE_NAMES,
        calibration=calibration,
        horizons=task.horizons,
        monotone=constraints,
        bands=diagnostic_bands() if task.key == PE_NOW else RiskBands(),
    )
    say(f"[{task.key}] fitting the logistic-regression comparison model (same rows)")
    train_rows, yw_train = task.targets(cross.rows)
    keep = yw_train[:, 1] > 0
    logistic = fit_logistic(x[train_rows[keep]], yw_train[keep, 0], yw_train[keep, 1])
    return HeadFit(
        head,
        task,
        logistic,
        params,
        booster.num_boosted_rounds(),
        constraints,
        free,
        turned,
        cross.rows,
        cross.oof_margin,
        capped,
    )


@dataclass
class Fitted:
    """What a fit produced: the served model, each head's fit, and the data they share."""

    model: PERiskModel
    heads: dict[str, HeadFit]
    splits: Splits
    x: np.ndarray  # the model matrix for every row, columns = MODEL_FEATURE_NAMES
    outcomes: Outcomes


def fit(
    report: TableReport,
    config: TrainConfig,
    *,
    info: dict[str, Any] | None = None,
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
    progress: Progress | None = None,
) -> Fitted:
    """The whole recipe of this module's docstring, on a validated table."""
    say = progress or (lambda _msg: None)
    outcomes = check_table(report, config)
    splits = make_splits(report, outcomes, config)
    sizes = ", ".join(
        f"{k} {v['rows']} ({v['pe_now']} PE now, {v['new_pe']} new PE)"
        for k, v in split_counts(splits, outcomes).items()
    )
    say(f"splits ({splits.strategy}): {sizes}")
    if not outcomes.timed:
        say(
            f"the table has {OUTCOME} only: read as complete follow-up at "
            f"{HORIZON_OF_PE_EVENT} days (no PE-now head, one horizon)"
        )
    x = feature_matrix(report.columns, MODEL_FEATURE_NAMES)
    found = tasks(report, outcomes, splits, config)
    if outcomes.timed and found[0].key != PE_NOW:
        say(
            f"too few suspected-PE rows with and without PE now (at least {config.min_events} "
            "per split): the model answers the new-PE question only"
        )
    heads = {
        t.key: fit_head(t, report, x, splits, config, on_trial=on_trial, progress=progress)
        for t in found
    }
    info = {
        **(info or {}),
        "outcomes": {
            "timed": outcomes.timed,
            "horizons_days": list(outcomes.horizons),
            "competing_risk": "death" if outcomes.timed else None,
            "censoring": "inverse probability of censoring weights (Kaplan–Meier of censoring)"
            if outcomes.timed
            else f"none: {OUTCOME} read as complete follow-up",
        },
        "unknowns": {
            k: unknowns.unknown_summary(h.free, h.turned, config.masked_copies)
            for k, h in heads.items()
        },
        "trees": {
            k: {"trees": h.best_iteration, "max_trees": config.max_trees, "capped": h.capped}
            for k, h in heads.items()
        },
    }
    model = PERiskModel(
        feature_names=MODEL_FEATURE_NAMES,
        heads={k: h.head for k, h in heads.items()},
        info=info,
    )
    return Fitted(model, heads, splits, x, outcomes)
