"""The request guard, before BentoML parses anything: the route's Content-Type (415), a body
over ``max_bytes`` (413), malformed JSON, NaN/Infinity and nesting deeper than ``max_depth``
(400; a deep body would otherwise exhaust the JSON decoder's recursion and answer 500).
BentoML's own 400 bodies are rewritten into ``ErrorBody``, and ``/docs.json`` is patched to
document it. What each path accepts comes from the route registry (``serving.api.routes``).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from models.settings import get_settings
from serving.api.responses import NOT_A_LINK, error, send_docs_page, send_json, send_page
from serving.api.routes import Routes
from serving.api.schemas import MAX_ITEMS, MAX_MEMBERS


async def _not_found(send: Send, routes: Routes, path: str) -> None:
    """404 in the shape of the route family (a report link is opened by a browser)."""
    route = routes.find(path)
    if route is not None and route.errors == "html":
        await send_page(send, 404, NOT_A_LINK)
        return
    fhir = route is not None and route.errors == "fhir"
    await send_json(send, 404, error("no such route", "path", None, "not_found"), (), fhir)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # linear: no nested quantifier backtracks


def scan(body: bytes) -> tuple[int, int]:
    """The deepest nesting of arrays and objects in a JSON body, and its object members in
    all (one ``:`` each), read from the bytes before parsing (brackets and colons inside
    strings ignored).

    Vectorised, so a 32 MiB body costs milliseconds (the decoder would otherwise recurse
    into a deep body): a byte is inside a string when an odd number of quotes precede it.
    Escaped quotes break that count, so a body with backslashes has its strings blanked by
    one regex pass first.
    """
    if b"\\" in body:
        body = _JSON_STRING.sub(b'""', body)
    a = np.frombuffer(body, dtype=np.uint8)
    quote = a == 0x22
    opening = (a == 0x5B) | (a == 0x7B)
    closing = (a == 0x5D) | (a == 0x7D)
    colon = a == 0x3A
    at = np.flatnonzero(quote | opening | closing | colon)  # the few bytes that matter, in order
    outside = (np.cumsum(quote[at]) & 1) == 0
    step = opening[at].astype(np.int32) - closing[at]
    depth = int(np.cumsum(step * outside).max(initial=0))
    return depth, int(np.count_nonzero(colon[at] & outside))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON; send a number or null")


_CONTAINERS = (dict, list)


def _census(doc: dict[str, Any]) -> tuple[int, bool]:
    """The parsed body's object members in all, and whether an object has more than
    ``MAX_MEMBERS`` members or an array more than ``MAX_ITEMS`` items (one pass, no paths:
    a 10,000-record batch costs ~20 ms; ``_name_too_wide`` names the culprit)."""
    members, too_wide = 0, False
    stack: list[Any] = [doc]
    while stack:
        value = stack.pop()
        if type(value) is dict:
            members += len(value)
            too_wide |= len(value) > MAX_MEMBERS
            stack.extend([v for v in value.values() if type(v) in _CONTAINERS])
        else:
            too_wide |= len(value) > MAX_ITEMS
            stack.extend([v for v in value if type(v) in _CONTAINERS])
    return members, too_wide


def _walk(doc: Any, at: str = "") -> Iterator[tuple[str, Any]]:
    """Every value of a parsed body with its path (``patients[3].d_dimer.unit``)."""
    yield at, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _walk(v, f"{at}.{k}" if at else str(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _walk(v, f"{at}[{i}]")


def _name_too_wide(doc: dict[str, Any]) -> dict[str, Any]:
    for at, value in _walk(doc):
        where = at or "the body"
        if isinstance(value, dict) and len(value) > MAX_MEMBERS:
            return error(
                f"{where}: {len(value)} members in one object; at most {MAX_MEMBERS} are read "
                "(a patient record has fewer than 60 fields)",
                at,
                None,
                "size",
            )
        if isinstance(value, list) and len(value) > MAX_ITEMS:
            return error(
                f"{where}: {len(value)} items in one array; at most {MAX_ITEMS} are read "
                "in one request: split it",
                at,
                None,
                "size",
            )
    return error(
        f"an object or array is wider than {MAX_MEMBERS} members or {MAX_ITEMS} items",
        "",
        None,
        "size",
    )


def _name_duplicate(body: bytes) -> dict[str, Any]:
    def refuse_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                raise _DuplicateKeyError(k, seen[k], v)
            seen[k] = v
        return seen

    try:
        json.loads(body.decode("utf-8", "replace"), object_pairs_hook=refuse_twice)
    except _DuplicateKeyError as dup:
        first, last = (json.dumps(v, default=str)[:40] for v in (dup.first, dup.last))
        return error(
            f"{dup.key!r} is sent twice in one object ({first}, then {last}); send each "
            "field once: which one was meant is not guessed",
            dup.key,
            None,
            "duplicate",
        )
    return error("the body's objects do not read consistently; send each key once, in UTF-8")


class _DuplicateKeyError(Exception):
    def __init__(self, key: str, first: Any, last: Any) -> None:
        self.key, self.first, self.last = key, first, last


def _lone_surrogate(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A key or text holding a lone UTF-16 surrogate (``"\\ud800"``): valid JSON escapes,
    but not Unicode text, so no answer, log line or hash could carry it."""
    for at, value in _walk(doc):
        texts = (
            [value] if isinstance(value, str) else list(value) if isinstance(value, dict) else []
        )
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                shown = text.encode("utf-8", "backslashreplace").decode()[:60]
                return error(
                    f'{at or "the body"}: "{shown}" holds a lone UTF-16 surrogate, which is '
                    "not Unicode text; send text as UTF-8",
                    at,
                    None,
                    "text",
                )
    return None


