"""FHIR R4 and CDS Hooks over HTTP, in process: the same answers as /predict, valid FHIR,
OperationOutcomes for what was not used, cards, 412, fetching, feedback and report links."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

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
    assert same["question"] == "new_pe"  # PE is not suspected: no PE-now prediction
    by_horizon = same["estimates"]["new_pe"]["by_horizon"]
    assert [x["whenRange"]["high"]["value"] for x in ra["prediction"]] == [30, 90, 180]
    for prediction, at in zip(ra["prediction"], by_horizon, strict=True):
        assert prediction["probabilityDecimal"] == pytest.approx(at["probability"], abs=1e-12)
        assert prediction["outcome"]["coding"][0]["code"] == "59282003"
        assert "new PE (death competing)" in prediction["outcome"]["text"]
    prediction = ra["prediction"][-1]
    assert prediction["probabilityDecimal"] == pytest.approx(same["probability"], abs=1e-12)
    assert prediction["qualitativeRisk"]["text"] == same["risk_category"]
    assert "qualitativeRisk" not in ra["prediction"][0]  # the bands are anchored at 180 days
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
        ra["subject"]["reference"]: ra["prediction"][-1]["probabilityDecimal"] for ra in ras
    }
    assert set(by_subject) == {"Patient/p1", "Patient/p2"}
    assert by_subject["Patient/p2"] < by_subject["Patient/p1"]
    one_only = post_bundle(client, [*one, *two], url=URL + "&patient=p2").json()
    assert one_only["resourceType"] == "RiskAssessment"
    assert one_only["prediction"][-1]["probabilityDecimal"] == by_subject["Patient/p2"]
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
            json.dumps({"resourceType": "Bundle", "type": "message", "entry": []}).encode(),
            "application/json",
            400,
            "Bundle.type 'message'",
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
    assert "http://loinc.org|38483-4" in prefetch["observations"]  # creatinine in blood
    # servers match Observation.code: systolic pressure arrives inside its panels
    assert "http://loinc.org|85354-9" in prefetch["observations"]
    assert "http://loinc.org|55284-4" in prefetch["observations"]
    assert prefetch["observations"].endswith("&_sort=-date")  # newest first when paged
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
    assert link["url"].startswith("http://localhost:3000/report-link/")  # PE_RISK_PUBLIC_URL
    page = client.get(urlsplit(link["url"]).path, headers={"Authorization": ""})
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
    unused = card["detail"].split("Not found in the record:")[1].split(".")[0]
    assert "d_dimer" in unused  # the 9-day-old D-dimer was left out, and the card says so
    fresh = client.post("/predict", json=SAME_PATIENT).json()
    assert "d_dimer" not in {w["field"] for w in fresh["warnings"]}


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
    from serving.interop.fhir_client import fetch

    with pytest.raises(OSError, match="ConnectError"):
        fetch("http://127.0.0.1:9/fhir/Patient/x", "http://127.0.0.1:9/fhir", "token")  # refused


def test_the_ehrs_token_goes_to_its_fhir_server_only(fhir_server):
    """A next link to another host is not followed (the EHR's token would go there)."""
    from serving.interop.fhir_client import fetch

    elsewhere = "http://127.0.0.1:9/fhir/Condition?patient=x&_page=2"  # would be refused
    fhir_server.answers["Condition"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [],
        "link": [{"relation": "next", "url": elsewhere}],
    }
    try:
        got = fetch(f"{fhir_server.url}/Condition?patient=x", fhir_server.url, FHIR_TOKEN)
    finally:
        fhir_server.answers.clear()
    assert got.truncated == f"a next link outside {fhir_server.url} was not followed"


def test_paging_stops_after_20_pages_and_says_so(fhir_server):
    from serving.interop.fhir_client import MAX_PAGES, fetch

    url = f"{fhir_server.url}/Observation?patient=x"
    fhir_server.answers["Observation"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": "o", "status": "final"}}],
        "link": [{"relation": "next", "url": url}],  # a server that never stops
    }
    fhir_server.requests.clear()
    try:
        got = fetch(url, fhir_server.url, FHIR_TOKEN)
    finally:
        fhir_server.answers.clear()
    assert len(fhir_server.requests) == MAX_PAGES == 20
    assert got.truncated and "more than 20 pages" in got.truncated
    assert len(got.resource["entry"]) == MAX_PAGES


@pytest.mark.parametrize(
    "answer",
    [
        [{"resourceType": "Condition"}],
        "Condition",
        {"resourceType": "Bundle", "type": "searchset", "entry": 3},
        {"resourceType": "Bundle", "type": "searchset", "entry": [], "link": "next"},
    ],
)
def test_a_malformed_fhir_answer_is_412_never_500(client, fhir_server, answer):
    resources = b.typical_patient("cds-odd")
    prefetch = prefetch_of(resources)
    del prefetch["conditions"]
    call = hook_call("cds-odd", prefetch)
    call["fhirServer"] = fhir_server.url
    call["fhirAuthorization"] = {"access_token": FHIR_TOKEN, "token_type": "Bearer"}
    fhir_server.answers["Condition"] = answer
    try:
        r = client.post("/cds-services/pe-risk", json=call)
    finally:
        fhir_server.answers.clear()
    assert r.status_code == 412, r.text
    assert "conditions" in r.json()["error"]


@pytest.mark.parametrize("pid", ["../../admin", "a/b", "x" * 65, "", "p 1"])
def test_a_patient_id_that_is_not_a_fhir_id_is_400_before_any_url_is_built(client, pid):
    r = client.post("/cds-services/pe-risk", json=hook_call(pid, None))
    assert r.status_code == 400
    assert "context.patientId must be a FHIR id" in r.json()["error"]


def test_card_links_come_from_the_public_url_not_the_host_header(client):
    resources = b.typical_patient("cds-host")
    call = hook_call("cds-host", prefetch_of(resources))
    r = client.post("/cds-services/pe-risk", json=call, headers={"Host": "attacker.example"})
    (card,) = r.json()["cards"]
    (link,) = card["links"]
    assert link["url"].startswith("http://localhost:3000/report-link/")
    assert "attacker" not in json.dumps(r.json())


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


@pytest.mark.parametrize("version", [0, 1])  # the page's R4 and STU3 examples
def test_the_specifications_order_select_examples_get_200_and_no_card(client, version):
    """The hook page's own draft orders (a NutritionOrder R4B would refuse, a
    MedicationRequest; no Bundle.type): not a CTPA, so no card, and never a 400."""
    example = spec_examples("cds-hooks-order-select.md", "context")[version]
    assert "type" not in example["context"]["draftOrders"]
    call = {"hook": "order-select", "hookInstance": str(uuid.uuid4()), **example}
    r = client.post("/cds-services/pe-risk-ctpa", json=call)
    assert r.status_code == 200, r.text
    assert r.json() == {"cards": []}


@pytest.mark.parametrize(
    "code",
    [
        (b.LOINC, "24627-2", "Chest CT"),
        (b.SCT, "241539009", "CT pulmonary angiogram"),
        ("http://www.ama-assn.org/go/cpt", "71275", "CT angiography, chest"),
    ],
)
def test_a_ctpa_among_the_specifications_draft_orders_gets_the_card(client, code):
    """As the reference sandbox sends it: the spec's draft orders plus a selected CTPA, in a
    Bundle without type."""
    example = spec_examples("cds-hooks-order-select.md", "context")[0]
    context = json.loads(json.dumps(example["context"]))
    context["patientId"] = "cds-sb"
    context["draftOrders"]["entry"].append(
        {
            "resource": {
                "resourceType": "ServiceRequest",
                "id": "ctpa-sb",
                "status": "draft",
                "intent": "order",
                "code": b.concept(*code),
                "subject": {"reference": "Patient/cds-sb"},
            }
        }
    )
    context["selections"] = [*context["selections"], "ServiceRequest/ctpa-sb"]
    call = hook_call("cds-sb", prefetch_of(b.typical_patient("cds-sb")), hook="order-select")
    call["context"] = context
    r = client.post("/cds-services/pe-risk-ctpa", json=call)
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert card["summary"].startswith("CTPA ordered: ")


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


SPEC = Path(__file__).parents[2].parent / "shared/reference/standards"


def spec_examples(name: str, key: str) -> list[dict]:
    """The JSON examples of a CDS Hooks page (``shared/reference/standards``) that hold ``key``."""
    text = (SPEC / name).read_text(encoding="utf-8")
    blocks = re.findall(r"```json\s*\n(.*?)```", text, flags=re.S)
    out = []
    for block in blocks:
        try:
            doc = json.loads(block)
        except ValueError:
            continue
        if isinstance(doc, dict) and key in doc:
            out.append(doc)
    return out


def test_the_specifications_feedback_examples_are_audited_in_full(client, audit_path):
    examples = spec_examples("cds-hooks-2.0.1-specification.md", "feedback")
    assert len(examples) == 3  # accepted, overridden without and with a reason
    for body in examples:
        r = client.post("/cds-services/pe-risk/feedback", json=body)
        assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in audit_path.read_text().splitlines()[-3:]]
    assert [x["outcome"] for x in lines] == ["accepted", "overridden", "overridden"]
    assert lines[0]["accepted_suggestions"] == ["e56e1945-20b3-4393-8503-a1a20fd73152"]
    assert lines[0]["outcome_timestamp"] == "2021-12-11T10:05:31+00:00"
    assert lines[2]["override_reason"] == {
        "system": "https://example.com/cds-hooks/override-reason-system",
        "code": "d7ecf885",
    }
    assert lines[2]["override_comment"] == "A comment entered by the clinician."


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda f: f.pop("outcomeTimestamp"), "feedback[0].outcomeTimestamp"),
        (lambda f: f.update(outcomeTimestamp="yesterday"), "feedback[0].outcomeTimestamp"),
        (lambda f: f.update(outcomeTimestamp="2020-12-11T00:00:00"), "outcomeTimestamp"),
        (lambda f: f.update(card="card-1"), "feedback[0].card"),
        (lambda f: f.update(outcome="ignored"), "feedback[0].outcome"),
        (lambda f: f.update(outcome="accepted"), "cds-fb-1"),
        (lambda f: f.update(acceptedSuggestions=[{"id": "x"}]), "cds-fb-2"),
        (lambda f: f.update(overrideReason={}), "overrideReason"),
        (lambda f: f.update(overrideReason={"reason": {}, "userComment": " "}), "overrideReason"),
    ],
)
def test_feedback_that_breaks_the_specification_is_400_naming_the_field(client, change, named):
    (body,) = [
        e
        for e in spec_examples("cds-hooks-2.0.1-specification.md", "feedback")
        if "overrideReason" not in e["feedback"][0] and e["feedback"][0]["outcome"] == "overridden"
    ]
    change(body["feedback"][0])
    r = client.post("/cds-services/pe-risk/feedback", json=body)
    assert r.status_code == 400
    assert named in r.json()["error"]


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


