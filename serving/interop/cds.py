"""CDS Hooks 2.0: discovery, prefetch → bundle, and the cards (cds-hooks.hl7.org, 2.0).

- ``discovery`` lists two services: ``pe-risk`` on ``patient-view`` and ``pe-risk-ctpa``
  on ``order-select`` (it answers only when a selected draft order is a CT pulmonary
  angiogram, a ServiceRequest row of the mapping table, and then assesses the patient as
  one in whom PE is suspected). Their prefetch templates come from the mapping table, so
  a hospital's extra rows are prefetched too.
- ``gather`` turns the prefetch into one FHIR Bundle. A key the client left out is
  fetched from ``fhirServer`` with the client's access token, but only from a server on
  the ``PE_RISK_FHIR_SERVERS`` allow-list (a service that fetches any URL a caller names
  would be a request-forgery relay). Required data still missing → ``PrefetchMissingError``,
  answered 412 as the specification says. A key sent as ``null`` means "no data".
- ``card`` builds the card: summary under 140 characters with the risk, indicator by
  risk category, markdown detail with the main factors and guideline flags, source with
  the model version, and a link to the one-page report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from serving.answer.text import contributors_text, not_recorded, percent
from serving.interop.fhir import codings, validate_bundle
from serving.interop.fhir_map import MapTable

PATIENT_VIEW, ORDER_SELECT = "pe-risk", "pe-risk-ctpa"
HOOKS = {PATIENT_VIEW: "patient-view", ORDER_SELECT: "order-select"}
REQUIRED = ("patient", "conditions", "observations")
INDICATOR = {"low": "info", "intermediate": "warning", "high": "critical"}
SUMMARY_MAX = 139  # "SHALL be less than 140 characters"


class PrefetchMissingError(LookupError):
    """Required data the client did not send and pe-risk may not fetch (HTTP 412)."""

    def __init__(self, keys: list[str], why: str) -> None:
        self.keys = keys
        super().__init__(f"prefetch {keys} missing and not fetched: {why}")


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow")
    access_token: str = Field(max_length=8192)
    token_type: str = "Bearer"


class HookRequest(BaseModel):
    """A CDS Hooks service call (fields of the 2.0 specification; unknown ones ignored)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    hook: str = Field(max_length=64)
    hook_instance: str = Field(alias="hookInstance", max_length=128)
    fhir_server: str | None = Field(default=None, alias="fhirServer", max_length=2048)
    fhir_authorization: FhirAuthorization | None = Field(default=None, alias="fhirAuthorization")
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    def patient_id(self) -> str:
        pid = self.context.get("patientId")
        if not isinstance(pid, str) or not pid or len(pid) > 64:
            raise ValueError(f"context.patientId must be a FHIR id, not {pid!r}")
        return pid


def prefetch_templates(table: MapTable) -> dict[str, str]:
    codes = ",".join(f"{s}|{c}" for s, c in table.codes("Observation"))
    pid = "{{context.patientId}}"
    return {
        "patient": f"Patient/{pid}",
        "conditions": f"Condition?patient={pid}",
        "observations": f"Observation?patient={pid}&code={codes}",
        "medicationRequests": f"MedicationRequest?patient={pid}",
        "medicationStatements": f"MedicationStatement?patient={pid}",
        "procedures": f"Procedure?patient={pid}",
    }


def discovery(table: MapTable) -> dict[str, Any]:
    prefetch = prefetch_templates(table)
    usage = (
        "For adults with lung cancer. Decision support, not a diagnosis; the shipped model "
        "is trained on synthetic data and must be validated locally before clinical use."
    )
    return {
        "services": [
            {
                "hook": HOOKS[PATIENT_VIEW],
                "id": PATIENT_VIEW,
                "title": "Pulmonary embolism risk in lung cancer",
                "description": "Calibrated 180-day risk of pulmonary embolism with the factors "
                "behind it, the established scores and the guideline flags of the review.",
                "prefetch": prefetch,
                "usageRequirements": usage,
            },
            {
                "hook": HOOKS[ORDER_SELECT],
                "id": ORDER_SELECT,
                "title": "PE work-up when a CT pulmonary angiogram is ordered",
                "description": "When a CTPA order is selected: the PE risk, Wells / Geneva / "
                "YEARS and the review's diagnostic-path flags (D-dimer rule-out, CTPA "
                "contraindication).",
                "prefetch": prefetch,
                "usageRequirements": usage,
            },
        ]
    }


