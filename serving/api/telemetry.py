"""What the server tells its operators: metrics labelled by route template, an access log
without report-link tokens and an error log without request values (issue 20).

BentoML labels its request metrics (``bentoml_service_request_total``, ``_duration``,
``_in_progress``) with the raw request path. Two consequences: every opened report link
(``/report-link/<token>``, a credential that opens a patient's report) was listed in
``GET /metrics`` and in the multiprocess metric files; and every distinct path a caller
invents became a new series (2,000 random paths grew ``/metrics`` from 0.5 to 9.1 MB).

``install(routes)`` wraps BentoML's ``HTTPTrafficMetricsMiddleware`` and
``RunnerTrafficMetricsMiddleware`` so that they see the request's route template instead: a declared route's own path, a mounted app's prefix
followed by ``*`` (``/report-link/*``, ``/cds-services/*``), BentoML's own pages by their
path, and ``other`` for anything else. The app below it still gets the real path. The
label set is therefore bounded by the route registry (``serving.api.routes``).

``scrub_logs()`` does the same for BentoML's access log (logger ``bentoml.access``),
which wrote every request's path: a report link's token becomes ``*`` before the record is
formatted; and it keeps the values of a request BentoML's model refuses out of BentoML's
error log, whose pydantic traceback quoted them (patient_id included).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from serving.api.routes import Routes

#: BentoML's own paths (documentation, metrics, health), labelled as themselves
BENTOML_PATHS = frozenset({"/", "/docs.json", "/metrics", "/livez", "/readyz", "/healthz"})
OTHER = "other"


def template(routes: Routes, path: str) -> str:
    """The label of a request path: its route, a mount's prefix + ``*``, or ``other``."""
    if path in BENTOML_PATHS:
        return path
    route = routes.find(path)
    if route is None:
        return OTHER
    return f"{route.path}*" if route.mount and path != route.path.rstrip("/") else route.path


class _Labelled:
    """The metrics middleware as seen for one request: its own state, and an ``app`` that
    forwards the request with its real path."""

    def __init__(self, middleware: Any, scope: dict[str, Any]) -> None:
        self._middleware = middleware
        real_app = middleware.app

        async def app(_scope: Any, receive: Any, send: Any) -> None:
            await real_app(scope, receive, send)

        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._middleware, name)


def install(routes: Routes) -> None:
    """Make BentoML's request metrics label requests by route template (idempotent): the
    HTTP traffic middleware and, in BentoML 1.4 services, the runner traffic middleware,
    which labels by path too."""
    from bentoml._internal.server.http import instruments

    for cls in (
        instruments.HTTPTrafficMetricsMiddleware,
        instruments.RunnerTrafficMetricsMiddleware,
    ):
        _label_by_template(cls, routes)


def _label_by_template(cls: Any, routes: Routes) -> None:
    if getattr(cls, "_pe_risk_labels", False):
        return
    original = cls.__call__

    async def labelled_call(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not scope["type"].startswith(("http", "websocket")):
            await original(self, scope, receive, send)
            return
        if not self._is_setup:
            self._setup()
        labelled = {**scope, "path": template(routes, scope["path"])}
        await original(_Labelled(self, scope), labelled, receive, send)

    cls.__call__ = labelled_call
    cls._pe_risk_labels = True


#: a report link's token in a logged path (``serving.interop.links``)
_LINK = re.compile(r"(/report-link/)[^\s,)]+")


class _ScrubLinks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _LINK.sub(r"\1*", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _LINK.sub(r"\1*", record.msg)
        return True


class _NoInputValues(logging.Filter):
    """BentoML logs the traceback of a request its model refuses, and pydantic's message
    quotes the input (``input_value={'patient_id': 'MRN7731', ...}``): the record becomes
    one line with the number and kinds of the errors, which the caller already has."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None and not isinstance(exc, ValidationError):  # or what it caused
            exc = exc.__cause__ or exc.__context__
        if isinstance(exc, ValidationError):
            kinds = sorted({e["type"] for e in exc.errors(include_input=False)})
            record.msg = (
                f"{record.msg} (%d validation errors: %s; the request's values are not logged)"
            )
            record.args = (*(record.args or ()), exc.error_count(), ", ".join(kinds))  # type: ignore[misc]
            record.exc_info, record.exc_text = None, None
        return True


def scrub_logs() -> None:
    """Keep report-link tokens out of BentoML's access log, and request values out of its
    error log (idempotent)."""
    for name, kind in (
        ("bentoml.access", _ScrubLinks),
        ("bentoml._internal.server.http_app", _NoInputValues),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
