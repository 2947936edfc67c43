"""ASGI middleware around the BentoML app: bearer tokens, request guards, one error shape.

- ``BearerAuth``: when tokens are configured (``PE_RISK_API_TOKEN`` / ``_FILE``), every
  path except the health probes needs ``Authorization: Bearer <token>``: none → 401,
  a wrong one → 403 (compared in constant time).
- ``RequestGuard``: bodies over ``max_bytes`` → 413; malformed JSON, NaN/Infinity and
  nesting deeper than ``max_depth`` → 400, before BentoML parses anything (a deep body
  would otherwise exhaust the JSON decoder's recursion and answer 500). BentoML's own
  400 bodies are rewritten into ``ErrorBody``; ``/docs.json`` is patched to document it.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import numpy as np
import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH = frozenset({"/livez", "/readyz", "/healthz"})
API_ROUTES = ("/predict", "/predict_batch", "/report")
FHIR_ROUTES = ("/fhir/risk-assessment",)
CDS_PREFIX = "/cds-services/"
#: a report link carries its own sealed, expiring credential (``serving.links``): a
#: clinician's browser following a card's link has no API bearer token
SELF_AUTHENTICATED = "/report-link/"
MOUNTED = ("/fhir/", CDS_PREFIX, SELF_AUTHENTICATED)
MOUNT_ROOTS = frozenset({"/model", "/cds-services"})  # GET {base}/cds-services is discovery
_JSON_TYPES = (b"application/json",)
_FHIR_TYPES = (b"application/fhir+json", b"application/json")
_FHIR_CODE = {
    "json": "structure",
    "type": "structure",
    "depth": "too-costly",
    "size": "too-costly",
    "content_type": "not-supported",
    "auth": "security",
}


def accepted_types(path: str) -> tuple[bytes, ...] | None:
    """The Content-Types a guarded POST route takes (None: the route is not guarded)."""
    if path in API_ROUTES or path.startswith(CDS_PREFIX):
        return _JSON_TYPES
    if path in FHIR_ROUTES:
        return _FHIR_TYPES
    return None


def as_operation_outcome(body: dict[str, Any]) -> dict[str, Any]:
    """An ``ErrorBody`` as the FHIR OperationOutcome a FHIR client expects."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": _FHIR_CODE.get(d.get("rule", ""), "invalid"),
                "diagnostics": d.get("message") or body.get("error", ""),
                **({"expression": [d["field"]]} if d.get("field") else {}),
            }
            for d in body.get("detail") or [{}]
        ],
    }


def dumps(body: Any, *, sort_keys: bool = False) -> bytes:
    """JSON bytes, fast (orjson); integers beyond 64 bits (valid JSON a client may send and
    an error may echo) fall back to the standard library rather than failing."""
    try:
        return orjson.dumps(body, default=str, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        return json.dumps(
            body, default=str, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":")
        ).encode()


async def _json(
    send: Send, status: int, body: dict[str, Any], headers: Iterable = (), path: str = ""
) -> None:
    """Send an error body: ``ErrorBody`` JSON, or an OperationOutcome on the FHIR routes."""
    ctype = b"application/json"
    if path.startswith("/fhir/"):
        body, ctype = as_operation_outcome(body), b"application/fhir+json"
    raw = dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(raw)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def error(message: str, field: str = "", value: Any = None, rule: str = "json") -> dict[str, Any]:
    return {
        "error": message,
        "detail": [{"field": field, "value": value, "rule": rule, "message": message}],
    }


def html_page(text: str) -> str:
    """The minimal page a browser gets for a report link that does not open."""
    return f"<!doctype html><html lang=en><meta charset=utf-8><title>pe-risk</title><p>{text}</p></html>"


NOT_A_LINK = "This is not a valid pe-risk report link."


def json_response(
    body: Any, status: int = 200, media_type: str = "application/json", *, release: bool = False
) -> Response:
    """A JSON answer serialised once with ``dumps`` (orjson). The API annotations still
    document the response models; tests validate answers against them, so the hot path
    does not rebuild them. ``release`` frees a large ``body`` (a dict) after the answer is
    sent instead of before: a 1,000-record batch is ~50,000 dicts, a few milliseconds of
    deallocation the client need not wait for."""
    raw = dumps(body)
    after = BackgroundTask(body.clear) if release else None
    return Response(raw, status_code=status, media_type=media_type, background=after)


async def _not_found(send: Send, path: str) -> None:
    """404 in the shape of the route family (a report link is opened by a browser)."""
    if path.startswith(SELF_AUTHENTICATED):
        page = html_page(NOT_A_LINK).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": page})
        return
    await _json(send, 404, error("no such route", "path", None, "not_found"), (), path)


class BearerAuth:
    def __init__(self, app: ASGIApp, tokens: Iterable[str] | None = None) -> None:
        if tokens is None:
            from models.settings import get_settings

            tokens = get_settings().api_tokens
        self.app = app
        self.tokens = [t.encode() for t in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.tokens
            or path in HEALTH
            or (path.startswith(SELF_AUTHENTICATED) and scope["method"] == "GET")
        ):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            await _json(
                send,
                401,
                error(
                    "a bearer token is required: send 'Authorization: Bearer <token>'",
                    "Authorization",
                    None,
                    "auth",
                ),
                [(b"www-authenticate", b'Bearer realm="pe-risk"')],
                path,
            )
            return
        if not any(hmac.compare_digest(token.strip(), t) for t in self.tokens):
            await _json(
                send,
                403,
                error("the bearer token is not valid", "Authorization", None, "auth"),
                (),
                path,
            )
            return
        await self.app(scope, receive, send)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # linear: no nested quantifier backtracks


