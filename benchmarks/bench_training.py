"""Benchmark: `pe-risk train --synthetic N` end to end, one fresh process and state per size.

Target (issue 4): 50,000 rows ≤ 60 s on 2 cores and ≤ 2 GiB peak. Each size runs the real
command (cohort generation, validation, fit, 200-sample bootstrap evaluation, plots,
MLflow SQLite logging and registration) in its own process and state folder; peak memory
is the largest child's maximum resident set size (sizes run in ascending order, so it is
the current size's).
``.venv/bin/python benchmarks/bench_training.py [--rows 10000 50000 200000]``
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PE_RISK = str(Path(sys.executable).with_name("pe-risk"))


def run(rows: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "PE_RISK_STATE_DIR": state}
        env.pop("MLFLOW_TRACKING_URI", None)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [PE_RISK, "train", "--synthetic", str(rows)], env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return seconds, peak_kib / 1024, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    args = ap.parse_args()
    print(
        f"{'rows':>8} {'seconds':>8} {'peak MiB':>9} {'exit':>5}  target   (exit 3: gate refused)"
    )
    for rows in sorted(args.rows):
        seconds, peak, code = run(rows)
        target = "≤ 60 s, ≤ 2048 MiB" if rows == 50_000 else ""
        ok = "" if not target else ("  met" if seconds <= 60 and peak <= 2048 else "  MISSED")
        print(f"{rows:>8} {seconds:>8.1f} {peak:>9.0f} {code:>5}  {target}{ok}")


if __name__ == "__main__":
    main()
