"""A real `bentoml serve` process over HTTP, and Schemathesis against its /docs.json."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests import bundles
from tests.conftest import base_record
from tests.processes import server_process

pytestmark = [pytest.mark.service, pytest.mark.integration]

TOKEN = "server-test-token"
BODY_TIMEOUT_S = 8
#: one client for the real-server calls: on a busy 2-core machine a first answer (the FHIR
#: models, a cold worker) can take longer than httpx's 5-second default
HTTP = httpx.Client(timeout=60.0)
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def bentoml_serve(
    target: str, env: dict[str, str], cwd: Path, log_path: Path
) -> AbstractContextManager[str]:
    """``bentoml serve target`` until the block ends; yields its URL."""
    return server_process([str(BIN / "bentoml"), "serve", target], "/readyz", log_path, env, cwd)


@pytest.fixture(scope="module")
def server(served_state, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {
        "PE_RISK_STATE_DIR": str(served_state.state_dir),
        "BENTOML_HOME": str(served_state.bentoml_home),
        "PE_RISK_API_TOKEN": TOKEN,
        "PE_RISK_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    }
    with bentoml_serve("serving.service:PERisk", env, ROOT, log_path) as url:
        yield url, log_path


def test_the_built_bento_serves_every_route_on_its_own(served_state, tmp_path) -> None:
    """`bentoml build` packages the service, every file it reads (the mapping table, the
    report's template) and the model: served by tag from an empty folder, it answers every
    route of the registry, the report and the report link included."""
    from serving.service import ROUTES
    from tests.service.test_interop import hook_call, prefetch_of

    env = {"BENTOML_HOME": str(served_state.bentoml_home)}
    built = subprocess.run(
        [str(BIN / "bentoml"), "build", "-o", "tag"],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("pe_risk:")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["PE_RISK_STATE_DIR"] = str(tmp_path / "state")
    fhir_json = {"content-type": "application/fhir+json"}
    with bentoml_serve(tag, env, elsewhere, tmp_path / "bento.log") as url:
        patient = bundles.typical_patient("bento-1", today=date.today())
        call = hook_call("bento-1", prefetch_of(patient))
        answers = {
            "/livez": HTTP.get(f"{url}/livez"),
            "/readyz": HTTP.get(f"{url}/readyz"),
            "/healthz": HTTP.get(f"{url}/healthz"),
            "/predict": HTTP.post(f"{url}/predict", json=base_record()),
            "/predict_batch": HTTP.post(f"{url}/predict_batch", json={"patients": [base_record()]}),
            "/report": HTTP.post(f"{url}/report", json=base_record(d_dimer=1.4)),
            "/model/": HTTP.get(f"{url}/model"),
            "/fhir/": HTTP.post(
                f"{url}/fhir/risk-assessment?index_date={bundles.INDEX}",
                json=bundles.bundle(bundles.typical_patient("bento-1")),
                headers=fhir_json,
            ),
            "/cds-services/": HTTP.post(f"{url}/cds-services/pe-risk", json=call),
        }
        card = answers["/cds-services/"].json()["cards"][0]
        link = card["links"][0]["url"]  # built from PE_RISK_PUBLIC_URL (its default here)
        assert link.startswith("http://localhost:3000/report-link/")
        answers["/report-link/"] = HTTP.get(url + urlsplit(link).path)
        assert set(answers) == {r.path for r in ROUTES.routes}  # every route of the registry
        for path, r in answers.items():
            assert r.status_code == 200, (path, r.text[:500])
        assert answers["/predict"].json()["model"]["synthetic_data"] is True
        assert "<svg" in answers["/report"].text and "SYNTHETIC" in answers["/report"].text
        assert "SYNTHETIC" in answers["/report-link/"].text
        assert answers["/fhir/"].json()["resourceType"] == "RiskAssessment"
        assert HTTP.get(f"{url}/cds-services").json()["services"]
        assert HTTP.get(f"{url}/docs.json").json()["paths"]
    assert list(elsewhere.iterdir()) == []  # its state went to PE_RISK_STATE_DIR, not here


def test_metrics_name_routes_never_report_links_or_invented_paths(server) -> None:
    """Issue 20: a report link is a credential, and BentoML labelled its metrics with the raw
    path, so every opened link was listed in /metrics (and in its access log); invented paths
    grew /metrics without end."""
    from tests.service.test_interop import hook_call, prefetch_of

    url, log_path = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    call = hook_call("m-1", prefetch_of(bundles.typical_patient("m-1", today=date.today())))
    card = HTTP.post(f"{url}/cds-services/pe-risk", json=call, headers=auth).json()["cards"][0]
    path = urlsplit(card["links"][0]["url"]).path
    token = path.rsplit("/", 1)[-1]
    assert len(token) > 40 and HTTP.get(url + path).status_code == 200
    before = HTTP.get(f"{url}/metrics", headers=auth).text
    for i in range(200):
        assert HTTP.get(f"{url}/no-such-page-{i}", headers=auth).status_code == 404
    after = HTTP.get(f"{url}/metrics", headers=auth).text
    assert token not in after and 'endpoint="/report-link/*"' in after
    assert "no-such-page" not in after and 'endpoint="other"' in after
    assert len(after) - len(before) < 4_000  # one "other" series, not 200
    assert 'endpoint="/predict"' in after or 'endpoint="/cds-services/*"' in after
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "/report-link/*" in log and token not in log  # nor in the access log


def test_real_server_predicts_and_exposes_metrics(server) -> None:
    url, _ = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = HTTP.post(f"{url}/predict", json=base_record(d_dimer=1.4, patient_id="P-1"), headers=auth)
    assert r.status_code == 200 and 0 < r.json()["probability"] < 1
    assert HTTP.post(f"{url}/predict", json=base_record()).status_code == 401
    bad = HTTP.post(
        f"{url}/predict",
        content=b"{" * 100_000,
        headers={**auth, "content-type": "application/json"},
    )
    assert bad.status_code == 400
    metrics = HTTP.get(f"{url}/metrics", headers=auth)
    assert metrics.status_code == 200 and "bentoml_service_request_total" in metrics.text
    page = HTTP.post(f"{url}/report", json=base_record(d_dimer=1.4), headers=auth)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text and "SYNTHETIC" in page.text


def test_real_server_speaks_fhir_and_cds_hooks(server) -> None:
    url, _ = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    doc = bundles.bundle(bundles.typical_patient("srv-1"))
    r = HTTP.post(
        f"{url}/fhir/risk-assessment?index_date={bundles.INDEX}",
        json=doc,
        headers={**auth, "content-type": "application/fhir+json"},
    )
    assert r.status_code == 200 and r.json()["resourceType"] == "RiskAssessment"
    probability = r.json()["prediction"][-1]["probabilityDecimal"]  # a new PE by 180 days
    discovery = HTTP.get(f"{url}/cds-services", headers=auth).json()
    assert {s["id"] for s in discovery["services"]} == {"pe-risk", "pe-risk-ctpa"}
    # A CDS Hooks call is assessed on the server's own day: the same patient, dated so that
    # every value has the age it had at INDEX, gets the same estimate.
    resources = bundles.typical_patient("srv-1", today=date.today())
    prefetch = {
        "patient": resources[0],
        "conditions": bundles.bundle(
            [x for x in resources if x["resourceType"] == "Condition"], "searchset"
        ),
        "observations": bundles.bundle(
            [x for x in resources if x["resourceType"] == "Observation"], "searchset"
        ),
        "medicationRequests": bundles.bundle(
            [x for x in resources if x["resourceType"] == "MedicationRequest"], "searchset"
        ),
        "medicationStatements": None,
        "procedures": None,
    }
    call = {
        "hook": "patient-view",
        "hookInstance": "0c7b0a9e-6a38-4c2a-9d53-6d7c6d2d3a11",
        "context": {"userId": "Practitioner/1", "patientId": "srv-1"},
        "prefetch": prefetch,
    }
    cards = HTTP.post(f"{url}/cds-services/pe-risk", json=call, headers=auth).json()["cards"]
    assert len(cards) == 1 and cards[0]["summary"].startswith("New PE by 180 d")
    assert f"{100 * probability:.1f} %" in cards[0]["summary"]
    link = cards[0]["links"][0]["url"]  # from PE_RISK_PUBLIC_URL, never the Host header
    page = HTTP.get(url + urlsplit(link).path)  # a browser: no API token, the link is its own
    assert page.status_code == 200 and "SYNTHETIC" in page.text
    assert 0 < probability < 1


def test_identifiers_never_reach_the_server_log(server) -> None:
    url, log_path = server
    HTTP.post(
        f"{url}/predict",
        json=base_record(patient_id="SECRET-MRN-77"),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    HTTP.post(
        f"{url}/predict",
        json=base_record(patient_id="SECRET-MRN-78", stage="9"),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    # refused by BentoML's own model: its traceback quoted the input (issue 20)
    r = HTTP.post(
        f"{url}/predict_batch",
        json={"patients": [base_record(patient_id="SECRET-MRN-79")], "explain": "maybe"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 400
    r = HTTP.post(
        f"{url}/predict",
        content=b'{"patient_id": "SECRET-MRN-80\\ud800", "age": 70}',
        headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "patient_id"
    time.sleep(0.5)
    log = log_path.read_text()
    assert "SECRET-MRN" not in log and "input_value" not in log
    assert "validation errors: bool_type; the request's values are not logged" in log


def test_schemathesis_finds_no_server_errors_or_schema_violations(server, tmp_path) -> None:
    url, _ = server
    proc = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{url}/docs.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "40",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--seed",
            "7",
            "--request-timeout",
            "60",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
        assert r.status == 200


def test_a_real_server_takes_cds_calls_signed_by_a_registered_ehr(served_state, tmp_path) -> None:
    """PE_RISK_CDS_ISSUERS registers an EHR's keys: its signed patient-view call (aud = the
    public URL of the endpoint) gets the card; no JWT, the API token or a replay get 401."""
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.service.test_interop import hook_call, prefetch_of

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    issuers = tmp_path / "issuers.json"
    ehr, public = "https://ehr.hospital.example/", "https://pe-risk.hospital.example"
    issuers.write_text(json.dumps({ehr: {"jwks": {"keys": [{**jwk, "kid": "k1"}]}}}))
    env = {
        "PE_RISK_STATE_DIR": str(served_state.state_dir),
        "BENTOML_HOME": str(served_state.bentoml_home),
        "PE_RISK_API_TOKEN": TOKEN,
        "PE_RISK_CDS_ISSUERS": str(issuers),
        "PE_RISK_PUBLIC_URL": public,
    }
    call = hook_call("jwt-1", prefetch_of(bundles.typical_patient("jwt-1", today=date.today())))
    with bentoml_serve("serving.service:PERisk", env, ROOT, tmp_path / "serve.log") as url:
        now = int(time.time())  # the server checks exp against its own clock
        claims = {"iss": ehr, "aud": f"{public}/cds-services/pe-risk", "iat": now, "exp": now + 300}
        signed = jwt.encode({**claims, "jti": str(uuid.uuid4())}, key, "ES384", {"kid": "k1"})
        bearer = {"Authorization": f"Bearer {signed}"}
        r = HTTP.post(f"{url}/cds-services/pe-risk", json=call, headers=bearer)
        assert r.status_code == 200, r.text
        assert r.json()["cards"][0]["links"][0]["url"].startswith(f"{public}/report-link/")
        assert (
            HTTP.post(f"{url}/cds-services/pe-risk", json=call, headers=bearer).status_code == 401
        )
        assert HTTP.post(f"{url}/cds-services/pe-risk", json=call).status_code == 401
        api = {"Authorization": f"Bearer {TOKEN}"}
        assert HTTP.post(f"{url}/cds-services/pe-risk", json=call, headers=api).status_code == 401
        assert HTTP.post(f"{url}/predict", json=base_record(), headers=api).status_code == 200


def _stalled(url: str, n: int) -> list[socket.socket]:
    """``n`` callers that send a request's headers and the start of its body, then stall."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"age":'
    ).encode()
    out = []
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(head)
        out.append(s)
    return out


