"""Benchmark: record → features and table → feature matrix. Prints a table.

Targets (issue 2): one record → features < 1 ms; 100,000 rows → feature matrix < 2 s.
Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_features.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from features.build import feature_matrix, record_columns
from features.contract import FIELDS, Kind
from features.records import parse_record
from features.scores import score_points, score_results
from features.table import validate_table

RECORD = {
    "age": 67,
    "sex": "male",
    "histology": "adenocarcinoma",
    "stage": "IV",
    "ecog": 1,
    "chemotherapy": True,
    "platinum_chemotherapy": True,
    "suspected_pe": True,
    "heart_rate": 104,
    "d_dimer": {"value": 2300, "unit": "ng/mL{FEU}"},
    "platelets": 410,
    "hemoglobin": 118,
    "leukocytes": 9.2,
    "oxygen_saturation": 93,
    "prior_vte": False,
    "days_since_surgery": 40,
}


def random_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A table of ``n`` valid records with every field present about 70 % of the time."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for f in FIELDS:
        if f.kind is Kind.TEXT:
            continue
        if f.kind is Kind.CATEGORY:
            values = rng.choice(f.choices, n).astype(object)
        elif f.kind is Kind.BOOLEAN:
            values = rng.integers(0, 2, n).astype(float)
        else:
            lo, hi = f.usual or f.hard
            values = rng.uniform(lo, hi, n)
            if f.kind is Kind.INTEGER:
                values = np.round(values)
        if not f.required:
            values = np.where(
                rng.random(n) < 0.3, np.nan if f.kind is not Kind.CATEGORY else None, values
            )
        cols[f.name] = values
    return pd.DataFrame(cols)


def per_call_ms(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()

    rec = parse_record(RECORD)
    rows = []
    p50, p99 = per_call_ms(lambda: feature_matrix(record_columns([rec])), 2000)
    rows.append(("record → feature vector (validated record)", p50, p99, "< 1 ms"))
    p50, p99 = per_call_ms(lambda: feature_matrix(record_columns([parse_record(RECORD)])), 2000)
    rows.append(("JSON dict → validate → feature vector", p50, p99, "< 1 ms"))
    p50, p99 = per_call_ms(lambda: score_results(record_columns([rec])), 500)
    rows.append(("record → all clinical scores", p50, p99, ""))

    df = random_table(args.rows)
    t = time.perf_counter()
    report = validate_table(df)
    t_validate = time.perf_counter() - t
    assert report.ok, report.issues[:3]
    t = time.perf_counter()
    m = feature_matrix(report.columns)
    t_matrix = time.perf_counter() - t
    t = time.perf_counter()
    score_points(report.columns)
    t_scores = time.perf_counter() - t

    print(f"{'step':<48} {'p50 ms':>9} {'p99 ms':>9}  target")
    for name, a, b, target in rows:
        print(f"{name:<48} {a:>9.3f} {b:>9.3f}  {target}")
    print()
    print(f"{'table step (' + format(args.rows, ',') + ' rows)':<48} {'seconds':>9}  target")
    print(f"{'validate every row (vectorised)':<48} {t_validate:>9.3f}")
    print(f"{'canonical columns → feature matrix ' + str(m.shape):<48} {t_matrix:>9.3f}  < 2 s")
    print(f"{'validate + feature matrix':<48} {t_validate + t_matrix:>9.3f}  < 2 s")
    print(f"{'all additive scores (baselines)':<48} {t_scores:>9.3f}")


if __name__ == "__main__":
    main()
