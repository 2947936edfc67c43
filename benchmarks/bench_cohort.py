"""Benchmark: generate and write a synthetic cohort. Prints a table.

Target (issue 3): 200,000 rows in < 10 s and < 2 GiB, now with the daily PE and death
hazards, the latent times and censoring. Peak memory is this process's maximum resident set
size, so run it as its own process, once per size:
``.venv/bin/python benchmarks/bench_cohort.py [--rows N]`` (default: 50,000 then 200,000,
each in a fresh process).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training.cohort import generate, write


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=None, help="one size (default: 50,000 and 200,000)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.rows is None:  # each size in its own process, so each peak RSS is its own
        for rows in (50_000, 200_000):
            cmd = [sys.executable, __file__, "--rows", str(rows), "--seed", str(args.seed)]
            subprocess.run(cmd, check=True)
        return

    before = rss_mib()
    t0 = time.perf_counter()
    cohort = generate(args.rows, args.seed)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write(cohort, Path(tmp) / "cohort.parquet")
        t2 = time.perf_counter()
    peak = rss_mib()
    print(f"{'step (' + format(args.rows, ',') + ' rows)':<36} {'seconds':>8}  target")
    print(f"{'generate (times and truth)':<36} {t1 - t0:>8.2f}")
    print(f"{'write Parquet + truth + metadata':<36} {t2 - t1:>8.2f}")
    print(f"{'total':<36} {t2 - t0:>8.2f}  < 10 s")
    print(f"{'peak RSS (MiB), before: ' + format(before, '.0f'):<36} {peak:>8.0f}  < 2048")


if __name__ == "__main__":
    main()
