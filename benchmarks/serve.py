"""Benchmark: the HTTP service under load from a second process on 127.0.0.1. Prints a table.

Targets (issue 5, 2 cores): /predict with explanation p50 ≤ 5 ms at concurrency 1;
≥ 300 requests/s at concurrency 16 with zero errors; a 1,000-record batch with
explanations ≤ 100 ms; worker memory flat (sampled after each fifth of the concurrent
requests: the first fifth warms the workers, growth is measured after it; then again over
``--soak`` further requests, in steady state). Start the service first (``make serve``), then
``.venv/bin/python benchmarks/serve.py [--url http://127.0.0.1:3000] [--requests 10000]``.
The in-process row calls the artefact the service loads, without HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil

RECORD = {
    "age": 67,
    "sex": "male",
    "histology": "adenocarcinoma",
    "stage": "IV",
    "d_dimer": 1.8,
    "platelets": 390,
    "hemoglobin": 128,
    "leukocytes": 9.1,
    "bmi": 24.5,
    "chemotherapy": True,
    "suspected_pe": True,
    "heart_rate": 104,
    "oxygen_saturation": 93,
}


def worker_rss_mib(port: int) -> dict[int, float]:
    """RSS of the BentoML worker processes serving ``port`` (children of its `bentoml serve`)."""
    out = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "bentoml serve" in cmd and f"--port {port}" in cmd:
            for child in proc.children(recursive=True):
                if "_bentoml_impl.worker" in " ".join(child.cmdline()):
                    out[child.pid] = child.memory_info().rss / 2**20
    return out


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def sequential(client: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.post("/predict", json=RECORD)
        out.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return out


def concurrent(url: str, headers: dict, n: int, workers: int) -> tuple[list[float], int, float]:
    lat: list[float] = []
    errors = 0
    clients = [httpx.Client(base_url=url, headers=headers, timeout=30) for _ in range(workers)]

    def one(i: int) -> tuple[float, int]:
        c = clients[i % workers]
        t = time.perf_counter()
        r = c.post("/predict", json=RECORD)
        return (time.perf_counter() - t) * 1000, r.status_code

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for ms, status in pool.map(one, range(n)):
            lat.append(ms)
            errors += status != 200
    return lat, errors, n / (time.perf_counter() - t0)


def in_fifths(
    url: str, headers: dict, n: int, port: int
) -> tuple[list[float], int, float, list[dict[int, float]]]:
    """``n`` requests at concurrency 16 in five rounds; worker RSS sampled before and after
    each. Returns latencies, errors, seconds spent and the RSS samples."""
    rss = [worker_rss_mib(port)]
    lat: list[float] = []
    errors, seconds = 0, 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        lat_r, err_r, _ = concurrent(url, headers, n // 5, 16)
        seconds += time.perf_counter() - t0
        lat, errors = lat + lat_r, errors + err_r
        rss.append(worker_rss_mib(port))
    return lat, errors, seconds, rss


def print_rss(rss: list[dict[int, float]], since: int, label: str) -> None:
    """One line per worker: its RSS at each sample and the change from sample ``since``."""
    for pid in sorted(rss[0]):
        trace = [r.get(pid, float("nan")) for r in rss]
        change = f"{trace[-1] - trace[since]:+.1f}"
        print(
            f"  pid {pid}: " + " → ".join(f"{v:.1f}" for v in trace),
            f"({label}: {change})" if label else f"({change})",
        )


def in_process(n: int) -> list[float]:
    from features.records import parse_record
    from models.settings import get_settings
    from models.store import load_imported
    from serving.answer.predict import predict_records

    model, _ = load_imported(get_settings())
    out = []
    for _ in range(n):
        t = time.perf_counter()
        predict_records(model, "bench", [parse_record(RECORD)])
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument(
        "--soak",
        type=int,
        default=10_000,
        help="further concurrent requests after everything else: memory in steady state",
    )
    ap.add_argument("--token", default=os.environ.get("PE_RISK_API_TOKEN", "").split(",")[0])
    args = ap.parse_args()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    client = httpx.Client(base_url=args.url, headers=headers, timeout=30)
    sequential(client, 50)  # warm up
    rows = []
    seq = sequential(client, 1000)
    rows.append(
        (
            "/predict, concurrency 1",
            statistics.median(seq),
            _pct(seq, 0.99),
            1000 / (sum(seq) / 1000),
            0,
        )
    )
    port = httpx.URL(args.url).port or 80
    lat, errors, seconds, rss = in_fifths(args.url, headers, args.requests, port)
    rps = len(lat) / seconds
    rows.append(
        (
            f"/predict, concurrency 16 ({args.requests} req)",
            statistics.median(lat),
            _pct(lat, 0.99),
            rps,
            errors,
        )
    )
    batch = []
    body = json.dumps({"patients": [RECORD] * 1000, "explain": True}).encode()
    for _ in range(11):
        t = time.perf_counter()
        r = client.post(
            "/predict_batch", content=body, headers={"content-type": "application/json"}
        )
        r.raise_for_status()
        batch.append((time.perf_counter() - t) * 1000)
    batch = batch[1:]  # the first batch warms the worker
    rows.append(
        (
            "/predict_batch 1,000 records, explain",
            statistics.median(batch),
            max(batch),
            1000 / statistics.median(batch) * 1000,
            0,
        )
    )
    local = in_process(1000)
    rows.append(
        (
            "in process (artefact + response)",
            statistics.median(local),
            _pct(local, 0.99),
            1000 / statistics.median(local),
            0,
        )
    )
    print(f"{'case':<44} {'p50 ms':>8} {'p99 ms':>8} {'per s':>8} {'errors':>7}")
    for name, p50, p99, per_s, err in rows:
        print(f"{name:<44} {p50:>8.2f} {p99:>8.2f} {per_s:>8.0f} {err:>7}")
    print(f"HTTP overhead ratio (p50 HTTP / p50 in process): {rows[0][1] / rows[3][1]:.1f}")
    print(f"worker RSS (MiB) before and after each fifth of the {args.requests} requests:")
    print_rss(rss, since=1, label="after the first fifth")
    if not rss[0]:
        print("  (no local `bentoml serve --port` process found: memory not measured)")
    if args.soak and rss[0]:
        soak = in_fifths(args.url, headers, args.soak, port)[3]
        print(f"steady state: worker RSS (MiB) over a further {args.soak} requests:")
        print_rss(soak, since=0, label="")


if __name__ == "__main__":
    main()
