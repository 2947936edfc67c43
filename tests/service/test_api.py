"""The HTTP contract in process: answers, exactness, every error rule, auth, audit."""

from __future__ import annotations

import json
import math

import pytest

from features.spec import MODEL_FEATURE_NAMES
from serving.api.schemas import BatchResponse, Prediction
from tests.conftest import base_record

pytestmark = pytest.mark.service

RECORD = base_record(
    patient_id="MRN-0042",
    stage="IV",
    d_dimer={"value": 2400, "unit": "ng/mL{FEU}"},
    suspected_pe=True,
    heart_rate=112,
    rv_lv_ratio=1.3,
    platelets=410,
)


def test_predict_answers_the_design_contract(client) -> None:
    r = client.post("/predict", json=RECORD)
    assert r.status_code == 200
    body = r.json()
    Prediction.model_validate(body)  # the documented response model, field by field
    assert set(body) >= {
        "probability",
        "risk_category",
        "horizon_days",
        "explanation",
        "clinical_scores",
        "recommendations",
        "warnings",
        "model",
        "patient_id",
    }
    # PE is suspected: the top-level estimate answers "is there a PE now?" (at the work-up)
    assert body["patient_id"] == "MRN-0042" and body["question"] == "pe_now"
    now, new = body["estimates"]["pe_now"], body["estimates"]["new_pe"]
    assert body["horizon_days"] == now["horizon_days"] == 0
    assert body["probability"] == now["probability"] and body["explanation"] == now["explanation"]
    assert body["risk_bands"] == {"low_below": 0.08, "high_from": 0.28}  # revised Geneva groups
    assert body["model"]["synthetic_data"] is True and "SYNTHETIC" in body["model"]["notice"]
    assert body["model"]["questions"] == ["new_pe", "pe_now"]
    assert r.headers["x-model-version"] == body["model"]["version"]

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    for estimate in (now, new):  # each exact on its own calibrated log-odds scale
        e = estimate["explanation"]
        total = sum(c["contribution"] for c in e["contributions"])
        assert abs(e["base_value"] + total - logit(estimate["probability"])) < 1e-6
        for at in estimate.get("by_horizon", []):
            assert abs(at["base_value"] + total - logit(at["probability"])) < 1e-6
    assert [a["horizon_days"] for a in new["by_horizon"]] == [30, 90, 180]
    ps = [a["probability"] for a in new["by_horizon"]]
    assert ps == sorted(ps) and ps[-1] == new["probability"] and new["horizon_days"] == 180
    assert new["risk_bands"] == {"low_below": 0.05, "high_from": 0.089}  # Khorana groups
    e = body["explanation"]
    mags = [abs(c["contribution"]) for c in e["contributions"]]
    assert mags == sorted(mags, reverse=True)
    d_dimer = next(c for c in e["contributions"] if c["feature"] == "d_dimer")
    assert d_dimer["value"] == "2400 ng/mL{FEU}" and d_dimer["direction"] == "raises"
    assert {"khorana", "wells", "revised_geneva", "vienna_cats"} <= set(body["clinical_scores"])
    codes = {f["code"] for f in body["recommendations"]}
    assert "adverse_outcome_risk" in codes  # RV/LV 1.3 (review)


@pytest.mark.parametrize(
    ("suspected", "why"), [(False, "not suspected"), (None, "suspected_pe is not recorded")]
)
def test_without_suspected_pe_the_answer_is_the_new_pe_risk(client, suspected, why) -> None:
    body = client.post("/predict", json=base_record(suspected_pe=suspected)).json()
    assert body["question"] == "new_pe" and body["horizon_days"] == 180
    assert body["probability"] == body["estimates"]["new_pe"]["probability"]
    now = body["estimates"]["pe_now"]
    assert now["probability"] is None and why in now["not_estimated"]


def test_d_dimer_below_age_adjusted_cut_off_with_pe_unlikely_is_flagged(client) -> None:
    rec = base_record(
        age=80,
        suspected_pe=True,
        d_dimer=0.7,
        pe_most_likely=False,
        dvt_signs=False,
        heart_rate=80,
        hemoptysis=False,
        prior_vte=False,
        immobilized=False,
        days_since_surgery=...,
    )
    body = client.post("/predict", json=rec).json()
    assert "d_dimer_rule_out" in {f["code"] for f in body["recommendations"]}


def test_missing_key_inputs_are_warnings_not_errors(client) -> None:
    body = client.post("/predict", json=base_record()).json()
    assert {"d_dimer", "platelets"} <= {w["field"] for w in body["warnings"]}


