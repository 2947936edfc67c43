"""Benchmark: a 200-resource FHIR R4 bundle mapped and scored (no HTTP). Prints a table.

Target (issue 7): ≤ 30 ms for the whole path the ``/fhir/risk-assessment`` handler runs:
JSON decoding, R4B validation (``fhir.resources``), mapping through the table, record
validation, prediction with the exact explanation, scores and flags, the RiskAssessment
and its serialisation. The bundle is one patient's realistic export: two years of labs
and vital signs (most of them superseded or too old), the cancer, stage, treatments and
resources pe-risk does not read. As in the service, start-up objects are frozen out of
the garbage collector (without it p99 roughly triples on collection pauses). Run: ``make bench`` or
``.venv/bin/python benchmarks/bench_fhir.py``.
"""

from __future__ import annotations

import argparse
import gc
import sys
from datetime import date, timedelta
from pathlib import Path

import orjson
from bench_features import per_call_ms
from bench_report import _model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/bundles.py

from serving.api.responses import dumps
from serving.interop.fhir import validate_bundle
from serving.interop.fhir_answer import assess, risk_assessment
from serving.interop.fhir_map import load_table
from serving.interop.fhir_record import map_bundle
from tests import bundles as b

INDEX = date(2026, 11, 24)
SERIES = [  # (LOINC, unit, value, display): a lab panel repeated over two years
    ("777-3", "10*3/uL", 260, "Platelets"),
    ("718-7", "g/dL", 12.9, "Hemoglobin"),
    ("6690-2", "10*3/uL", 8.1, "Leukocytes"),
    ("2160-0", "mg/dL", 0.95, "Creatinine"),
    ("48065-7", "ng/mL", 650, "Fibrin D-dimer FEU"),
    ("8867-4", "/min", 88, "Heart rate"),
    ("2345-7", "mmol/L", 5.6, "Glucose"),
]


def bundle_of(n: int) -> dict:
    resources = b.typical_patient("bench")
    day = 0
    while len(resources) < n:
        when = (INDEX - timedelta(days=7 + 4 * day)).isoformat()
        for code, unit, value, display in SERIES:
            if len(resources) < n:
                resources.append(b.lab("bench", code, value, unit, when, display))
        day += 1
    return b.bundle(resources)


def fhir_path(raw: bytes, model, version: str, table) -> bytes:
    doc = orjson.loads(raw)
    validate_bundle(doc)
    patients, loose = map_bundle(doc, table, INDEX)
    (a,) = assess(model, version, patients)
    return dumps(risk_assessment(a.mapped, a.answer, INDEX, issues=a.mapped.issues + loose))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--resources", type=int, default=200)
    args = ap.parse_args()
    model, version = _model()
    table = load_table()
    doc = bundle_of(args.resources)
    raw = orjson.dumps(doc)
    fhir_path(raw, model, version, table)  # imports and caches warmed once
    gc.freeze()  # as the service does after start-up: long-lived objects leave the collector
    patients, _ = map_bundle(doc, table, INDEX)
    rows = [
        (
            f"{args.resources} resources: decode → RiskAssessment",
            lambda: fhir_path(raw, model, version, table),
        ),
        ("  of which: R4B validation", lambda: validate_bundle(doc)),
        ("  of which: mapping through the table", lambda: map_bundle(doc, table, INDEX)),
        ("  of which: record + predict + explain", lambda: assess(model, version, patients)),
    ]
    print(f"bundle: {len(doc['entry'])} resources, {len(raw) / 1024:.0f} KiB")
    print(f"{'case (target ≤ 30 ms)':<46} {'p50 ms':>8} {'p99 ms':>8}")
    for name, fn in rows:
        p50, p99 = per_call_ms(fn, args.repeat)
        print(f"{name:<46} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
