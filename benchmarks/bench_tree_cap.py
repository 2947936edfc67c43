"""What a cap on the trees costs in discrimination: the measurement behind
``TrainConfig.max_trees`` (issue 22).

Early stopping alone lets a head's tree count grow with the table, and serving pays per
tree (exact TreeSHAP). For each size this fits both heads in memory (no MLflow) with the
cap lifted (``--uncapped``, default 3000 trees, the old ``max_rounds``), then scores the
test split with the served booster cut to each candidate cap: the first k trees of a
booster are the trees a k-round fit grows (same seed, same rows), so a cut booster's AUROC
is the capped model's (the calibration map, refitted on a capped fit, moves no AUROC: it
is increasing in the margin). Prints, per head, the early-stopped tree count and the test
AUROC (new PE: IPCW time-dependent at the longest horizon; PE now: on the suspected rows)
at each cap and uncapped, with the synthetic truth's AUROC on the same rows.

``.venv/bin/python benchmarks/bench_tree_cap.py [--rows 200000 1000000] [--caps 200 300 400]``
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import xgboost as xgb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.contract import new_pe_column
from features.spec import MODEL_FEATURE_NAMES
from features.table import validate_table
from models.artifact import PE_NOW
from training.cohort import generate
from training.evaluate import rank_metrics
from training.train import TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--caps", type=int, nargs="+", default=[150, 200, 250, 300, 400])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--uncapped", type=int, default=3000)
    a = ap.parse_args()
    caps = sorted(a.caps)
    print(
        f"{'rows':>9} {'head':>7} {'trees':>6} "
        + " ".join(f"{'≤' + str(c):>7}" for c in caps)
        + f" {'all':>7} {'truth':>7} {'fit s':>6}"
    )
    for rows in sorted(a.rows):
        cohort = generate(rows, a.seed)
        report = validate_table(cohort.frame, require_outcome=True)
        config = replace(TrainConfig(seed=a.seed), max_trees=a.uncapped)
        t0 = time.perf_counter()
        fitted = fit(report, config)
        seconds = time.perf_counter() - t0
        for key, h in fitted.heads.items():
            rows_of = h.task.rows(fitted.splits.test)
            if key == PE_NOW:
                y, w = fitted.outcomes.pe_now[rows_of], None
                truth = cohort.truth["pe_now_probability"].to_numpy()[rows_of]
            else:
                last = h.task.horizons[-1]
                y, w = fitted.outcomes.at(last, rows_of)
                truth = cohort.truth[new_pe_column(last)].to_numpy()[rows_of]
            data = xgb.DMatrix(
                fitted.x[rows_of], feature_names=list(MODEL_FEATURE_NAMES), missing=np.nan
            )
            booster = h.head.booster
            n = booster.num_boosted_rounds()

            def auroc(k: int, booster=booster, data=data, y=y, w=w) -> float:
                margin = booster[:k].predict(data, output_margin=True)
                return rank_metrics(y, margin, w)["auroc"]

            print(
                f"{rows:>9} {key:>7} {n:>6} "
                + " ".join(f"{auroc(min(c, n)):>7.4f}" for c in caps)
                + f" {auroc(n):>7.4f} {rank_metrics(y, truth, w)['auroc']:>7.4f} {seconds:>6.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