@pytest.mark.parametrize(
    ("body", "status", "field", "rule"),
    [
        (base_record(stage="3"), 422, "stage", "choice"),
        (base_record(d_dimer=850), 422, "d_dimer", "range"),
        (base_record(d_dimr=1.0), 422, "d_dimr", "unknown_field"),
        (base_record(age="seventy"), 422, "age", "type"),
        (base_record(chemotherapy="yes"), 422, "chemotherapy", "type"),
        ({"sex": "female", "histology": "adenocarcinoma", "stage": "I"}, 422, "age", "required"),
        (base_record(d_dimer={"value": 1, "unit": "furlongs"}), 422, "d_dimer", "unit"),
    ],
    ids=["choice", "range", "unknown", "type", "bool", "required", "unit"],
)
def test_record_errors_name_field_value_and_rule(client, body, status, field, rule) -> None:
    r = client.post("/predict", json=body)
    assert r.status_code == status
    detail = r.json()["detail"]
    hit = next(d for d in detail if d["field"] == field)
    assert hit["rule"].startswith(rule) and field in hit["message"]


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b'{"age": 64, "sex": "female"', "json"),
        (b'{"age": NaN, "sex": "female", "histology": "adenocarcinoma", "stage": "I"}', "json"),
        (b'{"age": Infinity}', "json"),
        (b"[" * 5000 + b"]" * 5000, "depth"),
        (b"[1, 2, 3]", "type"),
        (b"", "json"),
        (b"\xff\xfe", "json"),
    ],
    ids=["truncated", "nan", "infinity", "deep", "array", "empty", "bad-utf8"],
)
def test_malformed_bodies_get_400_and_the_server_stays_healthy(client, raw, rule) -> None:
    r = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"][0]["rule"] == rule
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    "text",
    ["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 'say \\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\" twice'],
)
def test_brackets_inside_strings_do_not_count_as_nesting(client, text) -> None:
    r = client.post("/predict", json=base_record(patient_id=text))
    assert r.status_code == 200 and r.json()["patient_id"] == text