def _depth_exceeds(body: bytes, limit: int) -> bool:
    """True when JSON arrays/objects nest deeper than ``limit`` (brackets in strings ignored).

    Vectorised, so a 32 MiB body costs milliseconds (the decoder would otherwise recurse
    into a deep body): a bracket is inside a string when an odd number of quotes precede
    it. Escaped quotes break that count, so a body with backslashes has its strings
    blanked by one regex pass first.
    """
    if b"\\" in body:
        body = _JSON_STRING.sub(b'""', body)
    a = np.frombuffer(body, dtype=np.uint8)
    quote = a == 0x22
    opening = (a == 0x5B) | (a == 0x7B)
    closing = (a == 0x5D) | (a == 0x7D)
    at = np.flatnonzero(quote | opening | closing)  # the few bytes that matter, in order
    outside = (np.cumsum(quote[at]) & 1) == 0
    step = opening[at].astype(np.int32) - closing[at]
    return bool(at.size) and int(np.cumsum(step * outside).max()) > limit


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON; send a number or null")


class RequestGuard:
    def __init__(
        self, app: ASGIApp, max_bytes: int = 32 * 1024 * 1024, max_depth: int = 32
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/docs.json":
            await self._patched_spec(scope, receive, send)
            return
        path = scope["path"]
        if path in MOUNT_ROOTS:  # the mount's own address, not a 307 to the trailing slash
            scope = {**scope, "path": path + "/", "raw_path": path.encode() + b"/"}
        if "\n" in path and path.startswith(MOUNTED):  # the mounts' path pattern stops at \n
            await _not_found(send, path)
            return
        accepted = accepted_types(path) if scope["method"] == "POST" else None
        if accepted is None:
            await self.app(scope, receive, send)
            return
        ctype = dict(scope.get("headers") or []).get(b"content-type", accepted[0])
        if ctype.split(b";")[0].strip().lower() not in accepted:
            shown = ctype.decode("latin-1")[:100]
            names = " or ".join(a.decode() for a in accepted)
            await _json(
                send,
                415,
                error(
                    f"Content-Type {shown!r} is not accepted; send {names}",
                    "Content-Type",
                    shown,
                    "content_type",
                ),
                (),
                path,
            )
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await _json(
                    send,
                    413,
                    error(
                        f"the request body is larger than {self.max_bytes} bytes", "", None, "size"
                    ),
                    (),
                    path,
                )
                return
        problem = self._check(bytes(body))
        if problem:
            await _json(send, 400, problem, (), path)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        # BentoML's own 400 bodies are rewritten; the mounted apps already answer in shape
        await self.app(scope, replay, _ErrorShape(send) if path in API_ROUTES else send)

    def _check(self, body: bytes) -> dict[str, Any] | None:
        if not body.strip():
            return error("the request body is empty; send a JSON object")
        if _depth_exceeds(body, self.max_depth):
            return error(f"the JSON nests deeper than {self.max_depth} levels", "", None, "depth")
        try:  # orjson is ~8× faster; it refuses NaN and integers beyond 64 bits, so the
            doc = orjson.loads(body)  # standard library judges what it refuses
        except orjson.JSONDecodeError:
            try:
                doc = json.loads(body, parse_constant=_reject_constant)
            except ValueError as exc:  # JSONDecodeError, bad UTF-8, NaN/Infinity
                return error(f"the body is not valid JSON: {exc}")
        if not isinstance(doc, dict):
            return error(
                f"the body must be a JSON object, not {type(doc).__name__}", "", None, "type"
            )
        return None

    async def _patched_spec(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        start: dict[str, Any] = {}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))
                if not message.get("more_body") and start.get("status") == 200:
                    from serving.openapi import patch_openapi

                    spec = patch_openapi(json.loads(b"".join(chunks)))
                    await _json(send, 200, spec)
                elif not message.get("more_body"):
                    await send(start)
                    await send({"type": "http.response.body", "body": b"".join(chunks)})

        await self.app(scope, receive, capture)


class _ErrorShape:
    """Rewrite BentoML's own 400 bodies ({error, detail: [pydantic errors]}) into ``ErrorBody``."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if message["status"] == 400:
                self.start = message
                return
            await self.send(message)
            return
        if self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        await _json(self.send, 400, _as_error_body(b"".join(self.chunks)))


def _as_error_body(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return error(raw.decode(errors="replace")[:500])
    if isinstance(doc, list | tuple) and doc:
        doc = doc[0]
    if not isinstance(doc, dict):
        return error(str(doc)[:500])
    detail = doc.get("detail")
    items = []
    if isinstance(detail, list):
        for d in detail:
            if isinstance(d, dict) and "loc" in d:
                loc = [str(p) for p in d.get("loc", []) if p not in ("body",)]
                items.append(
                    {
                        "field": ".".join(loc),
                        "value": None,
                        "rule": str(d.get("type", "invalid")),
                        "message": f"{'.'.join(loc) or 'body'}: {d.get('msg', '')}",
                    }
                )
    message = str(doc.get("error", "invalid request"))
    return {"error": message, "detail": items or error(message)["detail"]}
