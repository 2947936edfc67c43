"""Who may call: API bearer tokens, and CDS clients' signed JWTs.

With tokens configured (``PE_RISK_API_TOKEN`` / ``_FILE``), every route the registry marks
``bearer`` needs ``Authorization: Bearer <token>``: none → 401, a wrong one → 403 (compared
in constant time). Health probes are open, and a report link (a GET under
``/report-link/``) carries its own sealed credential. The CDS Hooks routes (``cds``) take the
API tokens too, until ``PE_RISK_CDS_ISSUERS`` registers CDS clients: then they need the
client's signed JWT (``serving.api.cds_jwt``, 401 otherwise) and the API tokens do not
open them."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from models.settings import Settings, get_settings
from serving.api.cds_jwt import CdsJwtVerifier, JwtError, ReplayStore, load_issuers
from serving.api.responses import error, send_json
from serving.api.routes import Routes

#: a refused caller's body is not read: the connection is not reused
_CLOSE = [(b"connection", b"close")]


def cds_verifier(settings: Settings) -> CdsJwtVerifier | None:
    """The JWT check of ``PE_RISK_CDS_ISSUERS`` (None when no CDS client is registered)."""
    if settings.cds_issuers is None:
        return None
    return CdsJwtVerifier(
        load_issuers(settings.cds_issuers), ReplayStore(settings.state_dir / "cds-jti.sqlite")
    )


class BearerAuth:
    def __init__(
        self,
        app: ASGIApp,
        routes: Routes,
        tokens: Iterable[str] | None = None,
        *,
        cds: CdsJwtVerifier | None = None,
        public_url: str | None = None,
    ) -> None:
        if tokens is None:
            settings = get_settings()
            tokens, cds, public_url = (
                settings.api_tokens,
                cds_verifier(settings),
                settings.public_url,
            )
        self.app = app
        self.routes = routes
        self.tokens = [t.encode() for t in tokens]
        self.cds, self.public_url = cds, (public_url or "").rstrip("/")

    async def _cds_client(self, scope: Scope, send: Send) -> bool:
        """Whether the call carries a valid CDS client JWT for this endpoint (else 401)."""
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        why = "a CDS client's signed JWT is required: 'Authorization: Bearer <JWT>'"
        if scheme.lower() == b"bearer" and token and self.cds is not None:
            audience = self.public_url + scope.get("path", "")
            try:
                await run_in_threadpool(self.cds.verify, token.strip().decode(), audience)
                return True
            except (JwtError, UnicodeDecodeError) as exc:
                why = f"the CDS client's JWT is refused: {exc}"
        await send_json(
            send,
            401,
            error(why, "Authorization", None, "auth"),
            [(b"www-authenticate", b'Bearer realm="pe-risk cds-services"'), *_CLOSE],
            False,
        )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the service has none: never an unguarded way in
            await send({"type": "websocket.close", "code": 1008})
            return
        path = scope.get("path", "")
        route = self.routes.find(path) if scope["type"] == "http" else None
        if route is not None and route.auth == "cds" and self.cds is not None:
            if await self._cds_client(scope, send):
                await self.app(scope, receive, send)
            return
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
                [(b"www-authenticate", b'Bearer realm="pe-risk"'), *_CLOSE],
                fhir,
            )
            return
        if not any(hmac.compare_digest(token.strip(), t) for t in self.tokens):
            await send_json(
                send,
                403,
                error("the bearer token is not valid", "Authorization", None, "auth"),
                _CLOSE,
                fhir,
            )
            return
        await self.app(scope, receive, send)