@pytest.fixture(scope="module")
def fhir_schema():
    """The official FHIR R4 JSON schema (HL7, shared/reference/standards), Draft 6."""
    import gzip

    import jsonschema_rs

    schema = json.loads(gzip.decompress((SPEC / "fhir.r4.schema.json.gz").read_bytes()))
    return jsonschema_rs.Draft6Validator(schema)


def test_a_synthea_export_as_sent_gets_a_schema_valid_answer_under_64_kib(client, fhir_schema):
    from tests.synthea import lung_cancer_export

    doc = lung_cancer_export(b.INDEX, stage="III", visits=60)
    assert 900 <= len(doc["entry"]) <= 1_100 and doc["type"] == "transaction"
    r = client.post(URL, content=json.dumps(doc), headers=FHIR)
    assert r.status_code == 200, r.text[:2000]
    assert len(r.content) <= 64 * 1024, len(r.content)
    answer = r.json()
    assert answer["resourceType"] == "RiskAssessment"
    errors = [e.message for e in fhir_schema.iter_errors(answer)]
    assert not errors, errors[:3]
    (outcome,) = answer["contained"]
    assert any("Bundle.entry.request" in i.get("expression", []) for i in outcome["issue"])


def test_the_official_schema_refuses_what_it_should(fhir_schema):
    """The validator above can fail: a RiskAssessment with a misspelt field is refused."""
    assert not fhir_schema.is_valid(
        {"resourceType": "RiskAssessment", "status": "final", "subjct": {}}
    )


