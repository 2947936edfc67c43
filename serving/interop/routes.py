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

import httpx
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
from serving.api.audit import input_hash
from serving.api.responses import NOT_A_LINK, error, html_page, json_response
from serving.api.routes import FHIR_BODY, JSON_BODY
from serving.api.routes import Route as Mount
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
from serving.interop.fhir_map import MapTable
from serving.interop.fhir_record import map_bundle
from serving.interop.links import LinkError, ReportLinks

FHIR_JSON = "application/fhir+json"


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


def base_url(request: Request, public_url: str | None) -> str:
    """Where clinicians' browsers reach the service: ``PE_RISK_PUBLIC_URL`` when set."""
    return public_url or f"{request.url.scheme}://{request.url.netloc}"


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
    base = base_url(request, svc.settings.public_url)

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


def _fetch(url: str, token: str | None) -> dict[str, Any]:
    """GET one FHIR query, following a searchset's ``next`` links (at most 20 pages).

    Raises
    ------
    OSError
        When the server cannot be reached or does not answer 200 (the caller answers 412).
    """
    headers = {"Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(timeout=5.0, follow_redirects=False) as client:
        doc, entries, pages = None, [], 0
        while url and pages < 20:
            try:
                r = client.get(url, headers=headers)
            except httpx.HTTPError as exc:  # refused, timed out, bad URL: the data are unobtainable
                raise OSError(f"{type(exc).__name__}: {exc}") from None
            if r.status_code != 200:
                raise OSError(f"HTTP {r.status_code}")
            page = r.json()
            doc = doc or page
            entries += page.get("entry") or [] if page.get("resourceType") == "Bundle" else []
            url = next(
                (ln.get("url") for ln in page.get("link") or [] if ln.get("relation") == "next"),
                None,
            )
            pages += 1
        if doc is not None and doc.get("resourceType") == "Bundle":
            doc = {**doc, "entry": entries}
        return doc or {}


def _cds_answer(
    svc: Service, call: HookRequest, service_id: str, request: Request
) -> tuple[Response, list[Assessment]]:
    ctpa = service_id == ORDER_SELECT
    if ctpa and not ctpa_selected(call, svc.table):
        return json_response({"cards": []}), []
    doc, missing = gather(call, svc.table, svc.settings.fhir_servers, _fetch)
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
    base = base_url(request, svc.settings.public_url)
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


def _override_code(reason: Any) -> str | None:
    """The code of a feedback's override reason (a Coding under ``reason``), if it has one."""
    coding = reason.get("reason") if isinstance(reason, dict) else None
    code = coding.get("code") if isinstance(coding, dict) else None
    return str(code)[:64] if code is not None else None


async def cds_feedback(request: Request) -> Response:
    svc, t0 = _service(), time.perf_counter()
    service_id = request.path_params["service_id"]
    if service_id not in HOOKS:
        return json_response(
            error(f"no CDS service {service_id!r}", "id", service_id, "not_found"), 404
        )
    doc = _loads(await request.body())
    items = doc.get("feedback")
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and i.get("card") and i.get("outcome") in ("accepted", "overridden")
        for i in items
    ):
        return json_response(
            error(
                'send {"feedback": [{"card": uuid, "outcome": "accepted" | "overridden", ...}]}',
                "feedback",
                None,
                "cds",
            ),
            400,
        )
    rows = [
        {
            "status": 200,
            "card": str(i["card"])[:64],
            "outcome": i["outcome"],
            "override_reason": _override_code(i.get("overrideReason")),
        }
        for i in items
    ]
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


fhir_app = Starlette(
    routes=[Route("/risk-assessment", fhir_risk_assessment, methods=["POST"])],
    exception_handlers={404: _not_found_fhir},
)
cds_app = Starlette(
    routes=[
        Route("/", cds_discovery, methods=["GET"]),
        Route("/{service_id}", cds_call, methods=["POST"]),
        Route("/{service_id}/feedback", cds_feedback, methods=["POST"]),
    ],
    exception_handlers={404: _not_found_json},
)
report_link_app = Starlette(
    routes=[Route("/{token}", report_link, methods=["GET"])],
    exception_handlers={404: _not_found_html},
)

#: the apps the service mounts, each with its entry in the route registry (serving.api.routes)
MOUNTS = (
    (fhir_app, Mount("/fhir/", accepts=FHIR_BODY, errors="fhir", mount=True)),
    (cds_app, Mount("/cds-services/", accepts=JSON_BODY, mount=True, root_answers=True)),
    (report_link_app, Mount("/report-link/", errors="html", auth="link", mount=True)),
)
