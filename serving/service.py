"""The BentoML service: calibrated PE-risk predictions with exact explanations.

``bentoml serve serving.service:PERisk`` (``make serve`` does the set-up). The model is the
champion imported from MLflow into the BentoML store (``pe-risk import-model``), declared
at class scope so ``bentoml build`` packages it. Each API is thin: validate → features →
predict → explain → respond; the rules live in ``features`` and ``serving.answer.predict``.
"""

from __future__ import annotations

import os

# XGBoost's OpenMP threads otherwise spin after each batch, taking the core that is
# dressing the answers (a 1,000-record batch: 80 → 57 ms). Set before xgboost loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# glibc gives each thread that allocates its own arena (up to 8 per core): after a burst of
# concurrent requests a 1,000-record batch lands on a cold, fragmented arena and takes
# 110 ms instead of 84. Two arenas keep it at 84. The worker processes, started after this
# module is imported by `bentoml serve`, read it at start-up.
os.environ.setdefault("MALLOC_ARENA_MAX", "2")

import gc
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from features.records import RecordError, parse_record
from features.spec import spec_table
from models.artifact import PERiskModel
from models.settings import get_settings
from serving.answer.predict import QUESTIONS, model_block, predict_records
from serving.answer.report import report_html
from serving.api.accept import install as install_single_accept
from serving.api.admission import Admission
from serving.api.admission import install as install_admission
from serving.api.audit import AuditLog, AuditUnavailable, input_hash
from serving.api.auth import BearerAuth
from serving.api.guard import RequestGuard
from serving.api.responses import error, json_response
from serving.api.routes import Route as Mount
from serving.api.routes import registry
from serving.api.schemas import MAX_ERRORS, BatchRequest, BatchResponse, Prediction, RecordIn
from serving.api.telemetry import install as install_metric_labels
from serving.api.telemetry import scrub_logs
from serving.interop.fhir import validate_bundle
from serving.interop.fhir_map import load_table
from serving.interop.links import ReportLinks, link_key
from serving.interop.routes import MOUNTS

BENTO_MODEL = "pe-risk:latest"


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cycle collection while a batch runs: its ~50,000 answer dicts hold no cycles
    (reference counting frees them), and collections triggered by their allocation cost
    a fifth of a 1,000-record batch. Re-enabled after, unless another request paused it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _issues(err: RecordError) -> list[dict[str, Any]]:
    """The record's problems, the first ``MAX_ERRORS`` of them and a line saying how many
    more (a record of 256 unknown fields is not answered with 256 errors)."""
    shown = [i.as_dict() for i in err.issues[:MAX_ERRORS]]
    if len(err.issues) > MAX_ERRORS:
        more = len(err.issues) - MAX_ERRORS
        message = f"{more} more problems are not listed; correct these first"
        shown.append({"field": "", "value": None, "rule": "truncated", "message": message})
    return shown


def _model_json(request: Request) -> JSONResponse:
    svc = bentoml.get_current_service()
    return JSONResponse(svc.model_card())


model_app = Starlette(routes=[Route("/", _model_json, methods=["GET"])])
MODEL_MOUNT = Mount("/model/", mount=True, root_answers=True)


