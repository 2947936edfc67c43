"""What an unknown field does to the estimate: the figures of README "Unknown values".

Trains on the seed-7 synthetic cohort (50,000 rows) and on the same generator with every
field always recorded (a hospital's complete table), with and without the masked training
copies of ``training.unknowns``, and prints, for the new-PE estimate at 180 days (test rows
without PE now, IPCW-weighted):

1. the issue's record (age 67, male, adenocarcinoma, stage IV) with four fields absent,
   all true and all false;
2. calibration on the complete table's test rows, as they are and with 30 % of each
   optional field removed at random;
3. test AUROC on the records as they are.

    .venv/bin/python benchmarks/bench_unknowns.py [--rows 50000] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.build import record_columns, take
from features.records import parse_record
from features.table import validate_table
from training.cohort import generate, load_effects
from training.evaluate import calibration_intercept, calibration_slope, core_metrics
from training.train import TrainConfig, fit
from training.unknowns import EVALUATION_RATE, remove_at_random

RECORD = {"age": 67, "sex": "male", "histology": "adenocarcinoma", "stage": "IV"}
FOUR = ("suspected_pe", "chemotherapy", "anti_angiogenic", "gemcitabine")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    tables = {
        "synthetic cohort": generate(a.rows, a.seed).frame,
        "complete table": generate(a.rows, a.seed, load_effects().always_recorded()).frame,
    }
    print(
        f"{'table':<17} {'masked copies':>13} {'absent':>7} {'true':>6} {'false':>6} "
        f"{'AUROC':>6} {'int':>6} {'slope':>6} {'30%: mean p':>11} {'obs':>6} {'int':>6} {'slope':>6}"
    )
    for name, frame in tables.items():
        report = validate_table(frame, require_outcome=True)
        for copies in (1, 0):
            f = fit(report, TrainConfig(seed=a.seed, masked_copies=copies))
            m, head = f.model, f.model.new_pe
            test = f.heads["new_pe"].task.rows(f.splits.test)  # without PE now
            y, w = f.outcomes.at(head.horizon_days, test)  # IPCW: censored follow-up weighted
            p = head.probability(f.x[test])
            removed = remove_at_random(
                take(report.columns, test), EVALUATION_RATE, np.random.default_rng([a.seed, 30])
            )
            pm = head.probability(m.features(removed))
            rows = [
                RECORD,
                {**RECORD, **dict.fromkeys(FOUR, True)},
                {**RECORD, **dict.fromkeys(FOUR, False)},
            ]
            absent, yes, no = head.probability(
                m.features(record_columns([parse_record(r) for r in rows]))
            )
            auroc = core_metrics(y, p, w)["auroc"]
            observed = float(np.sum(w * y) / len(y))
            print(
                f"{name:<17} {copies:>13} {absent:>7.1%} {yes:>6.1%} {no:>6.1%} {auroc:>6.3f} "
                f"{calibration_intercept(y, p, w):>+6.2f} {calibration_slope(y, p, w):>6.2f} "
                f"{pm.mean():>11.1%} {observed:>6.1%} {calibration_intercept(y, pm, w):>+6.2f} "
                f"{calibration_slope(y, pm, w):>6.2f}"
            )


if __name__ == "__main__":
    main()
