"""The model commands, ``pe-risk train``, ``evaluate``, ``recalibrate``, ``models``,
``promote`` and ``import-model``: the model's life in MLflow and its hand-over to the
BentoML store.

Exit status of ``train``: 0 when the model passed the gate and is the champion, 3 when it
was trained and logged but the gate refused it (or ``--no-register``), 1 when the table
cannot be trained on (nothing is registered), 2 when the file cannot be read.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from models.console import progress
from training.data_cli import MapOpt

EXIT_GATE_FAILED = 3


def train(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Training table (.csv or .parquet) in the data contract, with its outcome: "
            "pe_days, death_days and followup_days, or pe_event.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option(
            help="Generate a synthetic cohort of this many rows and train on it.", min=1000
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for the cohort, splits, booster and bootstrap.")
    ] = 7,
    tune: Annotated[
        int, typer.Option(help="Optuna trials (0: the default hyper-parameters).", min=0)
    ] = 0,
    holdout_site: Annotated[
        str | None,
        typer.Option(metavar="<site>", help="Test on this site only (needs a 'site' column)."),
    ] = None,
    holdout_after: Annotated[
        str | None,
        typer.Option(
            metavar="<YYYY-MM-DD>", help="Test on the rows with index_date on or after this date."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap samples for the 95 % intervals.", min=20)
    ] = 200,
    min_slope: Annotated[float, typer.Option(help="Gate: lowest calibration slope.")] = 0.8,
    max_slope: Annotated[float, typer.Option(help="Gate: highest calibration slope.")] = 1.2,
    max_intercept: Annotated[
        float, typer.Option(help="Gate: largest |calibration intercept|.")
    ] = 0.1,
    missing_max_intercept: Annotated[
        float,
        typer.Option(
            help="Gate: largest |calibration intercept| with 30 % of optional fields removed."
        ),
    ] = 0.1,
    missing_slope: Annotated[
        tuple[float, float],
        typer.Option(help="Gate: calibration slope range with 30 % of optional fields removed."),
    ] = (0.8, 1.2),
    masked_copies: Annotated[
        int,
        typer.Option(
            help="Masked copies of each training row that teach the model what unknown means.",
            min=0,
        ),
    ] = 1,
    champion_tolerance: Annotated[
        float,
        typer.Option(
            help="Gate: how much lower than the champion's AUROC (same rows) is allowed; negative disables."
        ),
    ] = 0.01,
    trained_on: Annotated[
        str | None,
        typer.Option(help="How the model card and API describe the data (default: from the file)."),
    ] = None,
    register: Annotated[
        bool,
        typer.Option("--register/--no-register", help="Register and promote when the gate passes."),
    ] = True,
    report: Annotated[
        Path | None,
        typer.Option(help="Where to write the row report when the table has bad rows (CSV)."),
    ] = None,
    column_map: MapOpt = None,
) -> None:
    """Train, evaluate against the clinical scores, log to MLflow, and promote if it passes the gate."""
    from models.settings import get_settings
    from training import cohort as synth
    from training.registry import ChampionMovedError, Gate
    from training.track import StoreError, load_training_data, train_and_track
    from training.train import TrainConfig, TrainingDataError

    say = progress()
    settings = get_settings()
    if (data is None) == (synthetic is None):
        typer.echo("error: give exactly one of --data PATH or --synthetic N", err=True)
        raise typer.Exit(2)
    if synthetic is not None:
        data = synth.cohort_file(settings, synthetic, seed, say)
    assert data is not None
    say(f"reading and validating {data}" + (f" through {column_map}" if column_map else ""))
    try:
        table = load_training_data(data, trained_on, column_map)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: cannot read {data}: {exc}", err=True)
        raise typer.Exit(2) from None
    config = TrainConfig(
        seed=seed,
        tune_trials=tune,
        holdout_site=holdout_site,
        holdout_after=holdout_after,
        masked_copies=masked_copies,
    )
    gate = Gate(
        min_slope=min_slope,
        max_slope=max_slope,
        max_abs_intercept=max_intercept,
        missing_min_slope=missing_slope[0],
        missing_max_slope=missing_slope[1],
        missing_max_abs_intercept=missing_max_intercept,
        champion_tolerance=None if champion_tolerance < 0 else champion_tolerance,
    )
    try:
        out = train_and_track(
            table,
            config,
            settings,
            gate=gate,
            n_boot=bootstrap,
            register_model=register,
            progress=say,
        )
    except (StoreError, ChampionMovedError) as exc:  # the registry is left as it is
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except TrainingDataError as exc:
        _table_error(exc, report or settings.log_dir / "training-row-report.csv")
        typer.echo(
            "nothing was registered (the MLflow run, if started, is marked FAILED)", err=True
        )
        raise typer.Exit(1) from None

    typer.echo(f"run {out.run_id}")
    _print_evaluation(out.evaluation)
    _verdict(out, settings.model_name, register)


def _table_error(exc: Exception, report: Path) -> None:
    """Say why a table cannot be used, with the validator's row report written to ``report``."""
    from features.table import issue_lines, write_report

    typer.echo(f"error: {exc}", err=True)
    issues = getattr(exc, "issues", None)
    if issues:
        typer.echo("\n".join(issue_lines(issues)), err=True)
        report.parent.mkdir(parents=True, exist_ok=True)
        with report.open("w", newline="", encoding="utf-8") as fh:
            write_report(issues, fh)
        typer.echo(f"the full row report is in {report}", err=True)