@bentoml.service(
    name="pe_risk",
    workers=get_settings().workers,  # one process per core: the GIL caps a worker at one
    # BentoML's TimeoutMiddleware keeps every request's context alive until its timer fires
    # (call_later, never cancelled): memory grows with rate × timeout. 10 s bounds that to a
    # third of the default while a 10,000-record batch still takes about a second.
    traffic={"timeout": 10, "max_concurrency": 256},
    metrics={
        "enabled": True,
        "duration": {"buckets": [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]},
    },
)
class PERisk:
    bento_model = bentoml.models.BentoModel(BENTO_MODEL)

    def __init__(self) -> None:
        self.model = PERiskModel.load(self.bento_model.path)  # one thread: one record
        self.batch_model = self.model.with_threads(min(4, os.cpu_count() or 1))
        self.version = str(
            self.bento_model.info.labels.get("version", self.bento_model.tag.version)
        )
        self.settings = settings = get_settings()
        self.audit = AuditLog(settings.log_dir / "audit.jsonl")
        self._not_ready: str | None = None
        self.table = load_table(settings.fhir_map)  # a bad hospital row stops start-up, named
        self.links = ReportLinks(link_key(settings), settings.link_ttl_s)
        # The assessment date of a CDS Hooks call, and of a FHIR bundle sent without
        # ?index_date: the day the call arrives. An attribute so that a test chooses its day.
        self.today: Callable[[], date] = date.today
        validate_bundle({"resourceType": "Bundle", "type": "collection"})  # FHIR models built now
        gc.freeze()  # start-up objects leave the collector's view: batches make many objects

    def model_card(self) -> dict[str, Any]:
        info = self.model.info
        spec = spec_table()
        return {
            "model": model_block(self.model, self.version),
            "outcomes": info.get("outcomes", {}),
            "questions": {
                key: {
                    "question": QUESTIONS[key],
                    "horizons_days": list(head.horizons),
                    "risk_bands": {
                        "low_below": head.bands.low_below,
                        "high_from": head.bands.high_from,
                        "source": head.bands.source,
                    },
                    "calibration": {
                        "a": head.calibration.a,
                        "intercepts": list(head.calibration.intercepts),
                        "method": head.calibration.method,
                    },
                }
                for key, head in self.model.heads.items()
            },
            "metrics": info.get("metrics", {}),
            "baselines": info.get("baselines", {}),
            "gate": info.get("gate", {}),
            "unknowns": info.get("unknowns", {}),
            "features": [
                {
                    **f,
                    "monotone": {
                        k: h.monotone.get(f["name"], 0) for k, h in self.model.heads.items()
                    },
                }
                for f in spec
                if f["name"] in self.model.feature_names
            ],
            "derived_predictors": [f for f in spec if not f["in_model"]],
        }

    def _audit(
        self, ctx: bentoml.Context, endpoint: str, rows: list[dict[str, Any]], t0: float
    ) -> Response | None:
        """Write the request's audit lines; the 503 to answer instead when the log cannot
        be written (no answer leaves without its line)."""
        request_id = ctx.request.headers.get("x-request-id") or uuid.uuid4().hex
        ctx.response.headers["x-request-id"] = request_id
        ctx.response.headers["x-model-version"] = self.version
        try:
            self.record_audit(request_id, endpoint, rows, t0)
        except AuditUnavailable as exc:
            ctx.response.status_code = 503
            return json_response(error(str(exc), "", None, "unavailable"), 503)
        return None

    def __is_ready__(self) -> bool:
        """``/readyz``: ready while the audit log can be written (the cause is logged once)."""
        problem = self.audit.problem()
        if problem != self._not_ready:
            self._not_ready = problem
            if problem:
                logging.getLogger(__name__).error("not ready: %s", problem)
        return problem is None

    def record_audit(
        self, request_id: str, endpoint: str, rows: list[dict[str, Any]], t0: float
    ) -> None:
        """One audit line per answered record (no identifiers; see ``serving.api.audit``)."""
        ms = round((time.perf_counter() - t0) * 1000, 3)
        self.audit.write(
            [
                {
                    "request_id": request_id,
                    "endpoint": endpoint,
                    "model_version": self.version,
                    "latency_ms": ms,
                    **r,
                }
                for r in rows
            ]
        )

    def _one(
        self,
        record: RecordIn,  # type: ignore[valid-type]
        ctx: bentoml.Context,
        endpoint: str,
        respond: Callable[[Any], tuple[Response, dict[str, Any]]],
    ) -> Response:
        """Validate one record, answer it with ``respond`` and audit it; a record that breaks
        the contract gets the 422 error body naming field, value and rule."""
        t0 = time.perf_counter()
        raw = record.model_dump(exclude_unset=True)
        try:
            parsed = parse_record(raw)
        except RecordError as err:
            rules = sorted({i.rule for i in err.issues})
            row = {"input_hash": input_hash(raw), "status": 422, "rules": rules}
            if refused := self._audit(ctx, endpoint, [row], t0):
                return refused
            ctx.response.status_code = 422  # BentoML applies the context's status to any response
            body = {"error": "the record breaks the data contract", "detail": _issues(err)}
            return json_response(body, 422)
        response, audited = respond(parsed)
        row = {"input_hash": input_hash(raw), "status": 200, **audited}
        return self._audit(ctx, endpoint, [row], t0) or response

    def _prediction(self, record: Any) -> tuple[Response, dict[str, Any]]:
        answer = predict_records(self.model, self.version, [record])[0]
        return json_response(answer), {"probability": answer["probability"]}

    def _report(self, record: Any) -> tuple[Response, dict[str, Any]]:
        html = report_html(self.model, self.version, record)
        return Response(html, media_type="text/html; charset=utf-8"), {}

    @bentoml.api(route="/predict")
    async def predict(self, record: RecordIn, /, ctx: bentoml.Context) -> Prediction:  # type: ignore[valid-type]
        """One patient record (the body is the record) → probability, explanation, scores, flags."""
        # answered on the event loop: under a millisecond of work, less than handing it to
        # the thread pool and back costs (and no GIL hand-over with the loop under load)
        return self._one(record, ctx, "predict", self._prediction)  # type: ignore[return-value]

    @bentoml.api(route="/report")
    def report(self, record: RecordIn, /, ctx: bentoml.Context) -> str:  # type: ignore[valid-type]
        """The same body as /predict → the clinician's one-page HTML report (self-contained)."""
        return self._one(record, ctx, "report", self._report)  # type: ignore[return-value]

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, request: BatchRequest, /, ctx: bentoml.Context) -> BatchResponse:
        """Up to 10,000 records, answered in order; a bad record gets an error entry in its place."""
        with paused_gc():
            return self._batch(request, ctx)

    def _batch(self, request: BatchRequest, ctx: bentoml.Context) -> Response:
        t0 = time.perf_counter()
        parsed, results, audit = [], [], []
        for i, raw in enumerate(request.patients):
            try:
                parsed.append((i, parse_record(raw)))
            except RecordError as err:
                pid = raw.get("patient_id")  # which record, in the caller's own words
                results.append(
                    {
                        "index": i,
                        "ok": False,
                        "patient_id": pid if isinstance(pid, str) else None,
                        "errors": _issues(err),
                    }
                )
                audit.append({"index": i, "input_hash": input_hash(raw), "status": 422})
        if parsed:
            answers = predict_records(
                self.batch_model,
                self.version,
                [r for _, r in parsed],
                explain=request.explain,
                scores=request.scores,
                top=request.top_contributions,
            )
            for (i, _), answer in zip(parsed, answers, strict=True):
                answer.pop("model")
                results.append({"index": i, "ok": True, "result": answer})
                audit.append(
                    {
                        "index": i,
                        "input_hash": input_hash(request.patients[i]),
                        "status": 200,
                        "probability": answer["probability"],
                    }
                )
        results.sort(key=lambda r: r["index"])
        if refused := self._audit(ctx, "predict_batch", audit, t0):
            return refused
        answer = {"results": results, "model": model_block(self.model, self.version)}
        return json_response(answer, release=True)  # type: ignore[return-value]


for _app, _mount in ((model_app, MODEL_MOUNT), *MOUNTS):
    PERisk.mount_asgi_app(_app, path=_mount.path.rstrip("/"))
#: every route, declared once: the APIs above and the mounts; the guard and the bearer check
#: read it (tokens are read from the settings when the app is built)
ROUTES = registry(
    ((api.route, api.input_spec.model_fields) for api in PERisk.apis.values()),
    [MODEL_MOUNT, *(m for _, m in MOUNTS)],
)


def _admission(app: Any) -> Any:
    """Authenticate first, so that an unauthenticated caller gets its 401 before the server
    reads, parses or judges a byte of the body; then the guard (issue 20)."""
    return BearerAuth(RequestGuard(app, routes=ROUTES), routes=ROUTES)


install_admission(_admission)  # before a concurrency slot is taken
if not install_single_accept():  # every worker gets its share of keep-alive connections
    logging.getLogger(__name__).warning(
        "asyncio's accept loop is not the one patched: one worker may take every connection"
    )
PERisk.add_asgi_middleware(Admission, build=_admission)  # and wherever the limit is off
install_metric_labels(ROUTES)  # route templates, never raw paths, in /metrics
scrub_logs()  # report-link tokens and request values never reach the server's log
