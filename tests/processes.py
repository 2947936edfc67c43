"""Helpers for tests that start a real server process (mlflow server, bentoml serve)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with the end of ``log`` if the process dies or
    ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"{proc.args[0]} did not become ready at {url}:\n" + log.read_text()[-3000:]
            )
        time.sleep(0.5)


@contextmanager
def server_process(
    args: Sequence[str],
    health: str,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run ``args --host 127.0.0.1 --port <free>`` (output to ``log``, ``env`` over the
    current environment) until the block ends; yields its URL once ``health`` answers 200."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*args, "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(proc, f"{url}{health}", log)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)
