"""The audit log: one JSON line per answered record, with no identifier and no raw record.

Each line has the time, the request id, the endpoint, the model version, a SHA-256 of the
record's canonical content (patient_id removed, keys sorted: the same clinical content
always hashes the same), the probability (or the error rule) and the latency.

No answer leaves without its line: when the log cannot be written (disk full, permissions,
a directory in its place) ``write`` raises ``AuditUnavailable`` naming the file and the
cause, the endpoints answer 503 with that text, and ``problem`` makes ``/readyz`` fail
until the log can be written again (issue 20).
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.api.responses import dumps

#: below this much free space the log is reported unwritable before a write fails
MIN_FREE_BYTES = 1024 * 1024


def input_hash(record: dict[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k != "patient_id"}
    return hashlib.sha256(dumps(content, sort_keys=True)).hexdigest()


class AuditUnavailable(RuntimeError):  # noqa: N818 (a state the caller answers 503, not a bug)
    """The audit log cannot be written: no answer is given (503)."""


def _unavailable(path: Path, cause: str) -> AuditUnavailable:
    return AuditUnavailable(
        f"the audit log {path} cannot be written ({cause}); pe-risk gives no answer without "
        "its audit line: free disk space or make the file writable, and retry"
    )


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def write(self, entries: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = b"".join(dumps({"time": now, **e}) + b"\n" for e in entries)
        try:
            # one O_APPEND write per request: lines from several workers never interleave
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                with self._lock:
                    written = os.write(fd, lines)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _unavailable(self.path, exc.strerror or type(exc).__name__) from exc
        if written != len(lines):  # a short write: the disk filled during it
            raise _unavailable(self.path, f"{written} of {len(lines)} bytes written")

    def problem(self) -> str | None:
        """Why the log cannot be written now (the file cannot be opened for appending, or
        its disk has less than ``MIN_FREE_BYTES`` free), else None."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
            free = os.statvfs(self.path.parent)
        except OSError as exc:
            return str(_unavailable(self.path, exc.strerror or type(exc).__name__))
        if free.f_bavail * free.f_frsize < MIN_FREE_BYTES:
            return str(_unavailable(self.path, "its disk is full"))
        return None