def _print_evaluation(ev: Any) -> None:
    """The evaluation's headline figures (``training.compare.Evaluation``), as train and
    evaluate print them."""
    from training.compare import logistic_note

    for h, m in ev.horizons.items():
        typer.echo(
            f"  new PE by {h} days: time-dependent AUROC {m['auroc'].text()} (Khorana "
            f"{m['khorana_auroc'].text()}, ONKOTEV {m['onkotev_auroc'].text()}), calibration "
            f"slope {m['calibration_slope'].text(2)}, intercept "
            f"{m['calibration_intercept'].text(2)}, Brier {m['brier'].text(4)}"
        )
    typer.echo(f"  ICI at {max(ev.horizons)} days: {ev.metrics['ici'].text(4)}")
    if ev.pe_now:
        m = ev.pe_now["metrics"]
        scores = ", ".join(
            f"{b['title']} {b['metrics']['auroc'].text()}" for b in ev.pe_now["baselines"].values()
        )
        typer.echo(
            f"  PE now (suspected, {ev.pe_now['rows']} rows): AUROC {m['auroc'].text()} "
            f"({scores}), calibration slope {m['calibration_slope'].text(2)}"
        )
    for key, val in ev.reference.items():
        typer.echo(f"  {key.replace('_', ' ')} (synthetic truth, same rows): {val:.3f}")
    if note := logistic_note(ev.baselines.get("logistic", {})):
        typer.echo(f"  note: {note}")


class Method(StrEnum):
    """``pe-risk recalibrate --method`` (``training.external.METHODS``)."""

    intercept = "intercept"
    slope = "slope"


ModelRef = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="The registered model: pe-risk@champion (default), pe-risk/3, models:/pe-risk/3 or a "
        "version number.",
        show_default=False,
    ),
]
Table = Annotated[
    Path,
    typer.Option(
        help="The other site's or period's table (.csv or .parquet) with its outcome.",
        exists=True,
        dir_okay=False,
    ),
]
Bootstrap = Annotated[int, typer.Option(help="Bootstrap samples for the 95 % intervals.", min=20)]
Seed = Annotated[int, typer.Option(help="Seed of the split and the bootstrap.")]
MinSlope = Annotated[float, typer.Option(help="Gate: lowest calibration slope.")]
MaxSlope = Annotated[float, typer.Option(help="Gate: highest calibration slope.")]
MaxIntercept = Annotated[float, typer.Option(help="Gate: largest |calibration intercept|.")]


