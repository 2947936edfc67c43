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

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from serving.answer.text import contributors_text, not_recorded, percent
from serving.interop.fhir import codings
from serving.interop.fhir_client import Fetched
from serving.interop.fhir_map import MapTable

PATIENT_VIEW, ORDER_SELECT = "pe-risk", "pe-risk-ctpa"
HOOKS = {PATIENT_VIEW: "patient-view", ORDER_SELECT: "order-select"}
REQUIRED = ("patient", "conditions", "observations")
INDICATOR = {"low": "info", "intermediate": "warning", "high": "critical"}
SUMMARY_MAX = 139  # "SHALL be less than 140 characters"
#: a FHIR id (R4 id datatype): the only patientId pe-risk puts into a query
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: blood-pressure panels: servers match Observation.code, and the systolic pressure
#: (8480-6) is a component of these, never the code itself
PANELS = ("http://loinc.org|85354-9", "http://loinc.org|55284-4")


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
        if not isinstance(pid, str) or not FHIR_ID.fullmatch(pid):
            raise ValueError(
                f"context.patientId must be a FHIR id (letters, digits, '-' and '.', at most "
                f"64), not {pid!r:.80}"
            )
        return pid


def prefetch_templates(table: MapTable) -> dict[str, str]:
    """The queries of the prefetch: the Observation codes of the mapping table and the
    blood-pressure panels, newest first (``_sort=-date``) so that a server's paging keeps
    the most recent values."""
    codes = ",".join([*(f"{s}|{c}" for s, c in table.codes("Observation")), *PANELS])
    pid = "{{context.patientId}}"
    return {
        "patient": f"Patient/{pid}",
        "conditions": f"Condition?patient={pid}",
        "observations": f"Observation?patient={pid}&code={codes}&_sort=-date",
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


#: (query URL, the FHIR base it must stay under, the client's access token) → what it gave
Fetcher = Callable[[str, str, str | None], Fetched]


def gather(
    call: HookRequest,
    table: MapTable,
    allowed_servers: tuple[str, ...],
    fetch: Fetcher,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """One collection Bundle of everything the prefetch (or the FHIR server) gave, the
    optional keys that stayed missing, and what a fetch could only read in part (the card
    says both)."""
    pid = call.patient_id()
    templates = prefetch_templates(table)
    given = call.prefetch or {}
    resources: list[dict[str, Any]] = []
    missing, notes, fetch_needed = [], [], []
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
                    fetched = fetch(f"{server}/{query}", server, token)
                    got = _resources(key, fetched.resource)
                    if fetched.truncated:
                        notes.append(f"{key}: {fetched.truncated}")
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
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, missing, notes


def _full_url(resource: Mapping[str, Any]) -> str:
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid}" if rid else f"urn:uuid:{uuid.uuid4()}"


def ctpa_selected(call: HookRequest, table: MapTable) -> bool:
    """True when a selected draft order is a CT pulmonary angiogram (ServiceRequest rows).

    Only the selected orders are read: ``draftOrders`` may carry any other draft (a
    NutritionOrder, an order of a type R4B does not know) and may have no ``Bundle.type``,
    as the reference sandbox sends it.

    Raises
    ------
    ValueError
        Naming ``context.selections`` or ``context.draftOrders`` when they are not what
        order-select sends.
    """
    selections = call.context.get("selections") or []
    drafts = call.context.get("draftOrders")
    if not isinstance(selections, list) or not all(isinstance(x, str) for x in selections):
        raise ValueError("context.selections must list references such as 'ServiceRequest/1'")
    entries = drafts.get("entry") if isinstance(drafts, Mapping) else None
    if not isinstance(drafts, Mapping) or drafts.get("resourceType") != "Bundle":
        raise ValueError("context.draftOrders must be a FHIR Bundle of the draft orders")
    if not isinstance(entries or [], list):
        raise ValueError("context.draftOrders.entry must be a list of entries")
    for k, e in enumerate(entries or []):
        res = e.get("resource") if isinstance(e, Mapping) else None
        if not isinstance(res, Mapping):
            raise ValueError(f"context.draftOrders.entry[{k}] has no resource")
        if f"{res.get('resourceType')}/{res.get('id')}" not in selections:
            continue
        for c in codings(res.get("code")):
            if not isinstance(c, Mapping):
                continue
            rows = table.lookup("ServiceRequest", c.get("system"), c.get("code"))
            if any(r.field == "suspected_pe" and r.typed_value() is True for r in rows):
                return True
    return False


def card(
    answer: dict[str, Any],
    *,
    report_url: str | None,
    model_url: str | None,
    missing_keys: list[str],
    partial: Sequence[str] = (),
    ctpa: bool = False,
) -> dict[str, Any]:
    """The card for one assessed patient."""
    model = answer["model"]
    category = answer["risk_category"]
    now, new = answer["estimates"]["pe_now"], answer["estimates"]["new_pe"]
    synthetic = " [synthetic-data model]" if model["synthetic_data"] else ""
    head = "CTPA ordered: " if ctpa else ""
    later = f"new PE by {new['horizon_days']} d {percent(new['probability'])}"
    what = new["outcome"].split(" (")[0]  # "new PE", or "PE, present now or new"
    if answer["question"] == "pe_now":
        summary = (
            f"{head}PE now? {percent(now['probability'])} ({category}); if excluded, "
            f"{later}{synthetic}"
        )
        lines = [
            f"**Is there a PE now? Estimated probability that the work-up finds one: "
            f"{percent(now['probability'])} ({category})**",
            "If PE is excluded: a new PE by "
            + ", ".join(
                f"{a['horizon_days']} days {percent(a['probability'])}" for a in new["by_horizon"]
            )
            + ".",
        ]
    else:
        summary = (
            f"{head}{what[0].upper()}{what[1:]} by {new['horizon_days']} d: "
            f"{percent(new['probability'])} ({category}){synthetic}"
        )
        lines = [
            "**Risk of a new PE (death competing): "
            + ", ".join(
                f"{percent(a['probability'])} by {a['horizon_days']} days"
                for a in new["by_horizon"]
            )
            + f" ({category} at {new['horizon_days']} days)**",
        ]
    if now["probability"] is None and now.get("not_estimated") and answer["question"] != "pe_now":
        lines += ["", f"PE now: not estimated ({now['not_estimated']})."]
    flags = answer["recommendations"]
    lines += [
        "",
        "Main factors of the estimate in bold (exact SHAP, calibrated log-odds):",
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
    if partial:
        lines += ["", f"Read in part from the FHIR server: {'; '.join(partial)}."]
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
