"""The service's answers as bytes: JSON serialised once (orjson), the one error shape
(``ErrorBody``, or an OperationOutcome on the FHIR routes), and the page a browser gets."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Send

_FHIR_CODE = {
    "json": "structure",
    "type": "structure",
    "depth": "too-costly",
    "size": "too-costly",
    "content_type": "not-supported",
    "auth": "security",
}
NOT_A_LINK = "This is not a valid pe-risk report link."


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


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: Iterable = (), fhir: bool = False
) -> None:
    """Send a JSON body from ASGI middleware; with ``fhir``, an ``ErrorBody`` goes as the
    OperationOutcome a FHIR client expects."""
    ctype = b"application/json"
    if fhir:
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


async def send_page(send: Send, status: int, text: str) -> None:
    """Send the minimal HTML page of ``html_page``."""
    page = html_page(text).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": page})


def error(message: str, field: str = "", value: Any = None, rule: str = "json") -> dict[str, Any]:
    return {
        "error": message,
        "detail": [{"field": field, "value": value, "rule": rule, "message": message}],
    }


def html_page(text: str) -> str:
    """The minimal page a browser gets for a report link that does not open."""
    return f"<!doctype html><html lang=en><meta charset=utf-8><title>pe-risk</title><p>{text}</p></html>"


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


#: the API's documentation page: BentoML's Swagger UI, served from its own static files,
#: without the Google Tag Manager frame BentoML's page loads (an offline hospital network
#: cannot reach it, and it tells a third party who reads the documentation)
DOCS_PAGE = """<!doctype html><html lang=en><head><meta charset=utf-8><title>pe-risk API</title>
<link rel=stylesheet href="./static_content/swagger-ui.css">
<link rel=stylesheet href="./static_content/index.css"></head>
<body><div id=swagger-ui></div>
<script src="./static_content/swagger-ui-bundle.js"></script>
<script src="./static_content/swagger-ui-standalone-preset.js"></script>
<script src="./static_content/swagger-initializer.js"></script></body></html>"""
#: nothing but this server's own files (the UI sets inline styles and shows data: images)
DOCS_POLICY = b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"


async def send_docs_page(send: Send) -> None:
    page = DOCS_PAGE.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
                (b"content-security-policy", DOCS_POLICY),
            ],
        }
    )
    await send({"type": "http.response.body", "body": page})
