"""Benchmark: the clinician's report rendered server-side (no HTTP). Prints a table.

Target (issue 6): one report ≤ 50 ms. Uses the model the service serves when one was
imported (``make serve``), else fits one on 20,000 synthetic rows in memory (no MLflow).
Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_report.py``.
"""

from __future__ import annotations

import argparse

from bench_features import RECORD, per_call_ms

from features.records import parse_record
from models.settings import get_settings
from models.store import load_imported
from serving.answer.predict import predict_records
from serving.answer.report import missing_input_effects, render, report_html


def _model():
    try:
        return load_imported(get_settings())
    except LookupError:
        from features.table import validate_table
        from training.cohort import generate
        from training.train import TrainConfig, fit

        frame = generate(20_000, 7).frame
        fitted = fit(validate_table(frame, require_outcome=True), TrainConfig())
        return fitted.model, "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=300)
    args = ap.parse_args()
    model, version = _model()
    sparse = parse_record({k: RECORD[k] for k in ("age", "sex", "histology", "stage")})
    full = parse_record(RECORD)
    answer = predict_records(model, version, [full])[0]
    what_if = missing_input_effects(model, full)
    report_html(model, version, full)  # templates compiled once per process
    rows = [
        (
            "report, record with many inputs",
            per_call_ms(lambda: report_html(model, version, full), args.repeat),
        ),
        (
            "report, the four required fields",
            per_call_ms(lambda: report_html(model, version, sparse), args.repeat),
        ),
        (
            "  of which: answer (predict_records)",
            per_call_ms(lambda: predict_records(model, version, [full]), args.repeat),
        ),
        (
            "  of which: missing-input what-ifs",
            per_call_ms(lambda: missing_input_effects(model, sparse), args.repeat),
        ),
        (
            "  of which: HTML rendering",
            per_call_ms(lambda: render(answer, full, model, what_if), args.repeat),
        ),
    ]
    print(f"{'case (target ≤ 50 ms)':<40} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (p50, p99) in rows:
        print(f"{name:<40} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
