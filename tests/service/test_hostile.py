"""Hostile and odd callers in process (issue 20): text that is not Unicode, keys sent twice,
bodies wide enough to cost a worker seconds, more feedback than a card can have, and an
audit log that cannot be written. Each case answered 500, 200 or 504 before."""

from __future__ import annotations

import json
import re
import shutil
import uuid

import pytest

from serving.api.schemas import MAX_BATCH, MAX_ERRORS, MAX_FEEDBACK, MAX_MEMBERS
from tests.conftest import base_record
from tests.service.test_interop import spec_examples

pytestmark = pytest.mark.service

JSON = {"content-type": "application/json"}


def _post(client, path: str, raw: str | bytes):
    return client.post(path, content=raw, headers=JSON)


def _record_text(**extra: str) -> str:
    """A valid record as JSON text, with ``extra`` members written in as given."""
    text = json.dumps(base_record())[:-1]
    return text + "".join(f", {json.dumps(k)}: {v}" for k, v in extra.items()) + "}"


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_lone_surrogate_is_refused_naming_its_field(client) -> None:
    """``"\\ud800"`` is valid JSON escape syntax but not Unicode: 400 naming the field (was a
    400 naming BentoML's internal model on /predict, a plain-text 500 in feedback)."""
    r = _post(client, "/predict", _record_text(patient_id='"MRN\\ud800"'))
    assert r.status_code == 400
    assert r.json()["detail"][0] | {"message": ""} == {
        "field": "patient_id",
        "value": None,
        "rule": "text",
        "message": "",
    }
    feedback = spec_examples("cds-hooks-2.0.1-specification.md", "feedback")[1]
    text = json.dumps(feedback).replace('"outcome": "overridden"', '"outcome": "over\\udfffridden"')
    r = _post(client, "/cds-services/pe-risk/feedback", text)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["detail"][0]["field"] == "feedback[0].outcome"


def test_a_key_sent_twice_is_refused(client) -> None:
    """``{"age": "x", ..., "age": 67}`` was answered with the last value; which one the
    sender meant is not guessed."""
    r = _post(client, "/predict", _record_text(stage='"I"'))  # base_record has its stage
    assert r.status_code == 400
    detail = r.json()["detail"][0]
    assert detail["field"] == "stage" and detail["rule"] == "duplicate"
    assert f'"{base_record()["stage"]}", then "I"' in detail["message"]
    nested = {"patients": [base_record(d_dimer={"value": 900, "unit": "ng/mL{FEU}"})]}
    text = json.dumps(nested).replace(
        '"unit": "ng/mL{FEU}"', '"unit": "ng/mL{FEU}", "unit": "mg/L{FEU}"'
    )
    assert text != json.dumps(nested)
    r = _post(client, "/predict_batch", text)
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "unit"
    # the same key in two different objects is no duplicate
    r = client.post("/predict_batch", json={"patients": [base_record(), base_record()]})
    assert r.status_code == 200


def test_wide_bodies_are_refused_before_any_record_is_read(client, audit_path) -> None:
    """150,000 unknown fields cost a worker 10 s and ended in 504; a 50,000-entry bundle
    took 10 s. Objects beyond MAX_MEMBERS members and arrays beyond MAX_BATCH items: 413,
    naming where, before a record is validated (no audit line: nothing was assessed)."""
    lines_before = _lines(audit_path)
    wide = base_record() | {f"extra_{i}": 1 for i in range(MAX_MEMBERS + 1)}
    r = client.post("/predict", json=wide)
    assert r.status_code == 413 and str(MAX_MEMBERS) in r.json()["error"]
    r = client.post("/predict_batch", json={"patients": [base_record()] * (MAX_BATCH + 1)})
    assert r.status_code == 413 and r.json()["detail"][0]["field"] == "patients"
    assert "split" in r.json()["error"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{}] * (MAX_BATCH + 1)}
    r = client.post(
        "/fhir/risk-assessment", json=bundle, headers={"content-type": "application/fhir+json"}
    )
    assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["expression"] == ["entry"]
    assert _lines(audit_path) == lines_before


def test_the_errors_of_one_record_are_capped(client) -> None:
    """A record with 200 unknown fields gets the first MAX_ERRORS problems and a count of
    the rest, not 200 error entries (in a batch of 10,000, two million)."""
    bad = base_record() | {f"extra_{i}": 1 for i in range(200)}
    r = client.post("/predict", json=bad)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == MAX_ERRORS + 1
    assert detail[-1]["rule"] == "truncated" and "150 more" in detail[-1]["message"]


