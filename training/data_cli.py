"""The data commands of ``pe-risk``: ``validate``, ``features``, ``scores``, ``spec`` and
``cohort``: a hospital's table checked against the data contract, the predictors and
scores of a record, the feature specification, and the synthetic cohort."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from models.console import read_record

#: a column map (features.mapping): the export's own names, codes and units → the contract
MapOpt = Annotated[
    Path | None,
    typer.Option(
        "--map",
        help="A column map (YAML or JSON): your column names, values and units → the data "
        "contract (see the README).",
        exists=True,
        dir_okay=False,
    ),
]

PathArg = Annotated[
    Path,
    typer.Argument(
        help="A CSV or Parquet table in the data contract.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]


def validate(
    path: PathArg,
    drop_invalid: Annotated[
        bool,
        typer.Option(
            "--drop-invalid",
            help="Keep the valid rows instead of failing: write them to --out "
            "and exit 0 if any remain.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where --drop-invalid writes the valid rows (.csv or .parquet), in canonical units."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Also write every issue as CSV (row, field, value, rule, message) to this file."
        ),
    ] = None,
    require_outcome: Annotated[
        bool,
        typer.Option(
            "--require-outcome",
            help="Require an outcome: pe_event, or pe_days, death_days and followup_days "
            "(training tables).",
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option(help="Print at most this many issues (all go to --report).")
    ] = 50,
    column_map: MapOpt = None,
) -> None:
    """Check every row of a table against the data contract and report every bad row.

    Exit status: 0 when every row is valid (or, with --drop-invalid, when valid rows
    remain), 1 when any row is bad, 2 when the file cannot be read.
    """
    from features.mapping import read_mapped
    from features.table import validate_table, write_report

    try:
        df = read_mapped(path, column_map)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
        raise typer.Exit(2) from None
    result = validate_table(df, require_outcome=require_outcome)
    typer.echo(
        f"{path}: {result.n_rows} rows, {result.n_rows - result.n_bad} valid, "
        f"{result.n_bad} invalid, {len(result.issues)} issues "
        "(row 1 = first data row)"
    )
    for notice in result.notices:
        typer.echo(f"  {'notice':>10}  {notice.message}")
    if result.issues:
        shown = result.issues[:limit]
        for i in shown:
            where = "table" if i.row is None else f"row {i.row}"
            typer.echo(f"  {where:>10}  {i.field:<24} {i.rule:<13} {i.message}")
        if len(result.issues) > limit:
            typer.echo(f"  ... and {len(result.issues) - limit} more (use --report FILE for all)")
    if report is not None:
        with report.open("w", newline="", encoding="utf-8") as fh:
            write_report(result.issues, fh)
        typer.echo(f"report written to {report}")
    if drop_invalid:
        if out is None:
            typer.echo("error: --drop-invalid needs --out FILE for the valid rows", err=True)
            raise typer.Exit(2)
        good = result.good()
        if good.n_rows == 0:
            typer.echo("error: no valid rows remain", err=True)
            raise typer.Exit(1)
        _write(good.frame(), out)
        typer.echo(f"{good.n_rows} valid rows written to {out}")
        return
    if not result.ok:
        raise typer.Exit(1)


def features(
    path: PathArg,
    out: Annotated[Path, typer.Option(help="Output table (.csv or .parquet).")],
    all_features: Annotated[
        bool,
        typer.Option(
            "--all", help="Include the derived threshold predictors, not only the model inputs."
        ),
    ] = False,
) -> None:
    """Turn a valid table into the feature matrix (model inputs, NaN = missing)."""
    from features.build import feature_frame
    from features.spec import FEATURES, MODEL_FEATURE_NAMES
    from features.table import read_table, validate_table

    result = validate_table(read_table(path))
    if not result.ok:
        typer.echo(
            f"error: {path}: {result.n_bad} of {result.n_rows} rows are invalid; "
            f"`pe-risk validate {path}` reports them, and `pe-risk validate {path} "
            "--drop-invalid --out valid.parquet` writes the valid rows, in canonical units, "
            "for `pe-risk features valid.parquet`",
            err=True,
        )
        raise typer.Exit(1)
    names = [f.name for f in FEATURES] if all_features else list(MODEL_FEATURE_NAMES)
    _write(feature_frame(result.columns, names), out)
    typer.echo(f"{result.n_rows} rows × {len(names)} features written to {out}")


def scores(
    record: Annotated[
        Path,
        typer.Argument(
            help="A JSON file holding one patient record (or '-' for standard input).",
            allow_dash=True,
        ),
    ],
) -> None:
    """Validate one JSON record and print its derived predictors, clinical scores and the
    guideline flags that need no model, as JSON."""
    from features.build import derive, record_columns
    from features.recommend import recommendations
    from features.scores import score_results

    rec = read_record(record)
    cols = record_columns([rec])
    feats = {k: (None if v[0] != v[0] else float(v[0])) for k, v in derive(cols).items()}
    table = score_results(cols)
    flags = recommendations(
        {k: (float("nan") if v is None else v) for k, v in feats.items()},
        table,
        risk_category=None,
        suspected_pe=rec.suspected_pe,
        anticoagulated=rec.anticoagulated,
        brain_metastases=rec.brain_metastases,
    )
    answer = {
        "clinical_scores": table,
        "recommendations": flags,
        "features": feats,
        "warnings": [w.as_dict() for w in rec.warnings],
    }
    typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))


def cohort(
    n: Annotated[int, typer.Option("--n", help="Number of rows (at least 100).", min=100)] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")] = 7,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output .parquet (default) or .csv; the truth and metadata are written beside it. "
            "Default: <state>/cohorts/cohort-<n>-<seed>.parquet"
        ),
    ] = None,
    describe: Annotated[
        bool,
        typer.Option(
            "--describe",
            help="Print the checks against the published figures: PE now, 180-day incidence, "
            "death, censoring and the AUROC ceilings.",
        ),
    ] = False,
    describe_only: Annotated[
        Path | None,
        typer.Option(
            help="Describe an existing cohort file (its .truth file must sit beside it) and exit.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Generate the synthetic lung-cancer cohort with its true probabilities (never inputs)."""
    from models.settings import get_settings
    from training import cohort as synth
    from training.cohort_checks import describe, format_checks

    if describe_only is not None:
        frame = _read_cohort(describe_only)
        truth = synth.read_truth(describe_only)
        typer.echo(format_checks(describe(frame, truth)))
        return
    if out is None:
        settings = get_settings()
        settings.ensure_dirs()
        out = settings.cohort_file(n, seed)
    if out.suffix.lower() not in (".parquet", ".csv"):
        typer.echo(f"error: {out}: give a .parquet or .csv path", err=True)
        raise typer.Exit(2)
    result = synth.generate(n, seed)
    paths = synth.write(result, out)
    pe_now = (result.frame["pe_days"] == 0).mean()
    new_pe = result.truth.loc[~result.truth["pe_at_index"], "new_pe_180d"].mean()
    typer.echo(
        f"{n} synthetic rows (seed {seed}; PE now {pe_now:.3f}; without it, mean true risk of a "
        f"new PE by 180 days {new_pe:.3f}) written to {paths[0]}; truth: {paths[1]}; "
        f"metadata: {paths[2]}"
    )
    if describe:
        typer.echo(format_checks(describe(result.frame, result.truth)))


