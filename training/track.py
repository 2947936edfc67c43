"""One training run, tracked in MLflow: data → fit → evaluation → gate → registry.

Everything a run produces is logged to one MLflow run (SQLite in the state folder by
default; ``MLFLOW_TRACKING_URI`` for a team server): parameters, the dataset with its
digest and source, metrics with bootstrap intervals, plots, the feature specification,
the model card and the model itself (MLflow "models from code", ``models/pyfunc.py``;
booster as UBJ and metadata as JSON, no pickle). The model is registered, and
``champion`` moved to it, only when it passes the gate (``training.registry``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

import models
from features.contract import OUTCOME, TABLE_META, new_pe_column
from features.mapping import ColumnMap, load_map, read_mapped
from features.spec import MODEL_FEATURE_NAMES, spec_table
from features.table import TableReport, validate_table
from models.artifact import NEW_PE, PE_NOW, PERiskModel
from models.settings import Settings
from training import plots
from training.card import evaluation_report, model_card
from training.compare import Evaluation, evaluate_fit, flat_metrics
from training.evaluate import rank_metrics
from training.external import (
    METHODS,
    Found,
    as_fitted,
    calibration_shift,
    evaluate_registered,
    outcomes_of,
    recalibrated,
    split_for_recalibration,
)
from training.registry import (
    Gate,
    GateResult,
    champion_version,
    mark_incomplete,
    register,
    registry_lock,
)
from training.train import Fitted, Progress, TrainConfig, check_table, fit, split_counts

EXPERIMENT = "pe-risk"
PYFUNC_CODE = Path(models.__file__).with_name("pyfunc.py")
RUNTIME_PACKAGES = ("mlflow", "xgboost", "numpy", "pandas", "pyarrow", "pydantic", "scipy")


@dataclass
class TrainingData:
    """A validated training table and what is known about where it came from."""

    report: TableReport
    frame: pd.DataFrame  # as read, for the MLflow dataset and the input example
    source: str
    trained_on: str
    synthetic: bool = False
    truth: pd.DataFrame | None = None  # synthetic cohorts only: the generator's probabilities
    column_map: ColumnMap | None = None  # how the table was read; the model keeps it

    @property
    def digest(self) -> str:
        """sha256 (first 16 hex) of the table's content, independent of file format."""
        h = hashlib.sha256(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        return h.hexdigest()[:16]


def load_training_data(
    path: Path, trained_on: str | None = None, column_map: Path | ColumnMap | None = None
) -> TrainingData:
    """Read and validate a table (through ``column_map`` when given); a pe-risk synthetic
    cohort brings its metadata and truth."""
    from training.cohort import read_meta, read_truth, truth_path

    cmap = load_map(column_map) if isinstance(column_map, str | Path) else column_map
    frame = read_mapped(path, cmap)
    report = validate_table(frame, require_outcome=True)
    try:
        meta = read_meta(path)
    except (OSError, ValueError):  # not a pe-risk cohort: no metadata beside it
        meta = {}
    synthetic = bool(meta.get("synthetic"))
    truth = read_truth(path) if synthetic and truth_path(path).exists() else None
    if trained_on is None:
        trained_on = (
            f"synthetic cohort ({meta.get('generator')}, n={meta.get('n')}, seed={meta.get('seed')})"
            if synthetic
            else f"table {path.name}"
        )
    return TrainingData(report, frame, str(path.resolve()), trained_on, synthetic, truth, cmap)


@dataclass
class Outcome:
    run_id: str
    model_uri: str
    gate: GateResult
    evaluation: Evaluation
    fitted: Fitted
    version: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


class StoreError(RuntimeError):
    """The MLflow store exists but is not one: never replaced silently (issue 20)."""


def check_store(settings: Settings) -> None:
    """Refuse an MLflow SQLite store that exists but is empty or not an MLflow database.

    SQLite reads a 0-byte file as an empty database, so MLflow would build a new store in
    it: ``pe-risk serve`` would then find no champion, train on synthetic data and serve it
    as "version 1" in place of a hospital's model, without a word. A file that exists must
    hold MLflow's tables (its ``alembic_version``); a missing file is a new store.
    """
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        return
    fix = (
        f"Restore it from a backup; to start a new store, move it away (`mv {path} "
        f"{path}.broken`); to keep serving the model already in the BentoML store, run "
        "`pe-risk serve --from-store`."
    )
    if path.stat().st_size == 0:
        raise StoreError(f"{path} is empty (0 bytes), not an MLflow store. {fix}")
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            found = db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'"
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a readable MLflow store ({exc}). {fix}") from None
    if found is None:
        raise StoreError(f"{path} is a SQLite file without MLflow's tables. {fix}")


def client_for(settings: Settings) -> MlflowClient:
    settings.ensure_dirs()
    check_store(settings)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri)


