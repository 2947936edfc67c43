"""The model commands, ``pe-risk train``, ``models``, ``promote`` and ``import-model``: the
model's life in MLflow and its hand-over to the BentoML store.

Exit status of ``train``: 0 when the model passed the gate and is the champion, 3 when it
was trained and logged but the gate refused it (or ``--no-register``), 1 when the table
cannot be trained on (nothing is registered), 2 when the file cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

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
    from features.table import issue_lines, write_report
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
        typer.echo(f"error: {exc}", err=True)
        if exc.issues:
            typer.echo("\n".join(issue_lines(exc.issues)), err=True)
            path = report or settings.log_dir / "training-row-report.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as fh:
                write_report(exc.issues, fh)
            typer.echo(f"the full row report is in {path}", err=True)
        typer.echo(
            "nothing was registered (the MLflow run, if started, is marked FAILED)", err=True
        )
        raise typer.Exit(1) from None

    ev = out.evaluation
    typer.echo(f"run {out.run_id}")
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
    typer.echo("quality gate: " + ("passed" if out.gate.passed else "FAILED"))
    typer.echo("\n".join(out.gate.lines()))
    if out.version:
        typer.echo(
            f"{settings.model_name} version {out.version} is now 'champion' "
            f"(models:/{settings.model_name}@champion)"
        )
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
    """The model commands: train, models, promote, import-model, ui."""
    app.command(short_help="Train, evaluate, log to MLflow; promote if it passes.")(train)
    app.command("models", short_help="List the registered versions and their gate.")(models_list)
    app.command(short_help="Point an alias (default: champion) at a version.")(promote)
    app.command("import-model", short_help="Copy a registered model into BentoML's store.")(
        import_model
    )
    app.command(short_help="Open MLflow's UI on pe-risk's own store.")(ui)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(typer.run(train))
