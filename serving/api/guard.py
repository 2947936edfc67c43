"""The request guard, before BentoML parses anything: the route's Content-Type (415), a body
over ``max_bytes`` (413), malformed JSON, NaN/Infinity and nesting deeper than ``max_depth``
(400; a deep body would otherwise exhaust the JSON decoder's recursion and answer 500).
BentoML's own 400 bodies are rewritten into ``ErrorBody``, and ``/docs.json`` is patched to
document it. What each path accepts comes from the route registry (``serving.api.routes``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.responses import NOT_A_LINK, error, send_json, send_page
from serving.api.routes import Routes


async def _not_found(send: Send, routes: Routes, path: str) -> None:
    """404 in the shape of the route family (a report link is opened by a browser)."""
    route = routes.find(path)
    if route is not None and route.errors == "html":
        await send_page(send, 404, NOT_A_LINK)
        return
    fhir = route is not None and route.errors == "fhir"
    await send_json(send, 404, error("no such route", "path", None, "not_found"), (), fhir)


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
        self,
        app: ASGIApp,
        routes: Routes,
        max_bytes: int = 32 * 1024 * 1024,
        max_depth: int = 32,
    ) -> None:
        self.app = app
        self.routes = routes
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
        if path in self.routes.mount_roots:  # the mount's own address, not a 307 to the slash
            scope = {**scope, "path": path + "/", "raw_path": path.encode() + b"/"}
        route = self.routes.find(scope["path"])
        if "\n" in path and route is not None and route.mount:  # mount patterns stop at \n
            await _not_found(send, self.routes, path)
            return
        accepted = route.accepts if route is not None and scope["method"] == "POST" else ()
        if not accepted:
            await self.app(scope, receive, send)
            return
        fhir = route.errors == "fhir"
        ctype = dict(scope.get("headers") or []).get(b"content-type", accepted[0])
        if ctype.split(b";")[0].strip().lower() not in accepted:
            shown = ctype.decode("latin-1")[:100]
            names = " or ".join(a.decode() for a in accepted)
            await send_json(
                send,
                415,
                error(
                    f"Content-Type {shown!r} is not accepted; send {names}",
                    "Content-Type",
                    shown,
                    "content_type",
                ),
                (),
                fhir,
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
                await send_json(
                    send,
                    413,
                    error(
                        f"the request body is larger than {self.max_bytes} bytes", "", None, "size"
                    ),
                    (),
                    fhir,
                )
                return
        problem = self._check(bytes(body))
        if problem:
            await send_json(send, 400, problem, (), fhir)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        # BentoML's own 400 bodies are rewritten; the mounted apps already answer in shape
        await self.app(scope, replay, _ErrorShape(send) if route.bentoml_api else send)

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
                    from serving.api.openapi import patch_openapi

                    spec = patch_openapi(json.loads(b"".join(chunks)), self.routes)
                    await send_json(send, 200, spec)
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
        await send_json(self.send, 400, _as_error_body(b"".join(self.chunks)))


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
