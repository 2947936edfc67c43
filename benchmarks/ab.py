"""Benchmark: pe-risk against a plain BentoML service, interleaved, on this machine (issue 22).

One command re-measures the ratio the serving targets are written in:

    .venv/bin/python benchmarks/ab.py [--rounds 3] [--requests 5000]

It needs the champion in the BentoML store (``make serve`` once, or ``pe-risk
import-model``) and ``hey`` (Debian package ``hey``) as the load generator. It exports the
champion's new-PE booster for ``benchmarks/plain_service.py`` (same trees, same workers),
starts both services with ``bentoml serve`` on 127.0.0.1, and runs every case against
each in turn, round after round (the order alternating), so that a noisy machine slows
both alike. The table gives the median over rounds, and the ratio pe-risk / plain.

Cases: ``/predict`` at concurrency 1 (p50), at concurrency 16 with keep-alive connections
(requests/s, p50, p99, errors, and how the 16 connections were spread over the workers:
one worker holding all of them halves the service) and with a new connection per
request, batches of 1,000 and 10,000 records with explanations (and 10,000 in the compact
layout, ``top_contributions`` 5, against the plain service's full one), and one record in
process (no HTTP).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serve import RECORD  # noqa: E402

# the full record the issue measured (34 fields): RECORD and the rest of what a chart holds
FULL = RECORD | {
    "patient_id": "bench-1",
    "smoking_status": "former",
    "ecog": 1,
    "months_since_diagnosis": 4,
    "egfr_mutation": False,
    "kras_mutation": False,
    "alk_rearrangement": False,
    "platinum_chemotherapy": True,
    "gemcitabine": False,
    "anti_angiogenic": False,
    "egfr_tki": False,
    "immunotherapy": False,
    "radiotherapy": False,
    "central_venous_catheter": False,
    "prior_vte": False,
    "anticoagulated": False,
    "pleural_effusion": True,
    "brain_metastases": False,
    "pao2": 68,
    "dvt_signs": False,
    "hemoptysis": False,
}


def _hey(
    url: str, body: Path, n: int, c: int, token: str | None, keep_alive: bool = True
) -> dict[str, float]:
    cmd = ["hey", "-n", str(n), "-c", str(c), "-m", "POST", "-T", "application/json"]
    cmd += ["-D", str(body), "-t", "60"] + ([] if keep_alive else ["-disable-keepalive"])
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Requests/sec" not in out or "50% in" not in out:
        raise SystemExit(f"hey gave no figures for {url}:\n{out}")
    got = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000,
    }
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)  # hey leaves it out for a few requests
    got["p99"] = float(p99.group(1)) * 1000 if p99 else float("nan")
    # hey sends n rounded down to a multiple of c; every answer but a 200 is an error
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    failed = re.findall(r"\[(\d+)\]\s+Get|\[(\d+)\]\s+Post", out)  # transport errors
    got["errors"] = sum(int(k) for code, k in codes if code != "200") + len(failed)
    return got


def _workers(port: int) -> list[psutil.Process]:
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "bentoml serve" in cmd and f"--port {port}" in cmd:
            return [
                c
                for c in proc.children(recursive=True)
                if "_bentoml_impl.worker" in " ".join(c.cmdline())
            ]
    return []


def _spread(port: int) -> str:
    """How many established connections each worker holds (e.g. '16/0' or '8/8')."""
    counts = []
    for w in _workers(port):
        try:
            conns = w.net_connections(kind="tcp")
        except psutil.Error:
            conns = []
        counts.append(
            sum(1 for k in conns if k.status == "ESTABLISHED" and k.laddr and k.laddr.port == port)
        )
    return "/".join(str(k) for k in sorted(counts, reverse=True))


def _concurrent(url: str, body: Path, n: int, port: int, token: str | None) -> dict:
    """``hey`` at concurrency 16 in the background; the connection spread sampled mid-run."""
    result: dict = {}
    import threading

    def run() -> None:
        result.update(_hey(url, body, n, 16, token))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)
    result["spread"] = _spread(port)
    t.join()
    return result


def _start(cmd: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise SystemExit(f"{cmd} did not become ready; see {log}")


def _stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def _in_process(model, n: int) -> tuple[float, float]:
    """p50 ms of one record in process: pe-risk's whole answer, and the plain service's."""
    import xgboost as xgb

    from features.records import parse_record
    from serving.answer.predict import predict_records

    names = list(model.feature_names)
    head = model.new_pe
    values = _feature_values(model)
    ours, plain = [], []
    for _ in range(n):
        t = time.perf_counter()
        predict_records(model, "bench", [parse_record(FULL)])
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        x = np.array([[np.nan if values[k] is None else values[k] for k in names]], np.float32)
        d = xgb.DMatrix(x, feature_names=names, missing=np.nan, nthread=1)
        head.booster.predict(d, output_margin=True)
        head.booster.predict(d, pred_contribs=True)
        plain.append(time.perf_counter() - t)
    return statistics.median(ours) * 1000, statistics.median(plain) * 1000


def _feature_values(model) -> dict[str, float | None]:
    from features.build import record_columns
    from features.records import parse_record

    x = model.features(record_columns([parse_record(FULL)]))[0]
    return {n: (None if v != v else float(v)) for n, v in zip(model.feature_names, x, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=5000, help="per concurrency-16 run")
    ap.add_argument("--ports", type=int, nargs=2, default=(3101, 3102))
    args = ap.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: `apt-get install hey` (the load generator)")
    from models.settings import get_settings
    from models.store import load_imported

    settings = get_settings()
    model, version = load_imported(settings)
    tmp = Path(tempfile.mkdtemp(prefix="pe-risk-ab-"))
    model.save(tmp / "model")
    bodies = {}
    values = _feature_values(model)
    for name, ours, plain in (
        ("one", FULL, {"features": values}),
        ("b1000", {"patients": [FULL] * 1000, "explain": True}, {"patients": [values] * 1000}),
        ("b10000", {"patients": [FULL] * 10000, "explain": True}, {"patients": [values] * 10000}),
        (  # the compact layout (pe-risk only has one): the 5 largest contributions + the rest
            "b10000 top5",
            {"patients": [FULL] * 10000, "explain": True, "top_contributions": 5},
            {"patients": [values] * 10000},
        ),
    ):
        for who, body in (("pe-risk", ours), ("plain", plain)):
            path = tmp / f"{who}-{name}.json"
            path.write_text(json.dumps(body))
            bodies[who, name] = path
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    token = os.environ.get("PE_RISK_API_TOKEN", "").split(",")[0] or None
    env = os.environ | {
        "BENTOML_HOME": str(settings.bentoml_home),
        "PLAIN_MODEL_DIR": str(tmp / "model"),
    }
    p_ours, p_plain = args.ports
    services = {
        "pe-risk": (
            p_ours,
            [
                bentoml,
                "serve",
                "serving.service:PERisk",
                "--port",
                str(p_ours),
                "--host",
                "127.0.0.1",
            ],
        ),
        "plain": (
            p_plain,
            [
                bentoml,
                "serve",
                "benchmarks.plain_service:Plain",
                "--port",
                str(p_plain),
                "--host",
                "127.0.0.1",
            ],
        ),
    }
    procs = {
        who: _start(cmd, env, port, tmp / f"{who}.log") for who, (port, cmd) in services.items()
    }
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for r in range(args.rounds):
            order = ["pe-risk", "plain"] if r % 2 == 0 else ["plain", "pe-risk"]
            for who in order:
                port = services[who][0]
                base = f"http://127.0.0.1:{port}"
                tok = token if who == "pe-risk" else None
                _hey(f"{base}/predict", bodies[who, "one"], 200, 1, tok)  # warm
                results.setdefault((who, "c1"), []).append(
                    _hey(f"{base}/predict", bodies[who, "one"], 2000, 1, tok)
                )
                results.setdefault((who, "c16"), []).append(
                    _concurrent(f"{base}/predict", bodies[who, "one"], args.requests, port, tok)
                )
                results.setdefault((who, "c16 new"), []).append(  # a connection per request
                    _hey(f"{base}/predict", bodies[who, "one"], args.requests, 16, tok, False)
                )
                for b in ("b1000", "b10000", "b10000 top5"):
                    results.setdefault((who, b), []).append(
                        _hey(
                            f"{base}/predict_batch",
                            bodies[who, b],
                            10 if b == "b1000" else 4,
                            1,
                            tok,
                        )
                    )
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for proc in procs.values():
            _stop(proc)
    ours_ms, plain_ms = _in_process(model, 2000)

    def med(who: str, case: str, key: str) -> float:
        return statistics.median(x[key] for x in results[who, case])

    rows = [
        ("/predict p50 ms, concurrency 1", "c1", "p50"),
        ("/predict req/s, concurrency 16", "c16", "rps"),
        ("/predict p50 ms, concurrency 16", "c16", "p50"),
        ("/predict p99 ms, concurrency 16", "c16", "p99"),
        ("req/s, c16, a connection per request", "c16 new", "rps"),
        ("p99 ms, c16, a connection per request", "c16 new", "p99"),
        ("1,000-record batch, explained, ms", "b1000", "p50"),
        ("10,000-record batch, explained, ms", "b10000", "p50"),
        ("10,000, top 5 + rest (plain: all), ms", "b10000 top5", "p50"),
    ]
    print(f"pe-risk version {version} against the plain service, {args.rounds} rounds (medians)")
    print(f"{'case':<38} {'pe-risk':>9} {'plain':>9} {'ratio':>6}")
    for label, case, key in rows:
        a, b = med("pe-risk", case, key), med("plain", case, key)
        print(f"{label:<38} {a:>9.2f} {b:>9.2f} {a / b:>6.2f}")
    print(
        f"{'one record in process, ms':<38} {ours_ms:>9.2f} {plain_ms:>9.2f} {ours_ms / plain_ms:>6.2f}"
    )
    errors = {
        who: sum(x["errors"] for c in {c for w, c in results if w == who} for x in results[who, c])
        for who in services
    }
    spread = {who: ", ".join(x["spread"] for x in results[who, "c16"]) for who in services}
    print(f"errors: pe-risk {errors['pe-risk']}, plain {errors['plain']}")
    print(
        f"connections per worker at concurrency 16: pe-risk {spread['pe-risk']}; plain {spread['plain']}"
    )
    p99_target = 2 * med("plain", "c16", "p50")
    print(
        f"target p99 ≤ 2 × plain p50 at concurrency 16: {med('pe-risk', 'c16', 'p99'):.2f} ≤ {p99_target:.2f}"
    )


if __name__ == "__main__":
    main()