def _resources(key: str, value: Any) -> list[dict[str, Any]] | None:
    """A prefetch value as resources: a Bundle's entries, one resource, or None for an
    OperationOutcome (the client could not get the data). The resources themselves are
    validated with the assembled bundle."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ValueError(f"prefetch.{key} must be a FHIR resource or null, not {value!r:.60}")
    if value.get("resourceType") == "OperationOutcome":
        return None
    if value.get("resourceType") != "Bundle":
        return [dict(value)]
    out = []
    for e in value.get("entry") or []:
        if not isinstance(e, Mapping) or not isinstance(e.get("resource"), dict):
            raise ValueError(f"prefetch.{key}: every Bundle entry needs a resource")
        search = e.get("search")
        if not (isinstance(search, Mapping) and search.get("mode") == "outcome"):
            out.append(e["resource"])
    return out


Fetcher = Callable[[str, str | None], dict[str, Any]]


def gather(
    call: HookRequest,
    table: MapTable,
    allowed_servers: tuple[str, ...],
    fetch: Fetcher,
) -> tuple[dict[str, Any], list[str]]:
    """One collection Bundle of everything the prefetch (or the FHIR server) gave, and the
    optional keys that stayed missing (the card says so)."""
    pid = call.patient_id()
    templates = prefetch_templates(table)
    given = call.prefetch or {}
    resources: list[dict[str, Any]] = []
    missing, fetch_needed = [], []
    for key, template in templates.items():
        got = _resources(key, given[key]) if key in given else None
        if got is None:
            fetch_needed.append((key, template.replace("{{context.patientId}}", quote(pid))))
        else:
            resources += got
    if fetch_needed:
        server = (call.fhir_server or "").rstrip("/")
        allowed = bool(server) and any(
            server == a or server.startswith(a + "/") for a in allowed_servers
        )
        token = call.fhir_authorization.access_token if call.fhir_authorization else None
        for key, query in fetch_needed:
            if allowed:
                try:
                    got = _resources(key, fetch(f"{server}/{query}", token))
                except (OSError, ValueError) as exc:
                    got, why = None, f"{server} answered {exc}"
            else:
                why = (
                    "no fhirServer was given"
                    if not server
                    else f"{server} is not on the PE_RISK_FHIR_SERVERS allow-list"
                )
                got = None
            if got is not None:
                resources += got
            elif key in REQUIRED:
                raise PrefetchMissingError([key], why)
            else:
                missing.append(key)
    entries = [{"fullUrl": _full_url(r), "resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, missing


def _full_url(resource: Mapping[str, Any]) -> str:
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid}" if rid else f"urn:uuid:{uuid.uuid4()}"


def ctpa_selected(call: HookRequest, table: MapTable) -> bool:
    """True when a selected draft order is a CT pulmonary angiogram (ServiceRequest rows).

    Raises
    ------
    ValueError
        When ``selections`` or ``draftOrders`` are not what order-select sends.
    """
    selections = call.context.get("selections") or []
    drafts = call.context.get("draftOrders")
    if not isinstance(selections, list) or not all(isinstance(x, str) for x in selections):
        raise ValueError("context.selections must list references such as 'ServiceRequest/1'")
    if not isinstance(drafts, Mapping):
        raise ValueError("context.draftOrders must be a FHIR Bundle of the draft orders")
    validate_bundle(drafts)  # a BundleError (a ValueError) names what is wrong
    for e in drafts.get("entry") or []:
        res = e.get("resource") or {}
        if f"{res.get('resourceType')}/{res.get('id')}" not in selections:
            continue
        for c in codings(res.get("code")):
            rows = table.lookup("ServiceRequest", c.get("system"), c.get("code"))
            if any(r.field == "suspected_pe" for r in rows):
                return True
    return False


def card(
    answer: dict[str, Any],
    *,
    report_url: str | None,
    model_url: str | None,
    missing_keys: list[str],
    ctpa: bool = False,
) -> dict[str, Any]:
    """The card for one assessed patient."""
    model = answer["model"]
    p, category, days = answer["probability"], answer["risk_category"], answer["horizon_days"]
    synthetic = " [synthetic-data model]" if model["synthetic_data"] else ""
    head = "CTPA ordered: " if ctpa else ""
    summary = f"{head}PE risk {percent(p)} in {days} days ({category}){synthetic}"
    flags = answer["recommendations"]
    lines = [
        f"**Estimated risk of pulmonary embolism within {days} days: {percent(p)} ({category})**",
        "",
        "Main factors (exact SHAP, calibrated log-odds):",
        *[f"- {t}" for t in contributors_text(answer)],
    ]
    if flags:
        lines += ["", "Guideline flags:"]
        lines += [f"- **{f['severity']}**: {f['text']} _({f['source']})_" for f in flags]
    unrecorded = not_recorded(answer)
    if unrecorded:
        lines += [
            "",
            f"Not found in the record: {', '.join(unrecorded)}. Scored as unknown (between "
            "their possible values, never as 'no'); the estimate is less certain.",
        ]
    if missing_keys:
        lines += ["", f"The EHR did not provide: {', '.join(missing_keys)}."]
    lines += ["", f"_{model['name']} {model['version']}: {model['notice']}_"]
    out: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary[:SUMMARY_MAX],
        "indicator": INDICATOR[category],
        "detail": "\n".join(lines),
        "source": {"label": f"{model['name']} {model['version']}{synthetic}"},
    }
    if model_url:
        out["source"]["url"] = model_url
    if report_url:
        out["links"] = [{"label": "One-page PE risk report", "url": report_url, "type": "absolute"}]
    return out


def not_assessed_card(reasons: list[str], model: Mapping[str, Any]) -> dict[str, Any]:
    """An info card when the patient has lung cancer but the record cannot be built."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "PE risk not estimated: required data missing in the record"[:SUMMARY_MAX],
        "indicator": "info",
        "detail": "\n".join(["pe-risk could not build the record:", *[f"- {r}" for r in reasons]]),
        "source": {"label": f"{model['name']} {model['version']}"},
    }
