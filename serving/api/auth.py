"""Bearer tokens: with tokens configured (``PE_RISK_API_TOKEN`` / ``_FILE``), every route
the registry marks ``bearer`` needs ``Authorization: Bearer <token>``: none → 401, a wrong
one → 403 (compared in constant time). Health probes are open, and a report link (a GET
under ``/report-link/``) carries its own sealed credential."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.responses import error, send_json
from serving.api.routes import Routes


class BearerAuth:
    def __init__(self, app: ASGIApp, routes: Routes, tokens: Iterable[str] | None = None) -> None:
        if tokens is None:
            from models.settings import get_settings

            tokens = get_settings().api_tokens
        self.app = app
        self.routes = routes
        self.tokens = [t.encode() for t in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        route = self.routes.find(path) if scope["type"] == "http" else None
        if (
            scope["type"] != "http"
            or not self.tokens
            or (route is not None and route.auth == "open")
            or (route is not None and route.auth == "link" and scope["method"] == "GET")
        ):
            await self.app(scope, receive, send)
            return
        fhir = route is not None and route.errors == "fhir"
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            await send_json(
                send,
                401,
                error(
                    "a bearer token is required: send 'Authorization: Bearer <token>'",
                    "Authorization",
                    None,
                    "auth",
                ),
                [(b"www-authenticate", b'Bearer realm="pe-risk"')],
                fhir,
            )
            return
        if not any(hmac.compare_digest(token.strip(), t) for t in self.tokens):
            await send_json(
                send,
                403,
                error("the bearer token is not valid", "Authorization", None, "auth"),
                (),
                fhir,
            )
            return
        await self.app(scope, receive, send)
