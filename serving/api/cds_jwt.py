"""CDS clients' signed JWTs (CDS Hooks 2.0, "Trusting CDS Clients"), verified with PyJWT.

A hospital registers its EHR by naming it in the JSON file that ``PE_RISK_CDS_ISSUERS``
points to: ``{"<iss>": {"jwks_url": "https://ehr.example/jwks.json"}}`` (keys fetched and
cached) or ``{"<iss>": {"jwks": {"keys": [...]}}}`` (keys given). With the file set, every
CDS Hooks route (discovery, service calls, feedback) needs ``Authorization: Bearer <JWT>``
from one of those issuers, and the API's own tokens do not open them. The JWT must:

- be signed with an asymmetric algorithm (RS*, ES*, PS*; ES384 and RS384 recommended):
  never ``none``, never an HMAC, which would need a shared secret;
- carry ``iss`` (a registered issuer), ``aud`` (the exact URL of the called endpoint,
  from ``PE_RISK_PUBLIC_URL``), ``exp`` (not passed), ``iat`` (not in the future) and a
  ``jti`` never seen before (kept until its ``exp`` in a small SQLite file of the state
  folder, so replicas on one machine share it).

Every refusal is a ``JwtError`` whose message says what was wrong (answered 401).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt

#: asymmetric signatures only (the specification forbids symmetric ones)
ALGORITHMS = ("RS384", "ES384", "RS256", "ES256", "RS512", "ES512", "PS256", "PS384", "PS512")
LEEWAY_S = 60  # clock skew allowed between the EHR and pe-risk


class JwtError(ValueError):
    """Why a CDS client's JWT is refused."""


def load_issuers(path: Path) -> dict[str, dict[str, Any]]:
    """The trusted issuers of ``PE_RISK_CDS_ISSUERS``, checked when the service starts.

    Raises
    ------
    ValueError
        Naming the file and the issuer whose entry is not ``{"jwks_url": ...}`` or
        ``{"jwks": {"keys": [...]}}``.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"PE_RISK_CDS_ISSUERS={path}: {exc}") from None
    if not isinstance(doc, dict) or not doc:
        raise ValueError(f'{path}: give an object of issuers, e.g. {{"https://ehr": {{...}}}}')
    for iss, entry in doc.items():
        url = entry.get("jwks_url") if isinstance(entry, dict) else None
        jwks = entry.get("jwks") if isinstance(entry, dict) else None
        ok_url = isinstance(url, str) and url.startswith(("https://", "http://"))
        ok_set = isinstance(jwks, dict) and isinstance(jwks.get("keys"), list) and jwks["keys"]
        if not (ok_url or ok_set):
            raise ValueError(
                f'{path}: issuer {iss!r} needs {{"jwks_url": "https://..."}} or '
                f'{{"jwks": {{"keys": [...]}}}}, not {entry!r:.80}'
            )
    return doc


class ReplayStore:
    """The ``jti`` values seen, each until its token expires (SQLite, shared by processes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jti (iss TEXT, jti TEXT, exp REAL, PRIMARY KEY (iss, jti))"
        )
        self._lock = threading.Lock()

    def first_use(self, iss: str, jti: str, exp: float, now: float) -> bool:
        """Record ``jti``; False when it was already used (a replay)."""
        with self._lock:
            self._db.execute("DELETE FROM jti WHERE exp < ?", (now - LEEWAY_S,))
            try:
                self._db.execute("INSERT INTO jti VALUES (?, ?, ?)", (iss, jti, exp))
            except sqlite3.IntegrityError:
                return False
            return True


class CdsJwtVerifier:
    """Checks one CDS client's JWT against the registered issuers."""

    def __init__(
        self,
        issuers: Mapping[str, Mapping[str, Any]],
        replay: ReplayStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuers = dict(issuers)
        self.replay, self.clock = replay, clock
        self._clients = {
            iss: jwt.PyJWKClient(e["jwks_url"], cache_keys=True, lifespan=300, timeout=5)
            for iss, e in self.issuers.items()
            if "jwks_url" in e
        }
        self._sets = {
            iss: jwt.PyJWKSet.from_dict(dict(e["jwks"]))
            for iss, e in self.issuers.items()
            if "jwks" in e
        }

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a valid token for the endpoint ``audience``; ``JwtError`` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise JwtError(f"not a JWT ({exc})") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise JwtError(
                f"alg {alg!r} is not accepted: sign with ES384 or RS384 (asymmetric; "
                "never 'none' or HMAC)"
            )
        iss = unverified.get("iss")
        if not isinstance(iss, str) or iss not in self.issuers:
            raise JwtError(f"iss {iss!r} is not a registered CDS client (PE_RISK_CDS_ISSUERS)")
        key = self._key(iss, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                # times are checked below against the injected clock
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                },
            )
        except jwt.InvalidAudienceError:
            raise JwtError(f"aud must be this endpoint's URL, {audience}") from None
        except jwt.PyJWTError as exc:
            raise JwtError(f"{type(exc).__name__}: {exc}") from None
        now = self.clock()
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise JwtError("exp and iat must be NumericDate seconds")
        if exp + LEEWAY_S < now:
            raise JwtError(f"the token expired at {exp:.0f} (now {now:.0f})")
        if iat - LEEWAY_S > now:
            raise JwtError(f"the token is issued in the future (iat {iat:.0f}, now {now:.0f})")
        if not self.replay.first_use(iss, str(claims["jti"]), float(exp), now):
            raise JwtError("this jti was already used: a token is good for one call")
        return claims

    def _key(self, iss: str, kid: Any) -> Any:
        try:
            if iss in self._clients:
                client = self._clients[iss]
                keys = client.get_signing_keys()
                if kid is not None:
                    return client.get_signing_key(str(kid)).key
            else:
                keys = self._sets[iss].keys
                if kid is not None:
                    return self._sets[iss][str(kid)].key
        except (jwt.PyJWKClientError, KeyError) as exc:
            raise JwtError(f"no key {kid!r} for {iss} ({exc})") from None
        if len(keys) != 1:
            raise JwtError(f"{iss} has {len(keys)} keys: the JWT header must name one (kid)")
        return keys[0].key