def test_feedback_is_capped_per_call(client, audit_path) -> None:
    """One call with 200,000 feedback items wrote 200,000 audit lines."""
    item = spec_examples("cds-hooks-2.0.1-specification.md", "feedback")[1]["feedback"][0]
    lines_before = _lines(audit_path)
    many = {"feedback": [item | {"card": str(uuid.uuid4())} for _ in range(MAX_FEEDBACK + 1)]}
    r = client.post("/cds-services/pe-risk/feedback", json=many)
    assert r.status_code == 413 and r.json()["detail"][0]["field"] == "feedback"
    assert _lines(audit_path) == lines_before


def test_a_batch_envelope_error_names_the_field_value_and_what_is_accepted(client) -> None:
    """Was "1 validation error for BatchRequestIODescriptor" with value null."""
    r = client.post("/predict_batch", json={"patients": [base_record()], "explian": True})
    assert r.status_code == 400
    body = r.json()
    assert body["error"].startswith("explian: not a field of this request")
    assert "did you mean 'explain'?" in body["error"]
    assert body["detail"] == [
        {
            "field": "explian",
            "value": True,
            "rule": "extra_forbidden",
            "message": body["error"],
        }
    ]
    r = client.post("/predict_batch", json={"patients": [base_record()], "explain": "maybe"})
    assert r.status_code == 400 and r.json()["detail"][0]["value"] == "maybe"


@pytest.fixture
def unwritable_audit(audit_path):
    """A directory where the audit log should be, as an operator's mistake leaves it."""
    kept = audit_path.with_suffix(".kept")
    audit_path.touch()
    shutil.move(audit_path, kept)
    audit_path.mkdir()
    yield audit_path
    audit_path.rmdir()
    shutil.move(kept, audit_path)


def test_an_unwritable_audit_log_answers_503_naming_it_and_fails_readiness(
    client, unwritable_audit
) -> None:
    """Every endpoint answered a generic 500 while /readyz said ready."""
    checks = [
        client.post("/predict", json=base_record()),
        client.post("/predict_batch", json={"patients": [base_record()]}),
        client.post("/report", json=base_record()),
        client.post(
            "/cds-services/pe-risk/feedback",
            json=spec_examples("cds-hooks-2.0.1-specification.md", "feedback")[1],
        ),
    ]
    for r in checks:
        assert r.status_code == 503, r.text
        assert str(unwritable_audit) in r.json()["error"] and "Is a directory" in r.json()["error"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/livez").status_code == 200  # alive: restarting it would not help


def test_readiness_returns_once_the_audit_log_can_be_written(client, audit_path) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.post("/predict", json=base_record()).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        '{"age": 67, "stage": "\u2200"}'.encode("utf-16-le"),  # U+2200 is the bytes 00 22
        "\ufeff".encode() + json.dumps(base_record()).encode(),  # a UTF-8 byte-order mark
    ],
    ids=["utf-16", "bom"],
)
def test_a_body_that_is_not_utf8_json_is_a_400(client, raw) -> None:
    """The standard library reads UTF-16 on its own; the member count, taken from the
    bytes, then disagreed with the parse and the guard answered 500."""
    r = _post(client, "/predict", raw)
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]


def test_the_documentation_page_loads_nothing_from_outside(client) -> None:
    """BentoML's page at / loads a Google Tag Manager frame: on an offline hospital network
    it fails, elsewhere it tells a third party who reads the API's documentation."""
    from importlib.metadata import version

    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "googletagmanager" not in r.text and "https://" not in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in re.findall(r'(?:href|src)="\./([^"]+)"', r.text):
        assert client.get(f"/{asset}").status_code == 200, asset  # the UI is all local
    spec = client.get("/docs.json").json()
    assert spec["info"]["version"] == version("pe-risk")  # was "None"
    assert "synthetic data" in spec["info"]["description"]
    assert "200" in spec["paths"]["/model"]["get"]["responses"]


@pytest.mark.parametrize(
    ("method", "path", "shape"),
    [
        ("GET", "/predict", "json"),
        ("PUT", "/predict_batch", "json"),
        ("GET", "/fhir/risk-assessment", "fhir"),
        ("GET", "/cds-services/pe-risk", "json"),
    ],
)
def test_a_wrong_method_gets_405_in_the_one_error_shape(client, method, path, shape) -> None:
    """Was Starlette's plain-text "Method Not Allowed"."""
    r = client.request(method, path)
    assert r.status_code == 405 and r.headers.get("allow")
    if shape == "fhir":
        assert r.json()["resourceType"] == "OperationOutcome"
    else:
        assert r.json()["detail"][0]["rule"] == "method" and method in r.json()["error"]


def test_a_refused_batch_record_names_its_patient(client) -> None:
    r = client.post(
        "/predict_batch",
        json={"patients": [base_record(patient_id="A-1"), base_record(patient_id="B-2", age=-4)]},
    )
    assert r.status_code == 200
    bad = r.json()["results"][1]
    assert bad["ok"] is False and bad["patient_id"] == "B-2" and bad["errors"][0]["field"] == "age"
