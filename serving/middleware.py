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

from serving.schemas import ErrorBody

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH = frozenset({"/livez", "/readyz", "/healthz"})
API_ROUTES = ("/predict", "/predict_batch", "/report")


def dumps(body: Any, *, sort_keys: bool = False) -> bytes:
    """JSON bytes, fast (orjson); integers beyond 64 bits (valid JSON a client may send and
    an error may echo) fall back to the standard library rather than failing."""
    try:
        return orjson.dumps(body, default=str, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        return json.dumps(
            body, default=str, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":")
        ).encode()


async def _json(send: Send, status: int, body: dict[str, Any], headers: Iterable = ()) -> None:
    raw = dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
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


class BearerAuth:
    def __init__(self, app: ASGIApp, tokens: Iterable[str] | None = None) -> None:
        if tokens is None:
            from models.settings import get_settings

            tokens = get_settings().api_tokens
        self.app = app
        self.tokens = [t.encode() for t in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in HEALTH:
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
            )
            return
        if not any(hmac.compare_digest(token.strip(), t) for t in self.tokens):
            await _json(
                send, 403, error("the bearer token is not valid", "Authorization", None, "auth")
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
    outside = (np.cumsum(a == 0x22) & 1) == 0
    step = ((a == 0x5B) | (a == 0x7B)).astype(np.int32) - ((a == 0x5D) | (a == 0x7D))
    return bool(a.size) and int(np.cumsum(step * outside).max()) > limit


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
        if scope["method"] != "POST" or scope["path"] not in API_ROUTES:
            await self.app(scope, receive, send)
            return
        ctype = dict(scope.get("headers") or []).get(b"content-type", b"application/json")
        if ctype.split(b";")[0].strip().lower() != b"application/json":
            shown = ctype.decode("latin-1")[:100]
            await _json(
                send,
                415,
                error(
                    f"Content-Type {shown!r} is not accepted; send application/json",
                    "Content-Type",
                    shown,
                    "content_type",
                ),
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
                )
                return
        problem = self._check(bytes(body))
        if problem:
            await _json(send, 400, problem)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, _ErrorShape(send))

    def _check(self, body: bytes) -> dict[str, Any] | None:
        if not body.strip():
            return error("the request body is empty; send a JSON object")
        if _depth_exceeds(body, self.max_depth):
            return error(f"the JSON nests deeper than {self.max_depth} levels", "", None, "depth")
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


def _nullable_defaults(node: Any) -> None:
    """OpenAPI 3.0 needs ``nullable: true`` where pydantic's ``X | None = None`` lost it."""
    if isinstance(node, dict):
        if (
            "default" in node
            and node["default"] is None
            and ("type" in node or "$ref" in node or "allOf" in node)
        ):
            node["nullable"] = True
            if "$ref" in node:  # siblings of $ref are ignored in 3.0: wrap it
                node["allOf"] = [{"$ref": node.pop("$ref")}]
        for value in node.values():
            _nullable_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_defaults(value)


def patch_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Document ``ErrorBody`` for every client error the API routes can return."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    body_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in body_schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["ErrorBody"] = body_schema
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    texts = {
        "400": "malformed request (not JSON, NaN/Infinity, too deep, wrong shape)",
        "401": "bearer token required",
        "403": "bearer token not valid",
        "413": "request body too large",
        "415": "Content-Type is not application/json",
        "422": "the record breaks the data contract (field, value, rule named)",
    }
    for schema in schemas.values():
        _nullable_defaults(schema)
    for path, item in spec.get("paths", {}).items():
        for method in item.values():
            if not isinstance(method, dict) or "responses" not in method:
                continue
            if path in API_ROUTES or path == "/model":
                for code, text in texts.items():
                    method["responses"][code] = {"description": text, "content": ref}
            if path == "/report":  # the page, not BentoML's default text/plain
                method["responses"]["200"] = {
                    "description": "the one-page report: self-contained HTML",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
    return spec