_CLOSE = [(b"connection", b"close")]  # after a refused body: none of it is read further
_CHECK_INLINE_BYTES = 256 * 1024


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        routes: Routes,
        max_bytes: int = 32 * 1024 * 1024,
        max_depth: int = 32,
        body_timeout_s: float | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        if body_timeout_s is None:
            body_timeout_s = get_settings().body_timeout_s
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/docs.json":
            await self._patched_spec(scope, receive, send)
            return
        if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            await send_docs_page(send)
            return
        path = scope["path"]
        if path in self.routes.mount_roots:  # the mount's own address, not a 307 to the slash
            scope = {**scope, "path": path + "/", "raw_path": path.encode() + b"/"}
        route = self.routes.find(scope["path"])
        if "\n" in path and route is not None and route.mount:  # mount patterns stop at \n
            await _not_found(send, self.routes, path)
            return
        if route is not None and route.bentoml_api and scope["method"] != "POST":
            allowed = "POST"
            text = f"{scope['method'][:10]} is not accepted on {route.path}; send {allowed}"
            await send_json(
                send, 405, error(text, "method", None, "method"), [(b"allow", allowed.encode())]
            )
            return
        accepted = route.accepts if route is not None and scope["method"] == "POST" else ()
        if not accepted:
            await self.app(scope, receive, send)
            return
        fhir = route.errors == "fhir"
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", accepted[0])
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
                _CLOSE,
                fhir,
            )
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:  # refused before reading
            await self._too_large(send, fhir)
            return
        read = await self._read_body(receive, send, fhir)
        if read is None:
            return
        body = bytes(read)
        # a large body's checks take milliseconds to a second: off the event loop, which
        # keeps reading other bodies, answering probes and timing out stalled callers
        big = len(body) > _CHECK_INLINE_BYTES
        refused = await run_in_threadpool(self._check, body) if big else self._check(body)
        if refused:
            await send_json(send, *refused, (), fhir)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        # BentoML's own 400 bodies are rewritten; the mounted apps already answer in shape
        shaped = _ErrorShape(send, body, route.fields) if route.bentoml_api else send
        await self.app(scope, replay, shaped)

    async def _too_large(self, send: Send, fhir: bool) -> None:
        text = f"the request body is larger than {self.max_bytes} bytes"
        await send_json(send, 413, error(text, "", None, "size"), _CLOSE, fhir)

    async def _read_body(self, receive: Receive, send: Send, fhir: bool) -> bytearray | None:
        """The whole body, or None once the caller is answered: 413 past ``max_bytes``, 408
        when no part of it arrives for ``body_timeout_s`` (a caller that sends headers and
        stalls holds a coroutine, never a worker thread or a concurrency slot, and is then
        disconnected)."""
        body = bytearray()
        more = True
        loop = asyncio.get_running_loop()
        try:
            # one timer, not a task per read, moved on by every chunk: a body may take
            # as long as it needs while it keeps arriving; a pause longer than the
            # timeout ends it
            async with asyncio.timeout(self.body_timeout_s) as idle:
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    idle.reschedule(loop.time() + self.body_timeout_s)
                    if len(body) > self.max_bytes:
                        await self._too_large(send, fhir)
                        return None
        except TimeoutError:
            text = f"the request body stopped arriving for {self.body_timeout_s:g} s"
            await send_json(send, 408, error(text, "", None, "timeout"), _CLOSE, fhir)
            return None
        return body

    def _check(self, body: bytes) -> tuple[int, dict[str, Any]] | None:
        """The status and error body of a body this guard refuses, else None."""
        if not body.strip():
            return 400, error("the request body is empty; send a JSON object")
        depth, members = scan(body)
        if depth > self.max_depth:
            return 400, error(
                f"the JSON nests deeper than {self.max_depth} levels", "", None, "depth"
            )
        try:  # orjson is ~8× faster; it refuses NaN, lone surrogates and integers beyond 64
            doc = orjson.loads(body)  # bits (as floats, imprecisely), so the standard library
            text_checked = True  # judges what it refuses
        except orjson.JSONDecodeError:
            try:  # UTF-8 only: the standard library would also read UTF-16 and UTF-32
                doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
            except ValueError as exc:  # JSONDecodeError, not UTF-8, a BOM, NaN/Infinity
                return 400, error(f"the body is not valid JSON in UTF-8: {exc}")
            text_checked = False  # the standard library keeps a lone surrogate ("\ud800")
        if not isinstance(doc, dict):
            return 400, error(
                f"the body must be a JSON object, not {type(doc).__name__}", "", None, "type"
            )
        parsed, too_wide = _census(doc)  # first: the walks below cost in proportion
        if too_wide:
            return 413, _name_too_wide(doc)
        if not text_checked and (problem := _lone_surrogate(doc)):
            return 400, problem
        if parsed != members:  # a key sent twice keeps only its last value
            return 400, _name_duplicate(body)
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

    def __init__(self, send: Send, request: bytes, fields: tuple[str, ...]) -> None:
        self.send = send
        self.request, self.fields = request, fields
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
        body = _as_error_body(b"".join(self.chunks), self.request, self.fields)
        await send_json(self.send, 400, body)


