"""The audit log: one JSON line per answered record, with no identifier and no raw record.

Each line has the time, the request id, the endpoint, the model version, a SHA-256 of the
record's canonical content (patient_id removed, keys sorted: the same clinical content
always hashes the same), the probability (or the error rule) and the latency.
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.api.responses import dumps


def input_hash(record: dict[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k != "patient_id"}
    return hashlib.sha256(dumps(content, sort_keys=True)).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def write(self, entries: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = b"".join(dumps({"time": now, **e}) + b"\n" for e in entries)
        # one O_APPEND write per request: lines from several worker processes never interleave
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            with self._lock:
                os.write(fd, lines)
        finally:
            os.close(fd)
