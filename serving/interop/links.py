"""Report links for CDS Hooks cards: the record sealed into the URL, nothing stored.

A card's link must be a plain GET URL a clinician's browser opens, while the service
stays stateless (any replica answers). The link therefore carries the record itself,
compressed and sealed with Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp):
proxies and logs see only ciphertext, a changed token fails its HMAC, and a link older
than ``PE_RISK_LINK_TTL`` seconds no longer opens. The key comes from
``PE_RISK_LINK_KEY`` (set the same key on every replica) or is created once, readable by
the owner only, in the state folder.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from models.settings import Settings


class LinkError(ValueError):
    """A link that does not open: ``expired`` tells a stale link from a forged one."""

    def __init__(self, expired: bool) -> None:
        self.expired = expired
        super().__init__("the report link has expired" if expired else "not a report link")


def link_key(settings: Settings) -> bytes:
    """The Fernet key: from the settings, else ``<state>/link.key`` (created once, 0600)."""
    if settings.link_key:
        return settings.link_key.encode()
    path: Path = settings.state_dir / "link.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of several workers starting together, one writes and the others read
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class ReportLinks:
    """Seal and open report links; ``clock`` (seconds since the epoch) dates a link when it
    is sealed and ages it when it is opened, so that a test chooses the time."""

    def __init__(self, key: bytes, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._fernet = Fernet(key)
        self.ttl_s = ttl_s
        self.clock = clock

    def seal(self, record: dict[str, Any]) -> str:
        data = zlib.compress(orjson.dumps(record))
        return self._fernet.encrypt_at_time(data, int(self.clock())).decode()

    def open(self, token: str) -> dict[str, Any]:
        """The record sealed in ``token``.

        Raises
        ------
        LinkError
            When the token is forged, damaged or older than the time to live.
        """
        try:
            raw = self._fernet.decrypt_at_time(token.encode(), self.ttl_s, int(self.clock()))
        except InvalidToken:
            try:  # the same token without the age check tells expired from forged
                self._fernet.decrypt(token.encode())
            except (InvalidToken, ValueError):
                raise LinkError(expired=False) from None
            raise LinkError(expired=True) from None
        return orjson.loads(zlib.decompress(raw))
