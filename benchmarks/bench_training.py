"""Benchmark: `pe-risk train --synthetic N` end to end, one fresh process and state per size.

Targets: 50,000 rows ≤ 60 s on 2 cores and ≤ 2 GiB peak (issue 4); at 1,000,000 rows the
evaluation (the 200-sample bootstrap of every metric and comparator) ≤ 60 s (issue 22).
Each size runs the real command (cohort generation, validation, fit, bootstrap evaluation,
plots, MLflow SQLite logging and registration) in its own process and state folder; peak
memory is the largest child's maximum resident set size (sizes run in ascending order, so
it is the current size's). The evaluation's seconds are read from the command's own
progress lines ("evaluating on the test split" to "logging plots"), and each head's tree
count from its "N trees" line.
``.venv/bin/python benchmarks/bench_training.py [--rows 10000 50000 200000 1000000]``
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PE_RISK = str(Path(sys.executable).with_name("pe-risk"))
#: ``[  12.3s] message``: the progress lines of ``models.console.progress``
LINE = re.compile(r"^\[\s*([\d.]+)s\] (.*)$")
HEAD = re.compile(r"^\[(\w+)\] fitting the booster")
TREES = re.compile(r"^\s+(\d+) trees")


@dataclass
class Run:
    seconds: float
    peak_mib: float
    code: int
    evaluation: float = float("nan")
    trees: dict[str, int] = field(default_factory=dict)
    stages: list[tuple[float, str]] = field(default_factory=list)


def read_progress(stderr: str) -> tuple[float, dict[str, int]]:
    """The evaluation's seconds and each head's tree count, from the progress lines."""
    start = end = float("nan")
    trees: dict[str, int] = {}
    head = None
    for text in stderr.splitlines():
        m = LINE.match(text)
        if not m:
            continue
        at, msg = float(m[1]), m[2]
        if msg.startswith("evaluating on the test split"):
            start = at
        elif msg.startswith("logging plots"):
            end = at
        elif h := HEAD.match(msg):
            head = h[1]
        elif (t := TREES.match(msg)) and head is not None:
            trees[head] = int(t[1])
            head = None
    return end - start, trees


def stages(stderr: str, seconds: float) -> list[tuple[float, str]]:
    """Each progress line's seconds until the next one (the last: until the run ended,
    ``seconds`` after the command started)."""
    marks = [(float(m[1]), m[2]) for t in stderr.splitlines() if (m := LINE.match(t))]
    ends = [*marks[1:], (seconds, "")]
    return [(b[0] - a[0], a[1]) for a, b in zip(marks, ends, strict=True)]


def run(rows: int) -> Run:
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "PE_RISK_STATE_DIR": state}
        env.pop("MLFLOW_TRACKING_URI", None)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [PE_RISK, "train", "--synthetic", str(rows)], env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        evaluation, trees = read_progress(proc.stderr)
        return Run(
            seconds,
            peak_kib / 1024,
            proc.returncode,
            evaluation,
            trees,
            stages(proc.stderr, seconds),
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    ap.add_argument(
        "--stages", action="store_true", help="also print where each run's time went, by stage"
    )
    args = ap.parse_args()
    runs: dict[int, Run] = {}
    print(
        f"{'rows':>9} {'seconds':>8} {'evaluation':>11} {'share':>6} {'peak MiB':>9} "
        f"{'trees (pe_now / new_pe)':>24} {'exit':>5}  target   (exit 3: gate refused)"
    )
    for rows in sorted(args.rows):
        r = runs[rows] = run(rows)
        trees = f"{r.trees.get('pe_now', '-')} / {r.trees.get('new_pe', '-')}"
        if rows == 50_000:
            target = "≤ 60 s, ≤ 2048 MiB"
            met = r.seconds <= 60 and r.peak_mib <= 2048
        elif rows == 1_000_000:
            target = "evaluation ≤ 60 s"
            met = r.evaluation <= 60
        else:
            target, met = "", True
        ok = "" if not target else ("  met" if met else "  MISSED")
        print(
            f"{rows:>9} {r.seconds:>8.1f} {r.evaluation:>10.1f}s {r.evaluation / r.seconds:>6.0%} "
            f"{r.peak_mib:>9.0f} {trees:>24} {r.code:>5}  {target}{ok}",
            flush=True,
        )
    for rows, r in runs.items() if args.stages else ():
        print(f"\n{rows:,} rows, seconds by stage (the progress lines of `pe-risk train`):")
        for seconds, what in r.stages:
            if seconds >= 0.005 * r.seconds:  # stages of half a percent or more
                print(f"{seconds:>8.1f}  {what[:90]}")


if __name__ == "__main__":
    main()
