"""Benchmark: exact TreeSHAP by table lookup (``models.treeshap``) against XGBoost (issue 22).

Trains a booster like the new-PE head (the project's 51 features, depth 3, eta 0.05, its
monotone constraints, 169 trees) on the synthetic cohort, then for 1, 10, 100, 1,000 and
10,000 rows times, interleaved and repeated (median):

- XGBoost: ``DMatrix`` + ``predict(output_margin=True)`` + ``predict(pred_contribs=True)``,
  one thread (the booster as ``PERiskModel.load`` sets it for serving, and the ``DMatrix``)
  and two (``PERiskModel.with_threads`` for batches);
- the table: ``PathTable.margin_and_contributions`` (one thread, numpy).

It prints the table's build time (including its check against XGBoost), its memory and
the largest difference from XGBoost, and the crossover: the fewest rows at which XGBoost
(one thread) is faster.

    .venv/bin/python benchmarks/bench_treeshap.py [--trees 169] [--depth 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import xgboost as xgb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.build import feature_matrix
from features.spec import MODEL_FEATURE_NAMES, MONOTONE_CONSTRAINTS
from features.table import validate_table
from models.treeshap import PathTable
from training.cohort import generate
from training.train import DEFAULT_PARAMS

SIZES = (1, 10, 100, 1_000, 10_000)


def booster(
    trees: int, depth: int, rows: int = 20_000, seed: int = 7
) -> tuple[xgb.Booster, np.ndarray]:
    cohort = generate(rows, seed)
    x = feature_matrix(validate_table(cohort.frame).columns, MODEL_FEATURE_NAMES)
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < cohort.truth["new_pe_180d"].to_numpy()).astype(float)
    params = {**DEFAULT_PARAMS, "eta": 0.05, "max_depth": depth, "seed": seed, "nthread": 2}
    params["monotone_constraints"] = {n: c for n, c in MONOTONE_CONSTRAINTS.items() if c}
    d = xgb.DMatrix(x, y, feature_names=list(MODEL_FEATURE_NAMES), missing=np.nan)
    b = xgb.train(params, d, trees)
    b.set_param({"nthread": 1})
    return b, x


def xgboost_explain(b: xgb.Booster, x: np.ndarray, nthread: int) -> tuple[np.ndarray, np.ndarray]:
    d = xgb.DMatrix(x, feature_names=list(MODEL_FEATURE_NAMES), missing=np.nan, nthread=nthread)
    return b.predict(d, output_margin=True), b.predict(d, pred_contribs=True)


def timed(f, *args) -> float:
    t0 = time.perf_counter()
    f(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trees", type=int, default=169)
    ap.add_argument("--depth", type=int, default=3)
    args = ap.parse_args()

    b, x = booster(args.trees, args.depth)
    b2 = b.copy()
    b2.set_param({"nthread": 2})
    builds = [timed(PathTable.of, b, MODEL_FEATURE_NAMES) for _ in range(5)]
    table = PathTable.of(b, MODEL_FEATURE_NAMES)
    print(
        f"booster: {table.n_trees} trees, depth ≤ {table.depth}, {x.shape[1]} features, "
        f"{np.isnan(x).mean():.0%} of values missing"
    )
    print(
        f"table: built in {1e3 * statistics.median(builds):.1f} ms (median of 5, with its check "
        f"against XGBoost), {table.nbytes / 2**20:.2f} MiB "
        f"({table.contributions.shape[0] // table.n_trees} decision vectors × "
        f"{table.contributions.shape[1]} contribution slots per tree)"
    )
    print()
    print(
        f"{'rows':>7} {'XGBoost 1 thr':>14} {'XGBoost 2 thr':>14} {'table':>11} "
        f"{'speed-up':>9} {'max |Δ|':>9} {'table peak':>11}"
    )
    rng = np.random.default_rng(0)
    batches = [x[rng.integers(0, len(x), n)] for n in SIZES]
    results = []
    for xs in batches:
        repeats = max(5, min(300, 30_000 // len(xs)))
        t_x1, t_tab = [], []
        for _ in range(repeats):  # interleaved, so load on the shared machine hits both
            t_x1.append(timed(xgboost_explain, b, xs, 1))
            t_tab.append(timed(table.margin_and_contributions, xs))
        margin, contribs = table.margin_and_contributions(xs)
        want_margin, want = xgboost_explain(b, xs, 1)
        diff = max(np.abs(margin - want_margin).max(), np.abs(contribs - want).max())
        tracemalloc.start()
        table.margin_and_contributions(xs)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        results.append([statistics.median(t_x1), statistics.median(t_tab), diff, peak])
    # two threads last: OpenMP's idle threads spin after a parallel call and would slow
    # whatever runs next on the two cores
    for xs, r in zip(batches, results, strict=True):
        repeats = max(5, min(300, 30_000 // len(xs)))
        r.append(statistics.median(timed(xgboost_explain, b2, xs, 2) for _ in range(repeats)))
    rows_faster = None
    for n, (x1, tab, diff, peak, x2) in zip(SIZES, results, strict=True):
        if rows_faster is None and x1 < tab:
            rows_faster = n
        print(
            f"{n:>7,} {1e3 * x1:>11.3f} ms {1e3 * x2:>11.3f} ms {1e3 * tab:>8.3f} ms "
            f"{x1 / tab:>8.1f}× {diff:>9.1e} {peak / 2**20:>7.1f} MiB"
        )
    print()
    if rows_faster is None:
        print(f"crossover: none up to {SIZES[-1]:,} rows: the table is faster at every size")
    else:
        print(f"crossover: XGBoost (one thread) is faster from {rows_faster:,} rows")


if __name__ == "__main__":
    main()