def _experiment_id(client: MlflowClient, settings: Settings) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    local = settings.mlflow_tracking_uri.startswith("sqlite:")
    location = settings.mlflow_artifact_root.as_uri() if local else None
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def _signature(model: PERiskModel) -> Any:
    """``pe_now`` and ``new_pe_<h>d`` out (``models.pyfunc``); no input schema: MLflow would
    drop every column its schema does not name (a misspelt ``d_dimmer``, a ``D_Dimer``, an
    export's own columns) before the pyfunc sees it, and the prediction would run with that
    predictor unknown. The pyfunc's own validation names what is wrong instead."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    outputs = Schema([ColSpec("double", name) for name in model.columns()])
    return ModelSignature(inputs=None, outputs=outputs)


def _training_ranges(fitted: Fitted) -> dict[str, list[float]]:
    """Per feature, the [min, max] seen in the training rows (serving flags values outside)."""
    x = fitted.x[fitted.splits.train]
    out = {}
    for j, name in enumerate(MODEL_FEATURE_NAMES):
        col = x[:, j][~np.isnan(x[:, j])]
        if col.size:
            out[name] = [float(col.min()), float(col.max())]
    return out


def _champion_on_test(
    client: MlflowClient, name: str, data: TrainingData, fitted: Fitted, say: Progress
) -> dict[str, Any] | None:
    """The current champion's AUROC for a new PE at the longest horizon, on this run's test
    rows and weights, when it can be loaded."""
    champ = champion_version(client, name)
    if champ is None:
        return None
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{champ.version}")  # the one compared
        task = fitted.heads[NEW_PE].task
        rows = task.rows(fitted.splits.test)
        horizon = task.horizons[-1]
        test = data.report.frame(with_outcome=False).iloc[rows]
        p = model.predict(test)[new_pe_column(horizon)].to_numpy()  # ignores site, index_date
        y, w = fitted.outcomes.at(horizon, rows)
        auroc = rank_metrics(y, p, w)["auroc"]
    except Exception as exc:  # an old or foreign champion: say so, do not fail the run
        say(f"  champion v{champ.version} could not be scored on the test rows: {exc}")
        return {"version": champ.version, "error": str(exc)}
    say(f"  champion v{champ.version}: AUROC {auroc:.3f} on the same test rows")
    synthetic_champion = champ.tags.get("synthetic") == "true"
    if synthetic_champion and not data.synthetic:  # measured and shown, not a bar
        say(
            f"  champion v{champ.version} was trained on synthetic data: a model trained on "
            "real data is not required to beat it"
        )
        return {"version": champ.version, "synthetic": True, "auroc_not_compared": auroc}
    out = {"version": champ.version, "auroc": auroc}
    if data.synthetic and not synthetic_champion:
        out["replaces_real_with_synthetic"] = True
    return out


#: which process runs a training: machine, PID namespace, pid and the process's own start
#: time (the kernel's, not the clock MLflow stamps runs with)
PROCESS_TAG = "pe_risk.process"


def _machine() -> str:
    """This machine and PID namespace: containers may share a hostname, not both."""
    parts = [socket.gethostname()]
    for path in ("/etc/machine-id", "/proc/self/ns/pid"):
        try:
            parts.append(
                os.readlink(path) if path.startswith("/proc") else Path(path).read_text().strip()
            )
        except OSError:
            parts.append("?")
    return "|".join(parts)


def process_identity(pid: int | None = None) -> str:
    """The ``PROCESS_TAG`` of a process (default: this one)."""
    import psutil

    pid = os.getpid() if pid is None else pid
    return f"{_machine()}|{pid}|{psutil.Process(pid).create_time():.3f}"


def _process_gone(identity: str | None) -> bool:
    """Whether the process named by a run's ``PROCESS_TAG`` has ended: it ran on this
    machine and namespace, and no process with its pid and start time exists (a pid since
    reused by another process counts as ended)."""
    import psutil

    machine, _, rest = (identity or "").rpartition("|")
    machine, _, pid = machine.rpartition("|")
    if machine != _machine() or not pid.isdigit():
        return False  # another machine's run, or one from before the tag: not ours to judge
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(rest)) > 0.01
    except psutil.NoSuchProcess:
        return True


def end_dead_runs(client: MlflowClient, experiment_id: str, say: Progress) -> list[str]:
    """Mark KILLED every RUNNING run of the experiment whose process on this machine has
    ended (a training killed mid-way stays RUNNING in MLflow forever), its trials with it."""
    ended = []
    for r in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        tags = r.data.tags
        if "mlflow.parentRunId" in tags or not _process_gone(tags.get(PROCESS_TAG)):
            continue
        children = client.search_runs(
            [experiment_id], f"tags.mlflow.parentRunId = '{r.info.run_id}'"
        )
        for run in [*children, r]:
            if run.info.status == "RUNNING":
                client.set_tag(run.info.run_id, "pe_risk.ended", "its process ended mid-run")
                client.set_terminated(run.info.run_id, "KILLED")
        say(f"  run {r.info.run_id} was left RUNNING by a process that ended: marked KILLED")
        ended.append(r.info.run_id)
    return ended


def train_and_track(
    data: TrainingData,
    config: TrainConfig,
    settings: Settings,
    *,
    gate: Gate | None = None,
    n_boot: int = 200,
    register_model: bool = True,
    progress: Progress | None = None,
) -> Outcome:
    """Fit, evaluate, log and (if it passes the gate) register one model."""
    say = progress or (lambda _m: None)
    gate = gate or Gate()
    check_table(data.report, config)  # a table that cannot be trained on starts no run
    client = client_for(settings)
    name = settings.model_name
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    experiment_id = _experiment_id(client, settings)
    end_dead_runs(client, experiment_id, say)
    with mlflow.start_run(
        experiment_id=experiment_id,
        # Named for what decides the fit (data and seed), not the clock: MLflow keeps the
        # start time, and the same table trained twice reads as the same experiment.
        run_name=f"train-{data.digest[:8]}-seed{config.seed}",
        tags={
            "synthetic": str(data.synthetic).lower(),
            "trained_on": data.trained_on,
            "data_digest": data.digest,
            "pe_risk_version": version("pe-risk"),
            # which process runs it: a later run ends it if that process is gone
            PROCESS_TAG: process_identity(),
        },
    ) as run:
        say(f"MLflow run {run.info.run_id} ({settings.mlflow_tracking_uri})")
        mlflow.log_params(_params(config, gate, n_boot))
        with _without_mlflow_hints():  # logging the dataset infers its schema again
            mlflow.log_input(_dataset(data), context="training")

        def log_trial(number: int, params: dict[str, Any], loss: float) -> None:
            with mlflow.start_run(run_name=f"trial-{number:03d}", nested=True):
                mlflow.log_params(params)
                mlflow.log_metric("valid_logloss", loss)

        info = {
            "trained_on": data.trained_on,
            "synthetic": data.synthetic,
            "data_digest": data.digest,
            "data_source": data.source,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": run.info.run_id,
            "model_name": name,
        }
        if data.column_map is not None:  # the pyfunc reads the export the same way
            info["column_map"] = data.column_map.as_dict()
            mlflow.log_dict(data.column_map.as_dict(), "column_map.json")
        fitted = fit(
            data.report,
            config,
            info=info,
            on_trial=log_trial,
            progress=say,
        )
        timings["fit"] = time.perf_counter() - t0
        for key, head in fitted.heads.items():
            mlflow.log_params({f"{key}_xgb_{k}": v for k, v in head.params.items()})
            mlflow.log_param(f"{key}_n_trees", head.best_iteration)
            mlflow.log_param(f"{key}_trees_capped", head.capped)  # by max_trees, not early stopping
        mlflow.log_dict(_split_sizes(fitted), "evaluation/splits.json")

        say(f"evaluating on the test split ({n_boot} bootstrap samples)")
        evaluation = evaluate_fit(
            fitted, data.report.columns, n_boot=n_boot, seed=config.seed, truth=data.truth
        )
        timings["evaluate"] = time.perf_counter() - t0 - timings["fit"]
        # one run at a time compares with the champion and registers: a second run is
        # compared with the model the first one promoted (issue 20)
        with registry_lock(settings.state_dir / "registry.lock", say):
            mark_incomplete(client, name, say)
            evaluation.champion = _champion_on_test(client, name, data, fitted, say)
            outcome = _judge_and_register(
                client, name, data, fitted, evaluation, gate, run, register_model, say
            )
        outcome.timings = timings
    timings["total"] = time.perf_counter() - t0
    return outcome


def _judge_and_register(
    client: MlflowClient,
    name: str,
    data: TrainingData,
    fitted: Fitted,
    evaluation: Evaluation,
    gate: Gate,
    run: Any,
    register_model: bool,
    say: Progress,
) -> Outcome:
    """Gate, model card and logged model of a run; the new version, champion, if it passes.
    Called under ``registry_lock`` after ``evaluation.champion`` is set."""
    champ = evaluation.champion
    result = gate.check(evaluation)
    mlflow.log_metrics(flat_metrics(evaluation))

    model = fitted.model
    refitted = "recalibration" not in model.info  # a recalibrated model keeps its trees' facts
    model.info.update(
        metrics={k: asdict(e) for k, e in evaluation.metrics.items()},
        baselines={
            k: {"title": v["title"], "auroc": v["metrics"]["auroc"].value}
            for k, v in evaluation.baselines.items()
            if "metrics" in v
        },
        gate={"passed": result.passed, "checks": result.checks},
        training_ranges=_training_ranges(fitted)
        if refitted
        else model.info.get("training_ranges", {}),
        # the table's average risks, which the report draws beside the patient's
        event_rate=_average_risk(fitted),
        rows=len(fitted.x) if refitted else model.info.get("rows"),
        pe_now=_pe_now_info(evaluation) or (None if refitted else model.info.get("pe_now")),
        horizons={
            str(h): {k: asdict(e) for k, e in m.items()} for h, m in evaluation.horizons.items()
        },
    )
    card = model_card(model, fitted, evaluation, result, data=_data_info(data, fitted))
    say("logging plots, model card and model")
    with tempfile.TemporaryDirectory() as tmp:
        _log_artifacts(Path(tmp), fitted, evaluation, result, card, data)
        model_dir = model.save(Path(tmp) / "model")
        with _without_mlflow_hints():
            model_info = _log_model(model_dir, data, model)
    mlflow.set_tag("gate_passed", str(result.passed).lower())
    if not result.passed:  # why, where `pe-risk models --all` and the MLflow UI show it
        mlflow.set_tag("gate_failed", "; ".join(result.failed())[:4000])
    outcome = Outcome(run.info.run_id, model_info.model_uri, result, evaluation, fitted)
    if result.passed and register_model:
        mv = register(
            client,
            name,
            model_info.model_uri,
            run.info.run_id,
            model_info.model_id,
            result,
            tags=_version_tags(data, evaluation),
            description=f"{data.trained_on}; test AUROC {evaluation.metrics['auroc'].text()}",
            compared_with=None if champ is None else str(champ["version"]),
        )
        outcome.version = str(mv.version)
        mlflow.set_tag("registered_version", mv.version)
        say(f"registered {name} version {mv.version}; alias 'champion' now points to it")
    return outcome


def _split_sizes(fitted: Fitted) -> dict[str, Any]:
    return split_counts(fitted.splits, fitted.outcomes) | {"strategy": fitted.splits.strategy}


def _average_risk(fitted: Fitted) -> dict[str, float]:
    """The table's average of each estimate's outcome: the share with PE now among suspected
    rows; the new PE by each horizon (IPCW-weighted: the Aalen–Johansen cumulative incidence)."""
    o = fitted.outcomes
    out = {}
    if PE_NOW in fitted.heads:
        rows = fitted.heads[PE_NOW].task.rows(np.arange(len(fitted.x)))
        out[PE_NOW] = float(o.pe_now[rows].mean())
    rows = np.flatnonzero(o.new_rows)
    for h in o.horizons:
        y, w = o.at(h, rows)
        out[new_pe_column(h)] = float(np.sum(w * y) / len(y))
    return out


def _pe_now_info(evaluation: Evaluation) -> dict[str, Any] | None:
    now = evaluation.pe_now
    if not now:
        return None
    return {
        "rows": now["rows"],
        "events": now["events"],
        "metrics": {k: asdict(e) for k, e in now["metrics"].items()},
        "baselines": {
            k: {"title": v["title"], "auroc": v["metrics"]["auroc"].value}
            for k, v in now["baselines"].items()
        },
        "rule_outs": {
            name: {
                "ruled_out": r["ruled_out"],
                "failures": r["failures"],
                "failure_rate": asdict(r["failure_rate"]),
                "efficiency": asdict(r["efficiency"]),
            }
            for name, r in now["rule_outs"].items()
        },
    }


def _log_model(model_dir: Path, data: TrainingData, model: Any) -> Any:
    """Log the pyfunc (models from code: no pickle) with the artefact folder as its artefact."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts={"model": str(model_dir)},
        code_paths=[str(Path(p).parent) for p in (models.__file__, _features_init())],
        signature=_signature(model),
        input_example=_example(data),
        pip_requirements=[f"{p}=={version(p)}" for p in RUNTIME_PACKAGES],
    )