def test_a_dead_patient_is_422_naming_the_death(client, fhir_schema):
    res = b.typical_patient("dead-1")
    res[0]["deceasedDateTime"] = "2012-03-01"
    r = client.post(URL, content=json.dumps(b.bundle(res)), headers=FHIR)
    assert r.status_code == 422
    assert "Patient.deceasedDateTime 2012-03-01" in r.text
    assert fhir_schema.is_valid(r.json())


def test_suspected_pe_gets_a_pe_now_prediction_then_the_new_pe_horizons(client, fhir_schema):
    """Issue 18: one prediction per estimate and horizon, each the probability /predict gives,
    PE now at the work-up (whenRange 0–0) first, schema-valid against the official R4 schema."""
    r = post_bundle(client, b.typical_patient(), url=URL + "&suspected_pe=true")
    assert r.status_code == 200, r.text
    ra = r.json()
    assert not [e.message for e in fhir_schema.iter_errors(ra)]
    same = client.post("/predict", json={**SAME_PATIENT, "suspected_pe": True}).json()
    now, new = same["estimates"]["pe_now"], same["estimates"]["new_pe"]
    first, *later = ra["prediction"]
    assert first["whenRange"]["high"]["value"] == 0 and "present now" in first["outcome"]["text"]
    assert first["probabilityDecimal"] == pytest.approx(now["probability"], abs=1e-12)
    assert first["qualitativeRisk"]["text"] == now["risk_category"]
    assert [x["whenRange"]["high"]["value"] for x in later] == [30, 90, 180]
    for x, at in zip(later, new["by_horizon"], strict=True):
        assert x["probabilityDecimal"] == pytest.approx(at["probability"], abs=1e-12)
    notes = " ".join(n["text"] for n in ra["note"])
    assert "Main contributors to the PE-now estimate" in notes
