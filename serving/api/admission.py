"""Authentication and the request guard run before a request takes a concurrency slot.

BentoML adds a service's own ASGI middleware inside its ``MaxConcurrencyMiddleware``: every
request holds one of the ``max_concurrency`` slots while the bearer check and the guard
read its body. 400 callers that send headers and stall held all 256 slots, so legitimate
callers got 429 until BentoML's 10-second timeout answered the stalled ones 504 (issue 20).

``install(build)`` makes the slot-taking middleware run ``build(limited)`` first, where
``limited`` is its own slot-taking call: an unauthenticated, malformed, oversize or stalled
request is answered (401/403, 400, 413, 408) without taking a slot. The same chain is also
added the ordinary way (``Admission``), which steps aside for a request already admitted, so
that the service stays guarded when a deployment turns the concurrency limit off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

#: set in the scope of a request the chain has admitted
ADMITTED = "pe_risk.admitted"

Build = Callable[[ASGIApp], ASGIApp]


class Admission:
    """``build``'s chain, unless the request was admitted before its concurrency slot."""

    def __init__(self, app: ASGIApp, build: Build) -> None:
        self.app = app
        self.chain = build(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(ADMITTED):
            await self.app(scope, receive, send)
            return
        await self.chain(scope, receive, send)


def install(build: Build) -> None:
    """Run ``build``'s chain before BentoML's concurrency limit takes a slot (idempotent)."""
    from bentoml._internal.server.http import traffic

    cls = traffic.MaxConcurrencyMiddleware

    if getattr(cls, "_pe_risk_admission", False):
        return
    original_init, original_call = cls.__init__, cls.__call__

    def init(self: Any, app: ASGIApp, *args: Any, **kwargs: Any) -> None:
        original_init(self, app, *args, **kwargs)

        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            scope[ADMITTED] = True
            await original_call(self, scope, receive, send)

        self._pe_risk_chain = build(limited)  # built with the app: settings read now

    async def admitted_call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await original_call(self, scope, receive, send)
            return
        chain = getattr(self, "_pe_risk_chain", None)  # None: built before install()
        if chain is None:
            await original_call(self, scope, receive, send)  # Admission guards inside
            return
        await chain(scope, receive, send)

    cls.__init__ = init
    cls.__call__ = admitted_call
    cls._pe_risk_admission = True