def test_stalled_uploads_get_408_and_do_not_lock_callers_out(server) -> None:
    """400 connections that sent headers and stalled took every concurrency slot: callers
    got 429 for ~10 s, the stalled ones 504. Now a body is read before a slot is taken, and
    one that stops arriving for PE_RISK_BODY_TIMEOUT_S gets 408 and its connection closed."""
    url, _ = server
    stalled = _stalled(url, 300)  # more than the service's max_concurrency (256)
    try:
        time.sleep(0.5)
        codes = [
            HTTP.post(
                f"{url}/predict", json=base_record(), headers={"Authorization": f"Bearer {TOKEN}"}
            ).status_code
            for _ in range(5)
        ]
        assert codes == [200] * 5
        for s in stalled:  # they were served while every stalled caller still waits
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
            s.setblocking(True)
        answers = set()
        for s in stalled:
            s.settimeout(30)
            received = b""
            while chunk := s.recv(65536):  # until the server closes the connection
                received += chunk
            answers.add(received.split(b"\r\n", 1)[0])
        assert answers == {b"HTTP/1.1 408 Request Timeout"}
    finally:
        for s in stalled:
            s.close()


def test_an_unwritable_audit_log_fails_readiness_on_a_real_server(server, served_state) -> None:
    """BentoML's /readyz said ready while every answer failed; now it fails until the log
    can be written, and the answers say why (503)."""
    url, log_path = server
    audit = served_state.log_dir / "audit.jsonl"
    kept = audit.with_suffix(".kept-server")
    audit.touch()
    audit.rename(kept)
    audit.mkdir()
    try:
        assert HTTP.get(f"{url}/readyz").status_code == 503
        r = HTTP.post(
            f"{url}/predict", json=base_record(), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code == 503 and "cannot be written (Is a directory)" in r.json()["error"]
    finally:
        audit.rmdir()
        kept.rename(audit)
    assert HTTP.get(f"{url}/readyz").status_code == 200
    assert "not ready: the audit log" in log_path.read_text()
