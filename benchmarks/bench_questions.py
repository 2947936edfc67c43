"""The two questions against the generator's truth: the figures of issue 18 and README
"Two questions".

For each size, generates the seed-7 synthetic cohort, fits both heads in memory (no MLflow)
and evaluates them on the test split, then prints:

- new PE by 180 days (test rows without PE now): the mean estimate against the true mean
  cumulative incidence, the worst tenth of the rows (by estimate) against its true mean,
  and the time-dependent AUROC against the truth's on the same rows (targets: within 8 %,
  no tenth off by more than a quarter, ≥ 0.95 × the truth's);
- PE now (suspected test rows): AUROC against the truth's (≥ 0.97 ×) and calibration slope
  (0.85–1.15);
- per horizon, the time-dependent AUROC of pe-risk, Khorana and ONKOTEV;
- fit and evaluation time and the process's peak memory (sizes run in ascending order).

``.venv/bin/python benchmarks/bench_questions.py [--rows 50000 200000] [--seed 7]``
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.table import validate_table
from training.cohort import generate
from training.compare import evaluate_fit
from training.train import TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bootstrap", type=int, default=200)
    a = ap.parse_args()
    print(
        f"{'rows':>8} {'fit s':>6} {'eval s':>6} {'peak MiB':>8} | {'mean/truth':>10} "
        f"{'worst tenth':>11} {'AUROC':>6} {'truth':>6} {'ratio':>6} | {'PE now':>6} "
        f"{'truth':>6} {'ratio':>6} {'slope':>6}"
    )
    horizons = []
    for rows in sorted(a.rows):
        cohort = generate(rows, a.seed)
        report = validate_table(cohort.frame, require_outcome=True)
        t0 = time.perf_counter()
        fitted = fit(report, TrainConfig(seed=a.seed))
        t1 = time.perf_counter()
        ev = evaluate_fit(fitted, report.columns, n_boot=a.bootstrap, truth=cohort.truth)
        t2 = time.perf_counter()
        test = fitted.heads["new_pe"].task.rows(fitted.splits.test)
        p = fitted.model.new_pe.probability(fitted.x[test])
        truth = cohort.truth["new_pe_180d"].to_numpy()[test]
        tenths = np.array_split(np.argsort(p, kind="stable"), 10)
        worst = max(abs(p[t].mean() / truth[t].mean() - 1) for t in tenths)
        auroc, oracle = ev.metrics["auroc"].value, ev.reference["oracle_auroc"]
        now = ev.pe_now or {}
        now_auroc = now["metrics"]["auroc"].value if now else float("nan")
        now_truth = now.get("reference", {}).get("oracle_auroc", float("nan"))
        slope = now["metrics"]["calibration_slope"].value if now else float("nan")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{rows:>8} {t1 - t0:>6.1f} {t2 - t1:>6.1f} {peak:>8.0f} | "
            f"{p.mean() / truth.mean() - 1:>+10.1%} {worst:>11.1%} {auroc:>6.3f} {oracle:>6.3f} "
            f"{auroc / oracle:>6.3f} | {now_auroc:>6.3f} {now_truth:>6.3f} "
            f"{now_auroc / now_truth:>6.3f} {slope:>6.2f}",
            flush=True,
        )
        horizons.append((rows, ev.horizons))
    print(f"\n{'rows':>8} {'horizon':>7} {'pe-risk':>8} {'Khorana':>8} {'ONKOTEV':>8}  (td-AUROC)")
    for rows, by_h in horizons:
        for h, m in by_h.items():
            print(
                f"{rows:>8} {h:>5} d {m['auroc'].value:>8.3f} {m['khorana_auroc'].value:>8.3f} "
                f"{m['onkotev_auroc'].value:>8.3f}"
            )


if __name__ == "__main__":
    main()
