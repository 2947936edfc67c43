"""Every HTTP route of the service, declared once: what it accepts, how it answers errors,
how it is authenticated.

The BentoML APIs declare their paths with ``@bentoml.api(route=...)``; the mounted ASGI
apps declare theirs beside the app (``serving.interop.routes.MOUNTS``, ``/model`` in
``serving.service``). ``registry`` puts both in one table, which the bearer check, the
request guard, the error shaping and the OpenAPI patch all read: a new API or mount gets
its Content-Type guard, its error shape and its authentication from being declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

JSON_BODY = (b"application/json",)
FHIR_BODY = (b"application/fhir+json", b"application/json")
HEALTH = ("/livez", "/readyz", "/healthz")


@dataclass(frozen=True, slots=True)
class Route:
    """One route, or with ``mount`` every path under a mounted app (``path`` ends in "/")."""

    path: str
    accepts: tuple[bytes, ...] = ()  # Content-Types of a POST body; () = no body is read
    errors: str = "json"  # json: ErrorBody; fhir: an OperationOutcome; html: a page
    #: bearer; open (health probes); link (a GET carrying its own credential); cds (a CDS
    #: client's signed JWT once PE_RISK_CDS_ISSUERS is set, the bearer tokens until then)
    auth: str = "bearer"
    mount: bool = False
    root_answers: bool = False  # a mount whose own address (no trailing slash) answers too
    bentoml_api: bool = False  # a @bentoml.api route: BentoML's own 400s are rewritten
    fields: tuple[str, ...] = ()  # a @bentoml.api route's body fields, named in its 400s

    def matches(self, path: str) -> bool:
        if not self.mount:
            return path == self.path
        return path.startswith(self.path) or (self.root_answers and path == self.path[:-1])


class Routes:
    """The registry: ``find`` the route of a request path."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._exact = {r.path: r for r in self.routes if not r.mount}
        self._mounts = tuple(r for r in self.routes if r.mount)
        self.mount_roots = frozenset(r.path.rstrip("/") for r in self._mounts if r.root_answers)
        self.api_paths = frozenset(r.path for r in self.routes if r.bentoml_api)

    def find(self, path: str) -> Route | None:
        exact = self._exact.get(path)
        if exact is not None:
            return exact
        return next((r for r in self._mounts if r.matches(path)), None)


def registry(apis: Iterable[tuple[str, Iterable[str]]], mounts: Iterable[Route]) -> Routes:
    """The health probes, the BentoML APIs (path and body fields; JSON bodies) and the
    mounted apps."""
    return Routes(
        [
            *(Route(p, auth="open") for p in HEALTH),
            *(Route(p, accepts=JSON_BODY, bentoml_api=True, fields=tuple(f)) for p, f in apis),
            *mounts,
        ]
    )
