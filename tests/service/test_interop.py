"""FHIR R4 and CDS Hooks over HTTP, in process: the same answers as /predict, valid FHIR,
OperationOutcomes for what was not used, cards, 412, fetching, feedback and report links."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment

from tests import bundles as b
from tests.service.conftest import FHIR_TOKEN

pytestmark = pytest.mark.service

URL = f"/fhir/risk-assessment?index_date={b.INDEX}"
FHIR = {"content-type": "application/fhir+json"}

#: the typical patient of tests/bundles.py, written by hand as /predict's JSON record
SAME_PATIENT = {
    "patient_id": "p1",
    "age": 68,
    "sex": "male",
    "histology": "adenocarcinoma",
    "stage": "IV",
    "months_since_diagnosis": 5.7,
    "copd": True,
    "d_dimer": {"value": 1800, "unit": "ng/mL{FEU}"},
    "platelets": 412,
    "hemoglobin": {"value": 11.8, "unit": "g/dL"},
    "leukocytes": 12.4,
    "creatinine": {"value": 0.9, "unit": "mg/dL"},
    "bmi": 24.1,
    "heart_rate": 104,
    "systolic_bp": 128,
    "chemotherapy": True,
    "platinum_chemotherapy": True,
}


def post_bundle(client, resources, url=URL, kind="collection"):
    return client.post(url, content=json.dumps(b.bundle(resources, kind)), headers=FHIR)


def test_a_bundle_gets_a_valid_risk_assessment_with_the_probability_of_predict(client):
    r = post_bundle(client, b.typical_patient())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    ra = r.json()
    RiskAssessment.model_validate(ra)  # fhir.resources R4B
    same = client.post("/predict", json=SAME_PATIENT).json()
    prediction = ra["prediction"][0]
    assert prediction["probabilityDecimal"] == pytest.approx(same["probability"], abs=1e-12)
    assert prediction["outcome"]["coding"][0]["code"] == "59282003"
    assert prediction["qualitativeRisk"]["text"] == same["risk_category"]
    assert prediction["whenRange"]["high"]["value"] == 180
    assert ra["subject"]["reference"] == "Patient/p1"
    assert ra["method"]["coding"][0]["version"] == same["model"]["version"]
    notes = " ".join(n["text"] for n in ra["note"])
    assert "Main contributors" in notes and "SYNTHETIC" in notes
    top = same["explanation"]["contributions"][0]
    assert f"{top['contribution']:+.2f}" in notes


def test_basis_names_the_resources_used_and_the_outcome_what_was_not(client):
    resources = b.typical_patient()
    old_platelets, new_platelets, glucose = resources[5], resources[6], resources[-1]
    ra = post_bundle(client, resources).json()
    basis = {x["reference"] for x in ra["basis"]}
    assert {"Patient/p1", f"Observation/{new_platelets['id']}"} <= basis
    assert f"Observation/{resources[4]['id']}" in basis  # the D-dimer
    assert f"Observation/{old_platelets['id']}" not in basis
    (outcome,) = ra["contained"]
    OperationOutcome.model_validate(outcome)
    assert ra["extension"][0]["valueReference"]["reference"] == "#" + outcome["id"]
    said = " ".join(i["diagnostics"] for i in outcome["issue"])
    assert f"Observation/{glucose['id']}" in said and "2345-7" in said
    assert "Encounter/" in said
    assert f"Observation/{old_platelets['id']}" in said


def test_several_patients_get_a_bundle_of_risk_assessments(client):
    one, two = b.typical_patient("p1"), b.typical_patient("p2")
    two[4]["valueQuantity"]["value"] = 300  # p2: a lower D-dimer
    r = post_bundle(client, [*one, *two], kind="searchset")
    assert r.status_code == 200
    doc = r.json()
    Bundle.model_validate(doc)
    ras = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "RiskAssessment"]
    by_subject = {
        ra["subject"]["reference"]: ra["prediction"][0]["probabilityDecimal"] for ra in ras
    }
    assert set(by_subject) == {"Patient/p1", "Patient/p2"}
    assert by_subject["Patient/p2"] < by_subject["Patient/p1"]
    one_only = post_bundle(client, [*one, *two], url=URL + "&patient=p2").json()
    assert one_only["resourceType"] == "RiskAssessment"
    assert one_only["prediction"][0]["probabilityDecimal"] == by_subject["Patient/p2"]
    missing = post_bundle(client, one, url=URL + "&patient=nobody")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("body", "ctype", "status", "said"),
    [
        (b"{not json", "application/fhir+json", 400, "not valid JSON"),
        (
            b'{"resourceType": "Patient", "id": "x"}',
            "application/fhir+json",
            400,
            "send a FHIR Bundle",
        ),
        (
            json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": []}).encode(),
            "application/json",
            400,
            "Bundle.type 'transaction'",
        ),
        (b"<Bundle/>", "application/fhir+xml", 415, "application/fhir+json"),
    ],
)
def test_an_invalid_bundle_gets_a_400_operation_outcome(client, body, ctype, status, said):
    r = client.post(URL, content=body, headers={"content-type": ctype})
    assert r.status_code == status
    outcome = r.json()
    OperationOutcome.model_validate(outcome)
    assert said in outcome["issue"][0]["diagnostics"]


def test_a_structurally_invalid_resource_is_named(client):
    doc = b.bundle(b.typical_patient())
    doc["entry"][4]["resource"]["valueQuantity"]["value"] = "high"
    r = client.post(URL, content=json.dumps(doc), headers=FHIR)
    assert r.status_code == 400
    assert any("entry[4].resource" in i["diagnostics"] for i in r.json()["issue"])


def test_a_bundle_that_cannot_give_a_valid_record_gets_422_naming_the_resource(client):
    resources = b.typical_patient()
    resources[6]["valueQuantity"]["value"] = 5000  # platelets above the hard range
    r = post_bundle(client, resources)
    assert r.status_code == 422
    said = " ".join(i["diagnostics"] for i in r.json()["issue"])
    assert f"Observation/{resources[6]['id']}" in said and "platelets" in said
    no_cancer = [x for x in b.typical_patient() if x.get("resourceType") != "Condition"]
    r = post_bundle(client, no_cancer)
    assert r.status_code == 422 and "no lung cancer Condition" in r.text


def test_a_bundle_with_an_integer_beyond_64_bits_is_answered_not_crashed(client):
    resources = b.typical_patient()
    raw = json.dumps(b.bundle(resources)).replace('"value": 412', '"value": ' + "9" * 30)
    r = client.post(URL, content=raw, headers=FHIR)
    assert r.status_code == 422  # platelets out of range, named
    assert "platelets" in r.text and r.json()["resourceType"] == "OperationOutcome"


def test_fhir_errors_with_auth_are_operation_outcomes_too(client):
    r = client.post(URL, content=b"{}", headers={**FHIR, "Authorization": ""})
    assert r.status_code == 401
    assert r.json()["resourceType"] == "OperationOutcome"


# ------------------------------------------------------------------------ CDS Hooks
def searchset(resources):
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def prefetch_of(resources):
    by = lambda t: searchset([r for r in resources if r["resourceType"] == t])  # noqa: E731
    return {
        "patient": resources[0],
        "conditions": by("Condition"),
        "observations": by("Observation"),
        "medicationRequests": by("MedicationRequest"),
        "medicationStatements": None,
        "procedures": None,
    }


def hook_call(pid, prefetch, hook="patient-view", **context):
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": pid, **context},
        "prefetch": prefetch,
    }


def test_discovery_lists_the_services_with_prefetch_templates(client):
    r = client.get("/cds-services")
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json()["services"]}
    assert services["pe-risk"]["hook"] == "patient-view"
    assert services["pe-risk-ctpa"]["hook"] == "order-select"
    prefetch = services["pe-risk"]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert "http://loinc.org|48065-7" in prefetch["observations"]  # from the mapping table
    for s in services.values():
        assert s["description"] and s["title"]


def test_patient_view_card_tells_the_risk_factors_flags_and_links_the_report(client):
    resources = b.typical_patient("cds-1")
    r = client.post("/cds-services/pe-risk", json=hook_call("cds-1", prefetch_of(resources)))
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    same = client.post("/predict", json={**SAME_PATIENT, "patient_id": "cds-1"}).json()
    assert len(card["summary"]) < 140
    assert f"{100 * same['probability']:.1f} %" in card["summary"]
    assert (
        card["indicator"]
        == {"low": "info", "intermediate": "warning", "high": "critical"}[same["risk_category"]]
    )
    assert "Main factors" in card["detail"] and "- " in card["detail"]
    for flag in same["recommendations"]:
        assert flag["text"] in card["detail"]
    assert same["model"]["version"] in card["source"]["label"]
    (link,) = card["links"]
    assert link["type"] == "absolute"
    page = client.get(link["url"].replace("http://testserver", ""), headers={"Authorization": ""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"{100 * same['probability']:.1f}" in page.text  # the same patient's report


def test_a_cds_call_leaves_out_values_too_old_on_the_day_it_assesses(client, monkeypatch):
    """Nine days after the bundle's dates the D-dimer (7-day limit) and the vital signs
    (1-day limit) are too old: the card answers as for the record without them."""
    import bentoml

    monkeypatch.setattr(bentoml.get_current_service(), "today", lambda: b.INDEX + timedelta(9))
    resources = b.typical_patient("cds-old")
    r = client.post("/cds-services/pe-risk", json=hook_call("cds-old", prefetch_of(resources)))
    (card,) = r.json()["cards"]
    stale = ("d_dimer", "heart_rate", "systolic_bp")
    later = {k: v for k, v in SAME_PATIENT.items() if k not in stale}
    later["months_since_diagnosis"] = round((175 + 9) / 30.4375, 1)  # diagnosed INDEX − 175 d
    expected = client.post("/predict", json=later).json()
    assert f"{100 * expected['probability']:.1f} %" in card["summary"]
    fresh = client.post("/predict", json=SAME_PATIENT).json()
    assert f"{100 * fresh['probability']:.1f} %" not in card["summary"]


def test_missing_required_prefetch_that_cannot_be_fetched_is_412(client):
    prefetch = prefetch_of(b.typical_patient("cds-2"))
    del prefetch["observations"]
    r = client.post("/cds-services/pe-risk", json=hook_call("cds-2", prefetch))
    assert r.status_code == 412
    assert "observations" in r.json()["error"] and "no fhirServer" in r.json()["error"]
    call = hook_call("cds-2", prefetch)
    call["fhirServer"] = "http://169.254.169.254/latest"  # not on the allow-list: never fetched
    call["fhirAuthorization"] = {"access_token": "x", "token_type": "Bearer"}
    r = client.post("/cds-services/pe-risk", json=call)
    assert r.status_code == 412 and "allow-list" in r.json()["error"]


def test_missing_prefetch_is_fetched_from_an_allowed_fhir_server_page_by_page(client, fhir_server):
    resources = b.typical_patient("cds-3")
    fhir_server.resources = resources
    call = hook_call("cds-3", None)
    call["fhirServer"] = fhir_server.url
    call["fhirAuthorization"] = {"access_token": FHIR_TOKEN, "token_type": "Bearer"}
    fhir_server.requests.clear()
    r = client.post("/cds-services/pe-risk", json=call)
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    with_prefetch = client.post(
        "/cds-services/pe-risk", json=hook_call("cds-3", prefetch_of(resources))
    ).json()["cards"][0]
    assert card["summary"] == with_prefetch["summary"]
    assert any("_page=2" in p for p in fhir_server.requests)  # the next links were followed
    call["fhirAuthorization"]["access_token"] = "wrong"
    assert client.post("/cds-services/pe-risk", json=call).status_code == 412


def test_an_unreachable_fhir_server_is_unobtainable_data_not_a_crash():
    from serving.interop.routes import _fetch

    with pytest.raises(OSError, match="ConnectError"):
        _fetch("http://127.0.0.1:9/fhir/Patient/x", "token")  # discard port: refused


def test_no_lung_cancer_means_no_card_and_no_stage_an_info_card(client):
    resources = [x for x in b.typical_patient("cds-4") if x.get("resourceType") != "Condition"]
    r = client.post("/cds-services/pe-risk", json=hook_call("cds-4", prefetch_of(resources)))
    assert r.status_code == 200 and r.json() == {"cards": []}
    no_stage = [x for x in b.typical_patient("cds-5") if "21908-9" not in str(x.get("code"))]
    r = client.post("/cds-services/pe-risk", json=hook_call("cds-5", prefetch_of(no_stage)))
    (card,) = r.json()["cards"]
    assert card["indicator"] == "info" and "stage" in card["detail"]


def test_order_select_answers_for_a_ctpa_order_as_suspected_pe(client):
    resources = b.typical_patient("cds-6")
    order = {
        "resourceType": "ServiceRequest",
        "id": "ctpa-1",
        "status": "draft",
        "intent": "order",
        "code": b.concept("http://www.ama-assn.org/go/cpt", "71275", "CT angiography, chest"),
        "subject": {"reference": "Patient/cds-6"},
    }
    context = {"selections": ["ServiceRequest/ctpa-1"], "draftOrders": searchset([order])}
    call = hook_call("cds-6", prefetch_of(resources), hook="order-select", **context)
    r = client.post("/cds-services/pe-risk-ctpa", json=call)
    (card,) = r.json()["cards"]
    suspected = client.post(
        "/predict", json={**SAME_PATIENT, "patient_id": "cds-6", "suspected_pe": True}
    ).json()
    assert card["summary"].startswith("CTPA ordered: ")
    assert f"{100 * suspected['probability']:.1f} %" in card["summary"]
    other = {**order, "code": b.concept(b.LOINC, "24558-9", "CT Abdomen")}
    call["context"]["draftOrders"] = searchset([other])
    assert client.post("/cds-services/pe-risk-ctpa", json=call).json() == {"cards": []}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/cds-services/nope", hook_call("x", {}), 404),
        ("/cds-services/pe-risk", {"hook": "patient-view"}, 400),
        ("/cds-services/pe-risk", hook_call("x", {}, hook="order-select"), 400),
        ("/cds-services/pe-risk", {**hook_call("x", {}), "context": {"userId": "u"}}, 400),
        ("/cds-services/pe-risk", hook_call("x", {"patient": "not a resource"}), 400),
        (
            "/cds-services/pe-risk",
            hook_call("x", {"conditions": {"resourceType": "Bundle", "entry": ["x"]}}),
            400,
        ),
        (
            "/cds-services/pe-risk",
            hook_call(
                "x",
                {
                    "patient": {"resourceType": "Patient", "id": "x", "gender": 3},
                    "conditions": None,
                    "observations": None,
                },
            ),
            400,
        ),
        (
            "/cds-services/pe-risk-ctpa",
            hook_call("x", {}, hook="order-select", selections=[{}]),
            400,
        ),
        (
            "/cds-services/pe-risk-ctpa",
            hook_call(
                "x",
                {},
                hook="order-select",
                selections=["ServiceRequest/1"],
                draftOrders={
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": "x"}],
                },
            ),
            400,
        ),
    ],
)
def test_bad_cds_calls_are_4xx(client, path, body, status):
    r = client.post(path, json=body)
    assert r.status_code == status
    assert r.json()["error"]


def test_feedback_is_audited_without_identifiers(client, audit_path):
    card = str(uuid.uuid4())
    body = {
        "feedback": [
            {
                "card": card,
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "not-relevant"}},
            }
        ]
    }
    r = client.post("/cds-services/pe-risk/feedback", json=body)
    assert r.status_code == 200
    line = json.loads(audit_path.read_text().splitlines()[-1])
    assert line["card"] == card and line["outcome"] == "overridden"
    assert line["override_reason"] == "not-relevant"
    bad = client.post("/cds-services/pe-risk/feedback", json={"feedback": [{"card": card}]})
    assert bad.status_code == 400
    odd = {"feedback": [{"card": card, "outcome": "overridden", "overrideReason": "busy"}]}
    assert client.post("/cds-services/pe-risk/feedback", json=odd).status_code == 200


def test_a_forged_or_expired_report_link_does_not_open(client, served_state):
    from serving.interop.links import LinkError, ReportLinks, link_key

    r = client.get("/report-link/gAAAAABforged", headers={"Authorization": ""})
    assert r.status_code == 404 and "not a valid" in r.text
    sealed_at = 1_900_000_000.0  # the test's own clock: the link's age is chosen, not waited for
    now = sealed_at
    links = ReportLinks(link_key(served_state), ttl_s=3600, clock=lambda: now)
    token = links.seal(SAME_PATIENT)
    now = sealed_at + 3600  # the last second it opens
    assert links.open(token) == SAME_PATIENT
    now = sealed_at + 3601
    with pytest.raises(LinkError) as err:
        links.open(token)
    assert err.value.expired
    now = sealed_at
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(LinkError) as err:
        links.open(tampered)
    assert not err.value.expired
