"""The serving commands of ``pe-risk``: ``serve``, ``report`` and ``fhir-map``.

``serve`` needs a champion in the registry. Making one is training's work and serving
never imports training, so the command line's composer (``training.cli``) hands
``register`` the plain function that returns the champion's version, training one on the
synthetic cohort when there is none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from models.console import Progress, progress, read_record
from models.settings import Settings

#: the champion's version, trained on a synthetic cohort of ``rows`` first if there is none
EnsureChampion = Callable[[Settings, int, Progress], str | None]


def report(
    record: Annotated[Path, typer.Argument(help="A JSON patient record ('-' for standard input).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the HTML page.")] = Path(
        "report.html"
    ),
    model_dir: Annotated[
        Path | None,
        typer.Option(help="A model folder (booster.ubj + model.json); default: the served model."),
    ] = None,
) -> None:
    """Write the clinician's one-page report for one record, without a server (as POST /report)."""
    from models.artifact import PERiskModel
    from models.settings import get_settings
    from models.store import load_imported
    from serving.answer.report import report_html

    parsed = read_record(record)
    if model_dir is not None:
        model = PERiskModel.load(model_dir)
        version = str(model.info.get("run_id") or model_dir.name)
    else:
        try:
            model, version = load_imported(get_settings())
        except LookupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    out.write_text(report_html(model, version, parsed), encoding="utf-8")
    typer.echo(f"wrote {out} (model version {version})")


def fhir_map(
    bundle: Annotated[
        Path, typer.Argument(help="A FHIR R4 Bundle, JSON ('-' for standard input).")
    ],
    index_date: Annotated[
        str | None, typer.Option(help="The assessment date, YYYY-MM-DD (default today).")
    ] = None,
    extra_map: Annotated[
        Path | None,
        typer.Option(
            "--map", help="Extra mapping rows (CSV, serving/interop/fhir_map.csv columns)."
        ),
    ] = None,
) -> None:
    """Show the record(s) a FHIR bundle maps to, and every issue, as POST /fhir/risk-assessment
    sees them (exit 1 if a patient's record is incomplete, 2 if the bundle or table is bad)."""
    import json
    from datetime import date

    from serving.interop.fhir import BundleError, validate_bundle
    from serving.interop.fhir_answer import operation_outcome, validate_records
    from serving.interop.fhir_map import MapTableError, load_table
    from serving.interop.fhir_record import map_bundle

    text = sys.stdin.read() if str(bundle) == "-" else bundle.read_text(encoding="utf-8")
    try:
        table = load_table(extra_map.resolve() if extra_map else None)
        doc = json.loads(text)
        validate_bundle(doc)
        day = date.fromisoformat(index_date) if index_date else date.today()
    except (MapTableError, json.JSONDecodeError, ValueError) as exc:
        issues = exc.issues if isinstance(exc, BundleError) else None
        for line in [i.diagnostics for i in issues] if issues else [str(exc)]:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    patients, loose = map_bundle(doc, table, day)
    validate_records(patients)  # the record's own problems join the issues
    issues = loose + [i for p in patients for i in p.issues]
    out = {
        "index_date": day.isoformat(),
        "records": [{"patient": p.patient.ref, "ok": p.ok, "record": p.record} for p in patients],
        "outcome": operation_outcome(issues),
    }
    typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    if not patients or not all(p.ok for p in patients):
        raise typer.Exit(1)


def register(app: typer.Typer, ensure_champion: EnsureChampion) -> None:
    """The serving commands; ``ensure_champion`` comes from training (see the module)."""

    def serve(
        port: Annotated[int, typer.Option(help="Port to listen on.", envvar="PORT")] = 3000,
        host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
        rows: Annotated[
            int, typer.Option(help="Synthetic rows to train on when no champion exists.")
        ] = 50_000,
        from_store: Annotated[
            bool,
            typer.Option(
                "--from-store",
                help="Serve the model already in the BentoML store; do not read the registry.",
            ),
        ] = False,
    ) -> None:
        """Serve the champion over HTTP: train on the synthetic cohort if there is none,
        import it into the BentoML store, serve. --from-store serves the model already
        imported, without the MLflow registry (for example while its store is repaired)."""
        import os

        from models.settings import get_settings
        from models.store import import_model, imported_version

        settings = get_settings()
        say = progress()
        if from_store:
            version = imported_version(settings)
            if version is None:
                typer.echo(
                    f"error: no model in the BentoML store ({settings.bentoml_home}); "
                    "`pe-risk import-model` copies the champion there",
                    err=True,
                )
                raise typer.Exit(1)
        else:
            try:
                version = ensure_champion(settings, rows, say)
            except RuntimeError as exc:  # the registry's store is broken: say so, stop
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
            if version is None:
                typer.echo(
                    "error: training did not produce a champion; see the output above", err=True
                )
                raise typer.Exit(1)
            if imported_version(settings) != version:
                tag, version = import_model(settings)
                say(f"imported champion version {version} into the BentoML store ({tag})")
        env = {
            # report links and card links are built from the public address, never from a
            # request's Host header: by default the address this command serves on
            "PE_RISK_PUBLIC_URL": f"http://{host}:{port}",
            **os.environ,
            "BENTOML_HOME": str(settings.bentoml_home),
            "PE_RISK_STATE_DIR": str(settings.state_dir),
        }
        bentoml = str(Path(sys.executable).with_name("bentoml"))
        say(f"serving {settings.model_name} version {version} on http://{host}:{port}")
        os.execve(
            bentoml,
            [bentoml, "serve", "serving.service:PERisk", "--port", str(port), "--host", host],
            env,
        )

    app.command(short_help="Write the clinician's one-page report for one record.")(report)
    app.command("fhir-map", short_help="Show the records a FHIR bundle maps to, and issues.")(
        fhir_map
    )
    app.command(short_help="Serve the champion over HTTP.")(serve)