def _resolve_and_read(
    ref: str | None, data: Path, column_map: Path | None, say: Any
) -> tuple[Any, Any]:
    """The registered model and the table, read through ``--map`` or, without it, through
    the column map the model was trained with (exit 1 for a bad reference, 2 for a file
    that cannot be read)."""
    from features.mapping import ColumnMap
    from models.settings import get_settings
    from training.external import ModelRefError, resolve
    from training.track import StoreError, client_for, load_training_data

    settings = get_settings()
    try:
        found = resolve(client_for(settings), settings.model_name, ref or "champion")
    except (ModelRefError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    cmap: Path | ColumnMap | None = column_map
    own = found.model.info.get("column_map")
    if column_map is None and own:
        cmap = ColumnMap.from_dict(own, f"{found.ref}'s column map")
        say(f"reading {data} through {found.ref}'s own column map (--map to give another)")
    else:
        say(f"reading and validating {data}" + (f" through {column_map}" if column_map else ""))
    try:
        return found, load_training_data(data, None, cmap)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: cannot read {data}: {exc}", err=True)
        raise typer.Exit(2) from None


def evaluate(
    data: Table,
    model: ModelRef = None,
    column_map: MapOpt = None,
    bootstrap: Bootstrap = 200,
    seed: Seed = 7,
    min_slope: MinSlope = 0.8,
    max_slope: MaxSlope = 1.2,
    max_intercept: MaxIntercept = 0.1,
) -> None:
    """Evaluate a registered model on another site's or period's table, unchanged.

    The evaluation training runs on its test split (both questions, calibration with
    intervals, decision curve, subgroups, the clinical scores on the same rows), on every
    row, logged to MLflow as an evaluation run. The registry is not touched. Exit 0 when
    evaluated (whether or not the model's gate holds on this table), 1 when it cannot be.
    """
    from models.settings import get_settings
    from training.registry import Gate
    from training.track import evaluate_and_track
    from training.train import TrainingDataError

    settings, say = get_settings(), progress()
    found, table = _resolve_and_read(model, data, column_map, say)
    gate = Gate(min_slope=min_slope, max_slope=max_slope, max_abs_intercept=max_intercept)
    try:
        out = evaluate_and_track(
            found, table, settings, gate=gate, n_boot=bootstrap, seed=seed, progress=say
        )
    except TrainingDataError as exc:
        _table_error(exc, settings.log_dir / "evaluation-row-report.csv")
        typer.echo("nothing was logged; the registry is unchanged", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{found.ref} on {table.trained_on}: evaluation run {out.run_id}")
    _print_evaluation(out.evaluation)
    typer.echo(
        "the model's quality gate on this table: " + ("holds" if out.gate.passed else "FAILS")
    )
    typer.echo("\n".join(out.gate.lines()))
    if any("calibration" in c["check"] and not c["passed"] for c in out.gate.checks):
        again = f" --map {column_map}" if column_map else ""
        typer.echo(
            "its calibration does not hold here; `pe-risk recalibrate --model "
            f"{found.ref} --data {data}{again}` refits it on part of this table, tests it on "
            "the rest and registers it through the gate (--method slope refits the slope too)"
        )
    typer.echo("the registry is unchanged")


def recalibrate(
    data: Table,
    model: ModelRef = None,
    column_map: MapOpt = None,
    method: Annotated[
        Method,
        typer.Option(
            help="intercept: one intercept per horizon (calibration in the large); slope: "
            "the intercepts and a common slope.",
        ),
    ] = Method.intercept,
    test_size: Annotated[
        float,
        typer.Option(help="Share of the table held out to test the result.", min=0.1, max=0.9),
    ] = 0.3,
    bootstrap: Bootstrap = 200,
    seed: Seed = 7,
    min_slope: MinSlope = 0.8,
    max_slope: MaxSlope = 1.2,
    max_intercept: MaxIntercept = 0.1,
    champion_tolerance: Annotated[
        float,
        typer.Option(
            help="Gate: how much lower than the champion's AUROC (same rows) is allowed; "
            "negative disables."
        ),
    ] = 0.01,
    register: Annotated[
        bool,
        typer.Option("--register/--no-register", help="Register and promote when the gate passes."),
    ] = True,
) -> None:
    """Recalibrate a registered model on local data: a new version through the gate.

    The trees are kept; the calibration map is refitted on part of the table and tested on
    the rest. Exit 0 when the new version is the champion, 3 when the gate refused it (or
    --no-register), 1 when the table cannot be used, 2 when it cannot be read.
    """
    from models.settings import get_settings
    from training.registry import ChampionMovedError, Gate
    from training.track import StoreError, recalibrate_and_track
    from training.train import TrainingDataError

    settings, say = get_settings(), progress()
    found, table = _resolve_and_read(model, data, column_map, say)
    gate = Gate(
        min_slope=min_slope,
        max_slope=max_slope,
        max_abs_intercept=max_intercept,
        champion_tolerance=None if champion_tolerance < 0 else champion_tolerance,
    )
    try:
        out = recalibrate_and_track(
            found,
            table,
            settings,
            method=method.value,
            test_size=test_size,
            gate=gate,
            n_boot=bootstrap,
            seed=seed,
            register_model=register,
            progress=say,
        )
    except (StoreError, ChampionMovedError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except TrainingDataError as exc:
        _table_error(exc, settings.log_dir / "recalibration-row-report.csv")
        typer.echo("nothing was logged or registered", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"run {out.run_id}: {found.ref} recalibrated ({method.value}) on {table.trained_on}")
    _print_evaluation(out.evaluation)
    _verdict(out, settings.model_name, register)


def _verdict(out: Any, name: str, register: bool) -> None:
    """The gate's lines and the registry's outcome; exit 3 when nothing was registered."""
    typer.echo("quality gate: " + ("passed" if out.gate.passed else "FAILED"))
    typer.echo("\n".join(out.gate.lines()))
    if out.version:
        typer.echo(f"{name} version {out.version} is now 'champion' (models:/{name}@champion)")
        return
    why = "the gate refused it" if not out.gate.passed else "--no-register"
    typer.echo(
        f"not registered ({why}); the registry is unchanged. The model is logged as "
        f"{out.model_uri}",
        err=True,
    )
    raise typer.Exit(EXIT_GATE_FAILED)


def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Also list the runs whose model the gate refused, and why."),
    ] = False,
) -> None:
    """List the registered versions of the model with their aliases, metrics and gate."""
    import json

    from models.settings import get_settings
    from training.registry import refused_runs, versions
    from training.track import EXPERIMENT, client_for

    settings = get_settings()
    client = client_for(settings)
    rows = versions(client, settings.model_name)
    refused: list[dict] = []
    if show_all and (exp := client.get_experiment_by_name(EXPERIMENT)) is not None:
        refused = refused_runs(client, exp.experiment_id)
    if as_json:
        typer.echo(
            json.dumps({"versions": rows, "refused_runs": refused} if show_all else rows, indent=2)
        )
        return
    if not rows and not refused:
        typer.echo(
            f"no registered versions of {settings.model_name!r} at {settings.mlflow_tracking_uri}; "
            "run `pe-risk train`"
        )
        return
    width = max([7, *(len(r["aliases"]) for r in rows)])

    def num(v: float | None, f: str = ".3f") -> str:
        return "" if v is None else format(v, f)

    typer.echo(
        f"{'ver':>4} {'aliases':<{width}} {'created':<16} {'AUROC':>6} {'slope':>6} "
        f"{'icpt':>7} {'gate':<10} trained on"
    )
    for r in rows:
        typer.echo(
            f"{r['version']:>4} {r['aliases']:<{width}} {r['created']:<16} {num(r['auroc']):>6} "
            f"{num(r['slope']):>6} {num(r['intercept']):>7} {r['gate']:<10} {r['trained_on']}"
        )
    for r in refused:
        typer.echo(
            f"{'-':>4} {'':<{width}} {r['created']:<16} {num(r['auroc']):>6} "
            f"{num(r['slope']):>6} {num(r['intercept']):>7} {'refused':<10} {r['trained_on']}"
        )
        typer.echo(f"{'':>5}run {r['run_id']}: {r['refused_because'] or 'the gate refused it'}")
    if not show_all:
        typer.echo("(`pe-risk models --all` also lists the runs the gate refused, and why)")


def promote(
    version: Annotated[str, typer.Argument(help="The model version to point the alias at.")],
    alias: Annotated[str, typer.Option(help="The alias to move.")] = "champion",
    force: Annotated[
        bool, typer.Option("--force", help="Promote a version that failed its gate.")
    ] = False,
) -> None:
    """Point an alias (default: champion) at a registered version by hand."""
    from mlflow.exceptions import MlflowException

    from models.settings import get_settings
    from training.registry import promote as do_promote
    from training.registry import registry_lock
    from training.track import client_for

    settings = get_settings()
    try:
        with registry_lock(settings.state_dir / "registry.lock", lambda m: typer.echo(m, err=True)):
            mv = do_promote(
                client_for(settings), settings.model_name, version, alias=alias, force=force
            )
    except (ValueError, MlflowException) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{settings.model_name}@{alias} → version {mv.version}")


def import_model(
    alias: Annotated[str, typer.Option(help="The registry alias to import.")] = "champion",
) -> None:
    """Copy a registered model (default: the champion) from MLflow into the BentoML store."""
    from mlflow.exceptions import MlflowException

    from models.settings import get_settings
    from models.store import import_model as do_import

    settings = get_settings()
    try:
        tag, version = do_import(settings, alias)
    except MlflowException as exc:
        typer.echo(
            f"error: no {settings.model_name}@{alias} in {settings.mlflow_tracking_uri} "
            f"({exc}); run `pe-risk train` first",
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo(f"imported {settings.model_name} version {version} as BentoML model {tag}")


def ui(
    port: Annotated[int, typer.Option(help="The port of the MLflow UI.")] = 5000,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the command instead of running it.")
    ] = False,
) -> None:
    """Open MLflow's UI on pe-risk's own store (runs, models, evaluations) at 127.0.0.1.

    Plain `mlflow ui` opens MLflow's default store (./mlflow.db), an empty one, and
    leaves that file behind.
    """
    import shlex
    import subprocess

    from models.settings import get_settings

    settings = get_settings()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if settings.mlflow_tracking_uri.startswith("sqlite:"):
        command += ["--default-artifact-root", settings.mlflow_artifact_root.as_uri()]
    if print_only:
        typer.echo(shlex.join(command))
        return
    typer.echo(f"MLflow UI for {settings.mlflow_tracking_uri} on http://127.0.0.1:{port}")
    raise typer.Exit(subprocess.call(command))


def register(app: typer.Typer) -> None:
    """The model commands: train, evaluate, recalibrate, models, promote, import-model, ui."""
    app.command(short_help="Train, evaluate, log to MLflow; promote if it passes.")(train)
    app.command(short_help="Evaluate a registered model on another site's table.")(evaluate)
    app.command(short_help="Refit a registered model's calibration on local data.")(recalibrate)
    app.command("models", short_help="List the registered versions and their gate.")(models_list)
    app.command(short_help="Point an alias (default: champion) at a version.")(promote)
    app.command("import-model", short_help="Copy a registered model into BentoML's store.")(
        import_model
    )
    app.command(short_help="Open MLflow's UI on pe-risk's own store.")(ui)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(typer.run(train))