def test_body_size_limit(client) -> None:
    huge = json.dumps({"patients": [base_record(patient_id="x" * 60)] * 400_000}).encode()
    r = client.post("/predict_batch", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["rule"] == "size"


def test_batch_keeps_order_and_isolates_bad_records(client) -> None:
    patients = [base_record(stage=s) for s in ("I", "IV")] + [
        base_record(stage="V"),
        base_record(d_dimer=3.0),
    ]
    r = client.post("/predict_batch", json={"patients": patients, "explain": True})
    assert r.status_code == 200
    BatchResponse.model_validate(r.json())
    results = r.json()["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3]
    assert [x["ok"] for x in results] == [True, True, False, True]
    assert results[2]["errors"][0]["field"] == "stage"
    single = client.post("/predict", json=patients[1]).json()["probability"]
    assert results[1]["result"]["probability"] == pytest.approx(single, abs=1e-12)
    assert results[0]["result"]["probability"] < results[1]["result"]["probability"]


def test_batch_top_contributions_lists_the_largest_and_sums_the_rest(client) -> None:
    """The compact batch layout: each explanation lists its N largest contributions (the
    same entries, in the same order, as the full answer) and sums the others into ``rest``,
    so that base_value + Σ listed + rest is still the log-odds of every estimate."""
    patients = [RECORD, base_record(suspected_pe=False, chemotherapy=True)]
    full = client.post("/predict_batch", json={"patients": patients}).json()["results"]
    r = client.post("/predict_batch", json={"patients": patients, "top_contributions": 5})
    assert r.status_code == 200
    BatchResponse.model_validate(r.json())
    n = len(MODEL_FEATURE_NAMES)
    compact = r.json()["results"]
    for whole, short in zip(full, compact, strict=True):
        a, b = whole["result"], short["result"]
        assert a["probability"] == b["probability"] and a["question"] == b["question"]
        for key in ("pe_now", "new_pe"):
            if a["estimates"][key]["probability"] is None:
                assert "explanation" not in b["estimates"][key]
                continue
            ea, eb = a["estimates"][key]["explanation"], b["estimates"][key]["explanation"]
            assert eb["contributions"] == ea["contributions"][:5] and "rest" not in ea
            assert eb["rest"]["features"] == n - 5
            rest = sum(c["contribution"] for c in ea["contributions"][5:])
            assert eb["rest"]["contribution"] == pytest.approx(rest, abs=1e-9)
            p = b["estimates"][key]["probability"]
            listed = sum(c["contribution"] for c in eb["contributions"])
            logit = math.log(p / (1 - p))
            assert abs(eb["base_value"] + listed + eb["rest"]["contribution"] - logit) < 1e-6
            for at in b["estimates"][key].get("by_horizon", []):  # each horizon's own base
                logit = math.log(at["probability"] / (1 - at["probability"]))
                assert abs(at["base_value"] + listed + eb["rest"]["contribution"] - logit) < 1e-6
        assert b["explanation"] == b["estimates"][b["question"]]["explanation"]
    # as many as there are features, or more: every feature listed, nothing left to sum
    for top in (n, n + 10, None):
        body = {"patients": patients, "top_contributions": top}
        assert client.post("/predict_batch", json=body).json()["results"] == full


def test_batch_top_contributions_needs_explanations(client) -> None:
    body = {"patients": [RECORD], "explain": False, "top_contributions": 5}
    r = client.post("/predict_batch", json=body)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"][0]
    assert detail["field"] == "top_contributions" and "explain" in detail["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("top_contributions", v) for v in (0, -3, 2.5, "5", True)]
    + [("explain", v) for v in ("yes", 1, "true")]
    + [("scores", "no")],
)
def test_batch_options_refuse_a_guess(client, field, value) -> None:
    """The batch's options are as strict as the record: a count is a JSON integer ≥ 1, a
    switch is JSON true/false; anything else is a 400 naming the option."""
    r = client.post("/predict_batch", json={"patients": [RECORD], field: value})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail[0]["field"] == field, detail
    assert detail[0]["message"]


def test_batch_shape_errors_use_the_error_body(client) -> None:
    for body in ({"patients": "x"}, {"patients": []}, {"records": []}):
        r = client.post("/predict_batch", json=body)
        assert r.status_code == 400
        assert r.json()["detail"] and {"field", "rule", "message"} <= set(r.json()["detail"][0])


def test_model_endpoint_describes_the_model(client) -> None:
    r = client.get("/model")
    assert r.status_code == 200
    body = r.json()
    assert body["model"]["synthetic_data"] is True
    assert "auroc" in body["metrics"] and body["outcomes"]["competing_risk"] == "death"
    questions = body["questions"]
    assert questions["new_pe"]["horizons_days"] == [30, 90, 180]
    assert questions["pe_now"]["horizons_days"] == [0]
    assert "Le Gal" in questions["pe_now"]["risk_bands"]["source"]
    assert "Mulder" in questions["new_pe"]["risk_bands"]["source"]
    b = questions["new_pe"]["calibration"]["intercepts"]
    assert b == sorted(b)  # one slope, intercepts non-decreasing: no estimate falls with time
    assert [f["name"] for f in body["features"]] == list(MODEL_FEATURE_NAMES)


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"{" * 100, "application/json"),  # would be a 400
        (b"<record/>", "application/xml"),  # would be a 415
        (b'{"age": ' + b"1" * 40_000_000 + b"}", "application/json"),  # would be a 413
    ],
    ids=["malformed", "content-type", "oversize"],
)
def test_authentication_comes_before_the_body_is_judged(client, body, ctype) -> None:
    """Issue 20: without a token, the caller learns nothing about its body (and the server
    reads none of it): 401, not 400/415/413."""
    r = client.post("/predict", content=body, headers={"Authorization": "", "content-type": ctype})
    assert r.status_code == 401 and r.json()["detail"][0]["field"] == "Authorization"


def test_auth_required_except_health(client) -> None:
    assert client.post("/predict", json=RECORD, headers={"Authorization": ""}).status_code == 401
    assert (
        client.post("/predict", json=RECORD, headers={"Authorization": "Bearer nope"}).status_code
        == 403
    )
    assert client.get("/model", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/livez", headers={"Authorization": ""}).status_code == 200


def test_audit_log_has_no_identifiers_or_raw_record(client, audit_path) -> None:
    client.post("/predict", json=RECORD, headers={"x-request-id": "req-audit-1"})
    lines = [json.loads(ln) for ln in audit_path.read_text().splitlines()]
    mine = [ln for ln in lines if ln["request_id"] == "req-audit-1"]
    assert len(mine) == 1
    entry = mine[0]
    assert set(entry) == {
        "time",
        "request_id",
        "endpoint",
        "model_version",
        "latency_ms",
        "input_hash",
        "status",
        "probability",
    }
    assert "MRN-0042" not in audit_path.read_text()


def test_openapi_documents_the_error_body(client) -> None:
    spec = client.get("/docs.json").json()
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert "ErrorBody" in spec["components"]["schemas"]
    # a field that may be null says so, in the bodies written inline as well (OpenAPI 3.0)
    batch = spec["paths"]["/predict_batch"]["post"]["requestBody"]["content"]
    top = batch["application/json"]["schema"]["properties"]["top_contributions"]
    assert top["nullable"] is True and top["minimum"] == 1