@contextmanager
def _without_mlflow_hints() -> Iterator[None]:
    """Silence MLflow's schema hints that do not apply here: integer columns that may hold
    missing values (the signature is declared, not inferred) and two equivalent local-file
    dataset source types."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*multiple ways", category=UserWarning)
        yield


def _dataset(data: TrainingData) -> Any:
    """The MLflow dataset: name, digest, source path, schema and profile of the table."""
    with _without_mlflow_hints():
        return mlflow.data.from_pandas(
            data.frame,
            source=data.source,
            targets=OUTCOME if OUTCOME in data.frame.columns else None,
            name=Path(data.source).name,
            digest=data.digest,
        )


def _features_init() -> str:
    import features

    return features.__file__


def _params(config: TrainConfig, gate: Gate, n_boot: int) -> dict[str, Any]:
    out = {k: v for k, v in asdict(config).items() if k != "params"}
    out.update({f"gate_{k}": v for k, v in asdict(gate).items()})
    out["n_bootstrap"] = n_boot
    out["n_features"] = len(MODEL_FEATURE_NAMES)
    return out


def _data_info(data: TrainingData, fitted: Fitted) -> dict[str, Any]:
    label = fitted.outcomes.label()
    return {
        "trained_on": data.trained_on,
        "source": data.source,
        "digest": data.digest,
        "rows": len(label),
        "events": int((label == 1).sum()),
        "pe_now": int((label == 2).sum()),
        "synthetic": data.synthetic,
    }


def _version_tags(data: TrainingData, evaluation: Evaluation) -> dict[str, str]:
    m = evaluation.metrics
    return {
        "trained_on": data.trained_on,
        "synthetic": str(data.synthetic).lower(),
        "data_digest": data.digest,
        "test_auroc": f"{m['auroc'].value:.3f}",
        "test_auroc_ci": f"{m['auroc'].low:.3f}–{m['auroc'].high:.3f}",
        "calibration_slope": f"{m['calibration_slope'].value:.3f}",
        "calibration_intercept": f"{m['calibration_intercept'].value:.3f}",
    }


def _example(data: TrainingData) -> pd.DataFrame:
    """Three rows of the table as a data scientist would pass them (outcome and meta dropped)."""
    ex = (
        data.report.frame(with_outcome=False)
        .head(3)
        .drop(columns=list(TABLE_META), errors="ignore")
    )
    return ex.astype(object).where(ex.notna(), None).drop(columns=["patient_id"], errors="ignore")


def _log_artifacts(
    tmp: Path,
    fitted: Fitted,
    evaluation: Evaluation,
    gate: GateResult,
    card: str,
    data: TrainingData,
    card_name: str = "model_card.md",
) -> None:
    note = plots.SYNTHETIC_NOTE if data.synthetic else None
    figs = tmp / "plots"
    figs.mkdir()
    known = evaluation.w > 0  # the ROC curves: the rows whose status at the horizon is known
    y = evaluation.y[known]
    aurocs = {
        "pe-risk": evaluation.metrics["auroc"].text(),
        **{
            label: evaluation.baselines[key]["metrics"]["auroc"].text()
            for key, label in (("logistic", "logistic"), ("khorana", "Khorana"))
            if "metrics" in evaluation.baselines.get(key, {})
        },
    }
    ranked = {k: v[known] for k, v in evaluation.ranked.items()}
    plots.roc_plot(y, ranked, aurocs, figs / "roc.png", note)
    # calibration: every row, the outcome IPCW-weighted (its expectation is the risk)
    plots.calibration_plot(
        evaluation.w * evaluation.y, evaluation.p, figs / "calibration.png", note
    )
    plots.decision_curve_plot(evaluation.decision_curve, figs / "decision_curve.png", note)
    x = fitted.x[fitted.heads[NEW_PE].task.rows(fitted.splits.test)]
    rows = np.random.default_rng(0).choice(len(x), size=min(2000, len(x)), replace=False)
    _, expl = fitted.model.new_pe.explain(x[rows])
    plots.shap_summary_plot(
        expl.contributions,
        x[rows],
        expl.feature_names,
        figs / "shap_summary.png",
        note,
    )
    mlflow.log_artifacts(str(figs), "plots")

    ev_dir = tmp / "evaluation"
    ev_dir.mkdir()
    evaluation.subgroups.to_csv(ev_dir / "subgroups.csv", index=False)
    evaluation.decision_curve.to_csv(ev_dir / "decision_curve.csv", index=False)
    if not evaluation.cif_calibration.empty:
        evaluation.cif_calibration.to_csv(ev_dir / "cumulative_incidence_by_group.csv", index=False)
    (ev_dir / "metrics.json").write_text(
        json.dumps(
            {
                "pe_risk": {k: asdict(e) for k, e in evaluation.metrics.items()},
                "baselines": {
                    k: {
                        **{kk: vv for kk, vv in v.items() if kk != "metrics"},
                        "metrics": {m: asdict(e) for m, e in v.get("metrics", {}).items()},
                    }
                    for k, v in evaluation.baselines.items()
                },
                "isotonic_not_served": evaluation.isotonic,
                "new_pe_by_horizon": {
                    str(h): {k: asdict(e) for k, e in m.items()}
                    for h, m in evaluation.horizons.items()
                },
                "pe_now": _pe_now_info(evaluation),
                "reference": evaluation.reference,
                "champion": evaluation.champion,
            },
            indent=2,
            default=asdict,  # Estimates (the paired AUROC difference) beside plain numbers
        )
    )
    (ev_dir / "gate.json").write_text(
        json.dumps(
            {"passed": gate.passed, "checks": gate.checks, "thresholds": gate.thresholds}, indent=2
        )
    )
    mlflow.log_artifacts(str(ev_dir), "evaluation")
    mlflow.log_dict({"features": spec_table()}, "feature_spec.json")
    mlflow.log_text(card, card_name)


def ensure_champion(settings: Settings, rows: int, say: Progress) -> str | None:
    """The champion's version; when the registry has none, one trained on a synthetic cohort
    of ``rows`` (seed 7) first (what ``pe-risk serve`` needs). None if the gate refused it."""
    from training.cohort import cohort_file

    client = client_for(settings)
    champ = champion_version(client, settings.model_name)
    if champ is None:
        say(f"no champion in {settings.mlflow_tracking_uri}: training on {rows} synthetic rows")
        data = load_training_data(cohort_file(settings, rows, TrainConfig().seed, say))
        train_and_track(data, TrainConfig(), settings, progress=say)
        champ = champion_version(client, settings.model_name)
    return None if champ is None else str(champ.version)


# ---------------------------------------------------------------- another site or period


@dataclass
class ExternalOutcome:
    """What ``evaluate_and_track`` gives: the evaluation run and what it found."""

    run_id: str
    evaluation: Evaluation
    gate: GateResult
    fitted: Fitted
    found: Found


def _external_tags(found: Found, data: TrainingData, kind: str) -> dict[str, str]:
    return {
        "pe_risk.kind": kind,
        "pe_risk.model": found.ref,
        "synthetic": str(data.synthetic).lower(),
        "data_digest": data.digest,
        "pe_risk_version": version("pe-risk"),
        PROCESS_TAG: process_identity(),
    }


def evaluate_and_track(
    found: Found,
    data: TrainingData,
    settings: Settings,
    *,
    gate: Gate | None = None,
    n_boot: int = 200,
    seed: int = 7,
    progress: Progress | None = None,
) -> ExternalOutcome:
    """A registered model evaluated on another table (``training.external``), logged as an
    MLflow evaluation run: dataset (context "evaluation"), metrics, plots and the evaluation
    report. The registry is not touched. The evaluation is computed before the run starts,
    so a table that cannot be evaluated leaves no run behind."""
    say = progress or (lambda _m: None)
    gate = replace(gate or Gate(), champion_tolerance=None)
    say(f"evaluating {found.ref} on every row of {data.trained_on} ({n_boot} bootstrap samples)")
    fitted, evaluation = evaluate_registered(
        found.model, data.report, n_boot=n_boot, seed=seed, truth=data.truth
    )
    result = gate.check(evaluation)
    client = client_for(settings)
    experiment_id = _experiment_id(client, settings)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"evaluate-v{found.version.version}-{data.digest[:8]}",
        tags={**_external_tags(found, data, "evaluation"), "evaluated_on": data.trained_on},
    ) as run:
        say(f"MLflow evaluation run {run.info.run_id} ({settings.mlflow_tracking_uri})")
        mlflow.log_params(
            {"model": found.ref, "n_bootstrap": n_boot, "seed": seed}
            | {f"gate_{k}": v for k, v in asdict(gate).items()}
        )
        with _without_mlflow_hints():
            mlflow.log_input(_dataset(data), context="evaluation")
        mlflow.log_metrics(flat_metrics(evaluation))
        mlflow.set_tag("model_gate_on_this_table", "passes" if result.passed else "fails")
        report = evaluation_report(
            found.model,
            evaluation,
            result,
            model_ref=found.ref,
            data=_data_info(data, fitted),
        )
        with tempfile.TemporaryDirectory() as tmp:
            _log_artifacts(
                Path(tmp), fitted, evaluation, result, report, data, "evaluation_report.md"
            )
    return ExternalOutcome(run.info.run_id, evaluation, result, fitted, found)


def recalibrate_and_track(
    found: Found,
    data: TrainingData,
    settings: Settings,
    *,
    method: str,
    test_size: float = 0.3,
    gate: Gate | None = None,
    n_boot: int = 200,
    seed: int = 7,
    register_model: bool = True,
    progress: Progress | None = None,
) -> Outcome:
    """The registered model's calibration refitted on part of another table and tested on
    the rest (``training.external``), logged as a training run and, when it passes the gate
    (the champion compared on the same test rows), registered as the new champion. The
    boosters are the registered version's. Everything that can fail on the table is checked
    before the run starts."""
    say = progress or (lambda _m: None)
    gate = gate or Gate()
    if method not in METHODS:
        raise ValueError(f"--method {method!r}: choose {' or '.join(METHODS)}")
    report = data.report
    outcomes = outcomes_of(report)
    fit_rows, test = split_for_recalibration(outcomes, test_size, seed)
    strategy = (
        f"recalibration: {len(fit_rows)} rows refit the calibration map, {len(test)} other rows "
        f"test it (stratified, seed {seed})"
    )
    base = as_fitted(found.model, report, outcomes, test, strategy, fit_rows)
    model, kept = recalibrated(base, method, data.trained_on)
    base_info = found.model.info
    synthetic = bool(base_info.get("synthetic")) or data.synthetic  # the trees' data counts
    trained_on = f"{base_info.get('trained_on')}; recalibrated ({method}) on {data.trained_on}"
    fitted = as_fitted(model, report, outcomes, test, strategy, fit_rows)
    shift = calibration_shift(base, fitted)
    for key, pair in shift.items():
        b, a = pair["before"], pair["after"]
        say(
            f"  {key}: calibration intercept {b['calibration_intercept']:+.2f} → "
            f"{a['calibration_intercept']:+.2f}, slope {b['calibration_slope']:.2f} → "
            f"{a['calibration_slope']:.2f} on the {len(test)} held-out rows"
        )
    for key in kept:
        say(f"  {key}: too few events in the table to recalibrate; kept as it was")
    tracked = replace(data, synthetic=synthetic, trained_on=trained_on)
    if tracked.column_map is None and base_info.get("column_map"):
        tracked.column_map = ColumnMap.from_dict(base_info["column_map"])
    recalibration = {
        "from_version": str(found.version.version),
        "from_run_id": found.version.run_id,
        "from_trained_on": base_info.get("trained_on"),
        "method": method,
        "method_text": METHODS[method],
        "table": data.trained_on,
        "table_digest": data.digest,
        "fitting_rows": len(fit_rows),
        "test_rows": len(test),
        "seed": seed,
        "heads": shift,
        "kept": kept,
    }
    say(f"evaluating on the {len(test)} held-out rows ({n_boot} bootstrap samples)")
    evaluation = evaluate_fit(fitted, report.columns, n_boot=n_boot, seed=seed, truth=data.truth)
    client = client_for(settings)
    name = settings.model_name
    experiment_id = _experiment_id(client, settings)
    end_dead_runs(client, experiment_id, say)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"recalibrate-v{found.version.version}-{data.digest[:8]}-{method}",
        tags={
            **_external_tags(found, tracked, "recalibration"),
            "trained_on": trained_on,
            "recalibrated_from": str(found.version.version),
        },
    ) as run:
        say(f"MLflow run {run.info.run_id} ({settings.mlflow_tracking_uri})")
        mlflow.log_params(
            {"model": found.ref, "method": method, "test_size": test_size, "seed": seed}
            | {"n_bootstrap": n_boot}
            | {f"gate_{k}": v for k, v in asdict(gate).items()}
        )
        with _without_mlflow_hints():
            mlflow.log_input(_dataset(data), context="recalibration")
        mlflow.log_dict(recalibration, "recalibration.json")
        model.info.update(
            trained_on=trained_on,
            synthetic=synthetic,
            recalibration=recalibration,
            run_id=run.info.run_id,
            trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if tracked.column_map is not None:
            model.info["column_map"] = tracked.column_map.as_dict()
        with registry_lock(settings.state_dir / "registry.lock", say):
            mark_incomplete(client, name, say)
            evaluation.champion = _champion_on_test(client, name, tracked, fitted, say)
            outcome = _judge_and_register(
                client, name, tracked, fitted, evaluation, gate, run, register_model, say
            )
    return outcome
