"""The interoperability endpoints: FHIR R4 in and out, CDS Hooks, and report links.

Mounted on the BentoML service as ASGI apps (``serving.service``); each handler is thin:
parse → map (``serving.interop.fhir``) → assess (``serving.interop.fhir_answer``, the same path as
``/predict``) → respond. Scoring runs in the thread pool, never on the event loop.

============================================  ============================================
``POST /fhir/risk-assessment``                a Bundle → RiskAssessment (one patient) or a
                                              collection Bundle (several); 400 / 422 with
                                              an OperationOutcome
``GET /cds-services``                         CDS Hooks discovery
``POST /cds-services/{id}``                   cards; 412 when required data is missing
``POST /cds-services/{id}/feedback``          card outcomes, to the audit log
``GET /report-link/{token}``                  the one-page report behind a card's link
============================================  ============================================
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from features.records import RecordError, parse_record
from models.artifact import PERiskModel
from models.settings import Settings
from serving.answer.predict import model_block
from serving.answer.report import report_html
from serving.api.audit import AuditUnavailable, input_hash
from serving.api.responses import NOT_A_LINK, error, html_page, json_response
from serving.api.routes import FHIR_BODY, JSON_BODY
from serving.api.routes import Route as Mount
from serving.api.schemas import MAX_FEEDBACK
from serving.interop.cds import (
    HOOKS,
    ORDER_SELECT,
    HookRequest,
    PrefetchMissingError,
    card,
    ctpa_selected,
    discovery,
    gather,
    not_assessed_card,
)
from serving.interop.fhir import BundleError, Issue, validate_bundle
from serving.interop.fhir_answer import Assessment, assess, operation_outcome, risk_assessment
from serving.interop.fhir_client import FHIR_JSON, fetch
from serving.interop.fhir_map import MapTable
from serving.interop.fhir_record import map_bundle
from serving.interop.links import LinkError, ReportLinks


class Service(Protocol):
    """What the mounted apps use of the running ``serving.service.PERisk`` (they reach it
    through BentoML's current service, not an import: the service imports them)."""

    model: PERiskModel
    version: str
    settings: Settings
    table: MapTable
    links: ReportLinks

    def today(self) -> date: ...

    def record_audit(
        self, request_id: str, endpoint: str, rows: list[dict[str, Any]], t0: float
    ) -> None: ...


def _service() -> Service:
    import bentoml

    return bentoml.get_current_service()


def _fhir(body: dict[str, Any], status: int = 200) -> Response:
    return json_response(body, status, FHIR_JSON)


def _loads(body: bytes) -> Any:
    """JSON the guard accepted; integers beyond 64 bits (valid JSON) need the stdlib."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _outcome(status: int, issues: list[Issue]) -> Response:
    return _fhir(operation_outcome(issues), status)


def _audit(svc: Service, request: Request, endpoint: str, rows: list[dict[str, Any]], t0: float):
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    svc.record_audit(request_id, endpoint, rows, t0)


def _audit_rows(assessed: list[Assessment]) -> list[dict[str, Any]]:
    return [
        {
            "input_hash": input_hash(a.mapped.record),
            "status": 200,
            "probability": a.answer["probability"],
        }
        if a.answer
        else {"input_hash": input_hash(a.mapped.record), "status": 422}
        for a in assessed
    ]


# ------------------------------------------------------------------------------- FHIR
def _query(svc: Service, request: Request) -> tuple[date, bool | None, str | None]:
    q = request.query_params
    index = svc.today()
    if q.get("index_date"):
        try:
            index = date.fromisoformat(q["index_date"])
        except ValueError:
            raise BundleError(
                [
                    Issue(
                        "error",
                        "value",
                        f"index_date={q['index_date']!r} is not a date; give YYYY-MM-DD",
                    )
                ]
            ) from None
    flag = q.get("suspected_pe")
    if flag not in (None, "true", "false"):
        raise BundleError(
            [
                Issue(
                    "error", "value", f"suspected_pe={flag!r}; give true or false (or leave it out)"
                )
            ]
        )
    return index, None if flag is None else flag == "true", q.get("patient")


def _fhir_assess(svc: Service, doc: Any, request: Request) -> tuple[Response, list[Assessment]]:
    index, suspected, only = _query(svc, request)
    validate_bundle(doc)
    patients, loose = map_bundle(doc, svc.table, index, suspected_pe=suspected)
    if only is not None:
        patients = [p for p in patients if only in (p.patient.ref, p.patient.resource.get("id"))]
        if not patients:
            return _outcome(
                404, [Issue("error", "not-found", f"no Patient {only!r} in the bundle")]
            ), []
    if not patients:
        return _outcome(422, [*loose, Issue("error", "required", "the bundle has no Patient")]), []
    assessed = assess(svc.model, svc.version, patients)
    base = svc.settings.public_url  # never the request's Host header, which a caller sets

    def resource(a: Assessment, extra: list[Issue]) -> dict[str, Any]:
        if a.answer is None:
            return operation_outcome(a.mapped.issues + extra)
        link = f"{base}/report-link/{svc.links.seal(a.mapped.record)}"
        return risk_assessment(
            a.mapped, a.answer, index, issues=a.mapped.issues + extra, report_url=link
        )

    if len(assessed) == 1:
        one = assessed[0]
        return _fhir(resource(one, loose), 200 if one.answer else 422), assessed
    if not any(a.answer for a in assessed):
        return _outcome(422, loose + [i for a in assessed for i in a.mapped.issues]), assessed
    entries = [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource(a, [])} for a in assessed
    ]
    if loose:
        entries.append(
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": operation_outcome(loose)}
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "entry": entries,
    }
    return _fhir(bundle), assessed


async def fhir_risk_assessment(request: Request) -> Response:
    svc, t0 = _service(), time.perf_counter()
    doc = _loads(await request.body())  # RequestGuard has checked it is a JSON object
    try:
        response, assessed = await run_in_threadpool(_fhir_assess, svc, doc, request)
    except BundleError as err:
        _audit(svc, request, "fhir", [{"status": 400}], t0)
        return _outcome(400, err.issues)
    _audit(svc, request, "fhir", _audit_rows(assessed) or [{"status": response.status_code}], t0)
    return response


# -------------------------------------------------------------------------- CDS Hooks
async def cds_discovery(request: Request) -> Response:
    return json_response(discovery(_service().table))


def _cds_answer(
    svc: Service, call: HookRequest, service_id: str, request: Request
) -> tuple[Response, list[Assessment]]:
    ctpa = service_id == ORDER_SELECT
    if ctpa and not ctpa_selected(call, svc.table):
        return json_response({"cards": []}), []
    doc, missing, partial = gather(call, svc.table, svc.settings.fhir_servers, fetch)
    try:
        validate_bundle(doc)
    except BundleError as err:
        return json_response(
            error(
                "the prefetched FHIR data are not valid R4: " + err.issues[0].diagnostics,
                "prefetch",
                None,
                "fhir",
            ),
            400,
        ), []
    pid = call.patient_id()
    patients, _ = map_bundle(doc, svc.table, svc.today(), suspected_pe=True if ctpa else None)
    patients = [p for p in patients if p.patient.resource.get("id") == pid]
    if not patients:
        raise PrefetchMissingError(["patient"], f"no Patient/{pid} among the prefetched data")
    (a,) = assess(svc.model, svc.version, patients)
    if "lung_cancer" not in a.mapped.sources:
        return json_response({"cards": []}), [a]  # not a person with lung cancer: no advice
    base = svc.settings.public_url  # never the request's Host header, which a caller sets
    if a.answer is None:
        reasons = [i.diagnostics for i in a.mapped.issues if i.severity in ("error", "fatal")]
        return json_response(
            {"cards": [not_assessed_card(reasons, model_block(svc.model, svc.version))]}
        ), [a]
    link = f"{base}/report-link/{svc.links.seal(a.mapped.record)}"
    the_card = card(
        a.answer,
        report_url=link,
        model_url=None if svc.settings.api_tokens else f"{base}/model",
        missing_keys=missing,
        partial=partial,
        ctpa=ctpa,
    )
    return json_response({"cards": [the_card]}), [a]


async def cds_call(request: Request) -> Response:
    svc, t0 = _service(), time.perf_counter()
    service_id = request.path_params["service_id"]
    if service_id not in HOOKS:
        return json_response(
            error(
                f"no CDS service {service_id!r}; see GET /cds-services",
                "id",
                service_id,
                "not_found",
            ),
            404,
        )
    try:
        call = HookRequest.model_validate_json(await request.body())
        if call.hook != HOOKS[service_id]:
            raise ValueError(
                f"service {service_id} answers the {HOOKS[service_id]} hook, not {call.hook!r}"
            )
        call.patient_id()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return json_response(error(f"{where}: {first['msg']}", where, None, "cds"), 400)
    except ValueError as exc:
        return json_response(error(str(exc), "", None, "cds"), 400)
    try:
        response, assessed = await run_in_threadpool(_cds_answer, svc, call, service_id, request)
    except PrefetchMissingError as exc:
        _audit(svc, request, f"cds/{service_id}", [{"status": 412}], t0)
        return json_response(error(str(exc), f"prefetch.{exc.keys[0]}", None, "prefetch"), 412)
    except ValueError as exc:  # a prefetch value that is not a resource
        return json_response(error(str(exc), "prefetch", None, "cds"), 400)
    _audit(svc, request, f"cds/{service_id}", _audit_rows(assessed) or [{"status": 200}], t0)
    return response


def _feedback_rows(items: Any) -> list[dict[str, Any]]:
    """The audit rows of a feedback body, checked as CDS Hooks 2.0 says (§ Feedback):
    ``card`` a UUID, ``outcome`` accepted or overridden, ``outcomeTimestamp`` REQUIRED (an
    ISO 8601 instant); ``acceptedSuggestions`` only with accepted and then required
    (cds-fb-1, cds-fb-2), ``overrideReason`` only with overridden (cds-fb-3) and then a
    Coding or a comment.

    Raises
    ------
    ValueError
        Naming the item and field, the value and what is accepted.
    """
    if not isinstance(items, list) or not items:
        raise ValueError(
            'feedback: send {"feedback": [{"card": uuid, "outcome": ..., "outcomeTimestamp": ...}]}'
        )
    rows = []
    for k, i in enumerate(items):
        at = f"feedback[{k}]"
        if not isinstance(i, dict):
            raise ValueError(f"{at}: each feedback item is an object")
        try:
            card = str(uuid.UUID(str(i.get("card"))))
        except ValueError:
            raise ValueError(
                f"{at}.card: {i.get('card')!r:.60} is not the UUID of a card"
            ) from None
        outcome = i.get("outcome")
        if outcome not in ("accepted", "overridden"):
            raise ValueError(f"{at}.outcome: {outcome!r:.40}; give accepted or overridden")
        stamp = i.get("outcomeTimestamp")
        try:
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            when = None
        if not isinstance(stamp, str) or when is None or when.tzinfo is None:
            raise ValueError(
                f"{at}.outcomeTimestamp: {stamp!r:.40} is required, an ISO 8601 instant "
                "with its time zone (e.g. 2026-11-24T09:30:00Z)"
            )
        accepted, reason = i.get("acceptedSuggestions"), i.get("overrideReason")
        if outcome == "accepted" and not (isinstance(accepted, list) and accepted):
            raise ValueError(
                f"{at}.acceptedSuggestions: required when the outcome is accepted (cds-fb-1)"
            )
        if outcome == "overridden" and accepted is not None:
            raise ValueError(f"{at}.acceptedSuggestions: only with outcome accepted (cds-fb-2)")
        if reason is not None and outcome != "overridden":
            raise ValueError(f"{at}.overrideReason: only with outcome overridden (cds-fb-3)")
        coding = reason.get("reason") if isinstance(reason, dict) else None
        comment = reason.get("userComment") if isinstance(reason, dict) else None
        if (
            reason is not None
            and not (isinstance(coding, dict) and coding.get("code"))
            and not (isinstance(comment, str) and comment.strip())
        ):
            raise ValueError(
                f"{at}.overrideReason: give reason (a Coding with system and code) or "
                "userComment; an empty override reason says nothing"
            )
        rows.append(
            {
                "status": 200,
                "card": card,
                "outcome": outcome,
                "outcome_timestamp": when.isoformat(),
                "accepted_suggestions": [
                    str(a.get("id"))[:64] for a in accepted or [] if isinstance(a, dict)
                ],
                "override_reason": None
                if not isinstance(coding, dict)
                else {
                    "system": str(coding.get("system"))[:256],
                    "code": str(coding.get("code"))[:64],
                },
                "override_comment": str(comment)[:1000] if isinstance(comment, str) else None,
            }
        )
    return rows


async def cds_feedback(request: Request) -> Response:
    svc, t0 = _service(), time.perf_counter()
    service_id = request.path_params["service_id"]
    if service_id not in HOOKS:
        return json_response(
            error(f"no CDS service {service_id!r}", "id", service_id, "not_found"), 404
        )
    doc = _loads(await request.body())
    items = doc.get("feedback")
    if isinstance(items, list) and len(items) > MAX_FEEDBACK:  # each is an audit line
        message = f"feedback: {len(items)} items in one call; at most {MAX_FEEDBACK} are taken"
        return json_response(error(message, "feedback", None, "size"), 413)
    try:
        rows = _feedback_rows(items)
    except ValueError as exc:
        where = str(exc).split(":", 1)[0]
        return json_response(error(str(exc), where, None, "cds"), 400)
    _audit(svc, request, f"cds/{service_id}/feedback", rows, t0)
    return json_response({})


# ------------------------------------------------------------------------ report links


async def report_link(request: Request) -> Response:
    svc, t0 = _service(), time.perf_counter()
    try:
        record = parse_record(svc.links.open(request.path_params["token"]))
    except (LinkError, RecordError) as err:  # a record that no longer validates: not a link
        status = 410 if isinstance(err, LinkError) and err.expired else 404
        text = (
            "This report link has expired. Open the patient in the EHR again for a new one."
            if status == 410
            else NOT_A_LINK
        )
        return HTMLResponse(html_page(text), status_code=status)
    html = await run_in_threadpool(report_html, svc.model, svc.version, record)
    _audit(svc, request, "report-link", [{"status": 200}], t0)
    return HTMLResponse(html)


async def _not_found_fhir(request: Request, exc: Exception) -> Response:
    return _outcome(404, [Issue("error", "not-found", f"no FHIR route {request.url.path!r}")])


async def _not_found_json(request: Request, exc: Exception) -> Response:
    return json_response(error(f"no route {request.url.path!r}", "path", None, "not_found"), 404)


async def _not_found_html(request: Request, exc: Exception) -> Response:
    return HTMLResponse(html_page(NOT_A_LINK), status_code=404)


def _method_text(request: Request) -> str:
    return f"{request.method[:10]} is not accepted on this path"


def _allow(response: Response, exc: Exception) -> Response:
    allow = (getattr(exc, "headers", None) or {}).get("Allow")
    if allow:
        response.headers["allow"] = allow
    return response


async def _method_fhir(request: Request, exc: Exception) -> Response:
    return _allow(_outcome(405, [Issue("error", "not-supported", _method_text(request))]), exc)


async def _method_json(request: Request, exc: Exception) -> Response:
    body = error(_method_text(request), "method", None, "method")
    return _allow(json_response(body, 405), exc)


async def _method_html(request: Request, exc: Exception) -> Response:
    return _allow(HTMLResponse(html_page(NOT_A_LINK), status_code=405), exc)


async def _unavailable_fhir(request: Request, exc: Exception) -> Response:
    return _outcome(503, [Issue("error", "transient", str(exc))])


async def _unavailable_json(request: Request, exc: Exception) -> Response:
    return json_response(error(str(exc), "", None, "unavailable"), 503)


async def _unavailable_html(request: Request, exc: Exception) -> Response:
    text = "The report cannot be shown now: the service cannot write its audit log."
    return HTMLResponse(html_page(text), status_code=503)


fhir_app = Starlette(
    routes=[Route("/risk-assessment", fhir_risk_assessment, methods=["POST"])],
    exception_handlers={
        404: _not_found_fhir,
        405: _method_fhir,
        AuditUnavailable: _unavailable_fhir,
    },
)
cds_app = Starlette(
    routes=[
        Route("/", cds_discovery, methods=["GET"]),
        Route("/{service_id}", cds_call, methods=["POST"]),
        Route("/{service_id}/feedback", cds_feedback, methods=["POST"]),
    ],
    exception_handlers={
        404: _not_found_json,
        405: _method_json,
        AuditUnavailable: _unavailable_json,
    },
)
report_link_app = Starlette(
    routes=[Route("/{token}", report_link, methods=["GET"])],
    exception_handlers={
        404: _not_found_html,
        405: _method_html,
        AuditUnavailable: _unavailable_html,
    },
)

#: the apps the service mounts, each with its entry in the route registry (serving.api.routes)
MOUNTS = (
    (fhir_app, Mount("/fhir/", accepts=FHIR_BODY, errors="fhir", mount=True)),
    (
        cds_app,
        Mount("/cds-services/", accepts=JSON_BODY, auth="cds", mount=True, root_answers=True),
    ),
    (report_link_app, Mount("/report-link/", errors="html", auth="link", mount=True)),
)