def _read_cohort(path: Path):
    """A cohort file in canonical form (validated with the outcome required)."""
    from features.table import read_table, validate_table

    report = validate_table(read_table(path), require_outcome=True)
    if not report.ok:
        typer.echo(
            f"error: {path} has {report.n_bad} invalid rows; run `pe-risk validate {path}`",
            err=True,
        )
        raise typer.Exit(1)
    return report.frame()


def spec(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the feature specification: name, unit, monotone direction, source, missing meaning."""
    from features.spec import spec_table

    rows = spec_table()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        mono = {1: "+", -1: "−", 0: "·"}[int(r["monotone"])]  # type: ignore[call-overload]
        model = "model" if r["in_model"] else "derived"
        typer.echo(f"{r['name']:<28} {mono} {model:<8} {r['unit']!s:<10} {r['source']}")


def _write(df, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    elif out.suffix.lower() == ".csv":
        df.to_csv(out, index=False)
    else:
        typer.echo(f"error: {out}: give a .csv or .parquet output", err=True)
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """The data commands."""
    # short_help: the command list fits 80 columns (click cut the docstrings mid-sentence)
    app.command(short_help="Check a table against the data contract, row by row.")(validate)
    app.command(short_help="Write a valid table's feature matrix.")(features)
    app.command(short_help="Print one JSON record's predictors, scores and flags.")(scores)
    app.command(short_help="Generate the synthetic cohort with its true risks.")(cohort)
    app.command(short_help="Print the feature specification.")(spec)
