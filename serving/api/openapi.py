"""The OpenAPI document: BentoML's, completed with what it cannot see.

BentoML documents its ``@bentoml.api`` routes. This adds the one error shape
(``ErrorBody``) to every client error they can return, documents ``/report`` as HTML,
and describes the mounted interoperability routes (FHIR, CDS Hooks, report links), so
that clients and Schemathesis see every route the service answers.
"""

from __future__ import annotations

from importlib.metadata import version as _version
from typing import Any

from serving.api.routes import Routes
from serving.api.schemas import ErrorBody


def _nullable_defaults(node: Any) -> None:
    """OpenAPI 3.0 needs ``nullable: true`` where pydantic's ``X | None = None`` lost it."""
    if isinstance(node, dict):
        if (
            "default" in node
            and node["default"] is None
            and ("type" in node or "$ref" in node or "allOf" in node)
        ):
            node["nullable"] = True
            if "$ref" in node:  # siblings of $ref are ignored in 3.0: wrap it
                node["allOf"] = [{"$ref": node.pop("$ref")}]
        for value in node.values():
            _nullable_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_defaults(value)


def patch_openapi(spec: dict[str, Any], routes: Routes) -> dict[str, Any]:
    """Document ``ErrorBody`` for every client error the routes of the registry can return."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    body_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in body_schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["ErrorBody"] = body_schema
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    texts = {
        "400": "malformed request (not JSON, NaN/Infinity, not Unicode, a key sent twice, "
        "too deep, wrong shape)",
        "401": "bearer token required",
        "403": "bearer token not valid",
        "408": "the request body did not arrive in time",
        "413": "request too large (bytes, members of an object, items of an array)",
        "415": "Content-Type is not application/json",
        "422": "the record breaks the data contract (field, value, rule named)",
        "503": "the audit log cannot be written: no answer is given",
    }
    for schema in schemas.values():
        _nullable_defaults(schema)
    for path, item in spec.get("paths", {}).items():
        for method in item.values():
            if not isinstance(method, dict) or "responses" not in method:
                continue
            for content in method.get("requestBody", {}).get("content", {}).values():
                _nullable_defaults(content.get("schema", {}))  # bodies written inline too
            route = routes.find(path) or routes.find(path + "/")
            if route is not None and route.errors == "json" and route.auth == "bearer":
                for code, text in texts.items():
                    method["responses"][code] = {"description": text, "content": ref}
            if path == "/report":  # the page, not BentoML's default text/plain
                method["responses"]["200"] = {
                    "description": "the one-page report: self-contained HTML",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
    spec.setdefault("paths", {}).update(interop_paths())
    spec["info"] = {**spec.get("info", {}), **API_INFO}
    return spec


#: what /docs.json says the API is (BentoML gives version "None" and its own description)
API_INFO = {
    "title": "pe-risk",
    "version": _version("pe-risk"),
    "description": "Pulmonary embolism in lung cancer: is there a PE now, and how likely is a "
    "new one by 30, 90 and 180 days, with exact explanations, the clinical scores and "
    "guideline flags. Records in the pe-risk data contract (JSON), FHIR R4 bundles or CDS "
    "Hooks 2.0 calls. The shipped model is trained on synthetic data: GET /model says which "
    "model answers and what it was trained on. Every client error has one shape, ErrorBody "
    "(an OperationOutcome on the FHIR route).",
}


def _content(media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": schema}}


_OUTCOME = {
    "type": "object",
    "description": "FHIR R4 OperationOutcome",
    "required": ["resourceType", "issue"],
    "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]}},
}
_ERROR = _content("application/json", {"$ref": "#/components/schemas/ErrorBody"})
_AUTH = {
    "401": {"description": "bearer token required", "content": _ERROR},
    "403": {"description": "bearer token not valid", "content": _ERROR},
}
_GUARDS = {
    "400": {
        "description": "not JSON, not Unicode, a key twice, too deep or malformed",
        "content": _ERROR,
    },
    "408": {"description": "the request body did not arrive in time", "content": _ERROR},
    "413": {"description": "request too large (bytes, members, items)", "content": _ERROR},
    "415": {"description": "Content-Type not accepted", "content": _ERROR},
    "503": {"description": "the audit log cannot be written", "content": _ERROR},
}


def interop_paths() -> dict[str, Any]:
    """The mounted routes of ``serving.interop.routes``, which BentoML does not document."""
    fhir_out = _content("application/fhir+json", _OUTCOME)
    fhir_errors = {
        code: {"description": text, "content": fhir_out}
        for code, text in {
            "400": "not a valid FHIR R4 Bundle (collection, searchset, transaction, batch or document), or a bad parameter",
            "401": "bearer token required",
            "403": "bearer token not valid",
            "404": "the patient parameter names no Patient in the bundle",
            "408": "the request body did not arrive in time",
            "413": "request too large (bytes, or more than 10,000 entries)",
            "415": "Content-Type is not application/fhir+json or application/json",
            "422": "the bundle cannot give a valid record (issues name the resources)",
            "503": "the audit log cannot be written: no answer is given",
        }.items()
    }
    bundle = {
        "type": "object",
        "description": "FHIR R4 Bundle (collection, searchset, transaction, batch or document)",
    }
    hook_call = {
        "type": "object",
        "required": ["hook", "hookInstance", "context"],
        "properties": {
            "hook": {"type": "string"},
            "hookInstance": {"type": "string"},
            "fhirServer": {"type": "string"},
            "fhirAuthorization": {"type": "object"},
            "context": {"type": "object"},
            "prefetch": {"type": "object"},
        },
    }
    service_id = {
        "name": "service_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["pe-risk", "pe-risk-ctpa"]},
    }
    html = _content("text/html", {"type": "string"})
    return {
        "/fhir/risk-assessment": {
            "post": {
                "tags": ["FHIR"],
                "summary": "A FHIR R4 Bundle → RiskAssessment (or a Bundle of them)",
                "parameters": [
                    {
                        "name": "index_date",
                        "in": "query",
                        "schema": {"type": "string", "format": "date"},
                        "description": "the assessment date (default today)",
                    },
                    {"name": "patient", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "suspected_pe",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/fhir+json": {"schema": bundle},
                        "application/json": {"schema": bundle},
                    },
                },
                "responses": {
                    "200": {
                        "description": "RiskAssessment (one patient) or collection Bundle",
                        "content": _content("application/fhir+json", {"type": "object"}),
                    },
                    **fhir_errors,
                },
            }
        },
        "/cds-services": {
            "get": {
                "tags": ["CDS Hooks"],
                "summary": "CDS Hooks discovery",
                "responses": {
                    "200": {
                        "description": "services",
                        "content": _content(
                            "application/json", {"type": "object", "required": ["services"]}
                        ),
                    },
                    **_AUTH,
                },
            }
        },
        "/cds-services/{service_id}": {
            "post": {
                "tags": ["CDS Hooks"],
                "summary": "Call a CDS service: cards",
                "parameters": [service_id],
                "requestBody": {
                    "required": True,
                    "content": _content("application/json", hook_call),
                },
                "responses": {
                    "200": {
                        "description": "cards",
                        "content": _content(
                            "application/json", {"type": "object", "required": ["cards"]}
                        ),
                    },
                    "404": {"description": "no such service", "content": _ERROR},
                    "412": {
                        "description": "required prefetch data missing and not fetched",
                        "content": _ERROR,
                    },
                    **_GUARDS,
                    **_AUTH,
                },
            }
        },
        "/cds-services/{service_id}/feedback": {
            "post": {
                "tags": ["CDS Hooks"],
                "summary": "Card outcomes (audited)",
                "parameters": [service_id],
                "requestBody": {
                    "required": True,
                    "content": _content(
                        "application/json", {"type": "object", "required": ["feedback"]}
                    ),
                },
                "responses": {
                    "200": {
                        "description": "recorded",
                        "content": _content("application/json", {"type": "object"}),
                    },
                    "404": {"description": "no such service", "content": _ERROR},
                    **_GUARDS,
                    **_AUTH,
                },
            }
        },
        "/model": {
            "get": {
                "tags": ["Model"],
                "summary": "The model that answers: version, training data (synthetic or not), "
                "outcomes, per question its calibration and risk bands with sources, metrics, "
                "baselines, gate and feature specification",
                "responses": {
                    "200": {
                        "description": "the model card as JSON",
                        "content": _content(
                            "application/json",
                            {"type": "object", "required": ["model", "questions", "features"]},
                        ),
                    },
                    **_AUTH,
                },
            }
        },
        "/report-link/{token}": {
            "get": {
                "tags": ["CDS Hooks"],
                "summary": "The one-page report behind a card's link (the token is its credential)",
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "the report", "content": html},
                    "404": {"description": "not a report link", "content": html},
                    "410": {"description": "the link has expired", "content": html},
                },
            }
        },
    }