def _sent(request: Any, loc: list[str]) -> Any:
    """The value the caller sent at ``loc``, when it is a short scalar (echoed in the error)."""
    value = request
    for part in loc:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, str):
        return value[:100]
    return value if isinstance(value, int | float | bool) else None


def _as_error_body(raw: bytes, request: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """BentoML's 400 as ``ErrorBody``: each problem with its field, the value sent and what
    is accepted, and the problem itself as the error (not "1 validation error for
    BatchRequestIODescriptor")."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return error(raw.decode(errors="replace")[:500])
    if isinstance(doc, list | tuple) and doc:
        doc = doc[0]
    if not isinstance(doc, dict):
        return error(str(doc)[:500])
    try:
        sent = orjson.loads(request)
    except orjson.JSONDecodeError:
        sent = None
    items = []
    for d in doc.get("detail") if isinstance(doc.get("detail"), list) else []:
        if not (isinstance(d, dict) and "loc" in d):
            continue
        loc = [str(p) for p in d.get("loc", []) if p not in ("body",)]
        at = ".".join(loc)
        rule = str(d.get("type", "invalid"))
        message = f"{at or 'body'}: {d.get('msg', '')}"
        if rule == "extra_forbidden" and len(loc) == 1 and fields:
            near = difflib.get_close_matches(loc[0], fields, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            message = f"{at}: not a field of this request (send {', '.join(fields)}){hint}"
        items.append({"field": at, "value": _sent(sent, loc), "rule": rule, "message": message})
    if not items:
        return error(str(doc.get("error", "invalid request")))
    head = (
        items[0]["message"]
        if len(items) == 1
        else f"{len(items)} problems: " + "; ".join(i["message"] for i in items[:3])
    )
    return {"error": head, "detail": items}
