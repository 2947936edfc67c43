"""The audit log: one JSON line per answered record, with no identifier and no raw record.

Each line has the time, the request id, the endpoint, the model version, a SHA-256 of the
record's canonical content (patient_id removed, keys sorted: the same clinical content
always hashes the same), the probability (or the error rule) and the latency.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def input_hash(record: dict[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k != "patient_id"}
    raw = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def write(self, entries: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = "".join(
            json.dumps({"time": now, **e}, separators=(",", ":")) + "\n" for e in entries
        )
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
