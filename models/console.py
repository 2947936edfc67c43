"""What the ``pe-risk`` commands share, whichever layer they live in (training's data and
model commands, serving's serve / report / fhir-map): timed progress lines on standard
error, and reading one record file."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

Progress = Callable[[str], None]


def progress(start: float | None = None) -> Progress:
    """A printer of ``[  12.3s] message`` lines on standard error, timed from ``start``."""
    t0 = time.perf_counter() if start is None else start

    def say(msg: str) -> None:
        typer.echo(f"[{time.perf_counter() - t0:6.1f}s] {msg}", err=True)

    return say


def read_record(path: Path) -> Any:
    """One JSON record from a file ('-': standard input), validated; exits 2 / 1 on bad input."""
    from features.records import RecordError, parse_record

    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    try:
        return parse_record(json.loads(text))
    except json.JSONDecodeError as exc:
        typer.echo(f"error: {path} is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    except RecordError as exc:
        for issue in exc.issues:
            typer.echo(f"error: {issue.message}", err=True)
        raise typer.Exit(1) from None
