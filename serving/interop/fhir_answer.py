"""The answer as FHIR R4 resources: RiskAssessment for a patient, OperationOutcome for issues.

Both are plain dicts shaped to ``fhir.resources`` R4B (the tests validate them with it):
the hot path does not build pydantic models it would only serialise again.

- ``RiskAssessment.prediction``: one per estimate and horizon (``estimates`` of
  ``/predict``), each with outcome pulmonary embolism (SNOMED CT 59282003) and text saying
  which question it answers, ``probabilityDecimal``, and ``whenRange`` in days: PE now is
  0–0 (at the work-up), a new PE is 0 to each horizon (30, 90, 180). ``qualitativeRisk``
  (HL7 risk-probability codes) comes from each estimate's risk bands, on PE now and the
  new PE at the longest horizon (the bands are anchored there).
- ``method`` names the model and its version; ``basis`` references every resource the
  record was built from; ``note`` gives the main contributors (exact SHAP, log-odds), the
  guideline flags and the model's notice (SYNTHETIC training data when so).
- What the mapping did not use travels with it: a contained OperationOutcome, referenced
  from the ``mapping-outcome`` extension.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from features.records import RecordError, parse_record
from models.artifact import PERiskModel
from serving.answer.predict import predict_records
from serving.answer.text import contributors_text, not_recorded, percent
from serving.interop.fhir import Issue, MappedPatient

CANONICAL = "https://pe-risk.example/fhir"  # placeholder canonical base of pe-risk's own codes
MAPPING_OUTCOME = f"{CANONICAL}/StructureDefinition/mapping-outcome"
PE_OUTCOME = {
    "coding": [
        {"system": "http://snomed.info/sct", "code": "59282003", "display": "Pulmonary embolism"}
    ]
}
RISK_CODE = {"low": "low", "intermediate": "moderate", "high": "high"}
HEADLINE = {"pe_now": "PE-now", "new_pe": "new-PE (180-day)"}
RISK_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"


def operation_outcome(issues: Iterable[Issue], *, ok_text: str = "") -> dict[str, Any]:
    """An OperationOutcome of ``issues`` (one informational issue when there are none)."""
    items = [i.as_fhir() for i in issues]
    if not items:
        items = [Issue("information", "informational", ok_text or "all resources used").as_fhir()]
    return {"resourceType": "OperationOutcome", "issue": items}


def record_issues(mapped: MappedPatient, err: RecordError) -> list[Issue]:
    """The record validator's problems, each pointing at the resource the value came from."""
    out = []
    for i in err.issues:
        refs = mapped.sources.get(i.field) or [mapped.patient.ref]
        out.append(
            Issue("error", "value", f"{', '.join(refs)}: {i.message}", f"{i.field} ({i.rule})")
        )
    return out


def risk_assessment(
    mapped: MappedPatient,
    answer: dict[str, Any],
    index_date: date,
    *,
    issues: list[Issue],
    report_url: str | None = None,
) -> dict[str, Any]:
    """The FHIR R4 RiskAssessment for one patient's answer (``serving.answer.predict``); ``issues``
    (what the mapping did not use) travel in a contained OperationOutcome."""
    model = answer["model"]
    notes = [
        f"Main contributors to the {HEADLINE[answer['question']]} estimate (exact SHAP, "
        "calibrated log-odds): " + "; ".join(contributors_text(answer)),
        f"Model: {model['name']} {model['version']}, trained on {model['trained_on']}. "
        + model["notice"],
    ]
    notes += [f"{f['severity']}: {f['text']} ({f['source']})" for f in answer["recommendations"]]
    unrecorded = not_recorded(answer)
    if unrecorded:
        notes.append(
            f"Key inputs not found in the record: {', '.join(unrecorded)}; each was scored as "
            "unknown (between its possible values, never as 'no')."
        )
    if report_url:
        notes.append(f"One-page report: {report_url}")
    out: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": mapped.patient.ref},
        "occurrenceDateTime": index_date.isoformat(),
        "method": {
            "coding": [
                {
                    "system": f"{CANONICAL}/CodeSystem/model",
                    "code": model["name"],
                    "version": str(model["version"]),
                    "display": f"{model['name']} version {model['version']}",
                }
            ],
            "text": f"{model['name']} version {model['version']}: calibrated gradient boosting "
            f"({model['calibration']}) with exact TreeSHAP; trained on {model['trained_on']}",
        },
        "basis": [{"reference": ref} for ref in mapped.basis],
        "prediction": predictions(answer["estimates"]),
        "note": [{"text": n} for n in notes],
    }
    if issues:
        out["contained"] = [{**operation_outcome(issues), "id": "mapping"}]
        out["extension"] = [{"url": MAPPING_OUTCOME, "valueReference": {"reference": "#mapping"}}]
    return out


def predictions(estimates: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``RiskAssessment.prediction`` per estimate and horizon: PE now (when estimated),
    then a new PE by each horizon."""
    out = []
    now = estimates["pe_now"]
    if now["probability"] is not None:
        out.append(
            _prediction(
                "Pulmonary embolism present now (found by the work-up at this assessment)",
                now["probability"],
                0,
                now["risk_category"],
                f"PE now: {percent(now['probability'])} ({now['risk_category']})",
            )
        )
    new = estimates["new_pe"]
    for at in new["by_horizon"]:
        h, p = at["horizon_days"], at["probability"]
        category = new["risk_category"] if h == new["horizon_days"] else None
        out.append(
            _prediction(
                f"Within {h} days: {new['outcome']}",
                p,
                h,
                category,
                f"{new['outcome']} by {h} days: {percent(p)}"
                + (f" ({category})" if category else ""),
            )
        )
    return out


def _prediction(
    text: str, p: float, days: int, category: str | None, rationale: str
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "outcome": {**PE_OUTCOME, "text": text},
        "probabilityDecimal": p,
        "whenRange": {"low": _days(0), "high": _days(days)},
        "rationale": rationale,
    }
    if category:
        out["qualitativeRisk"] = {
            "coding": [{"system": RISK_SYSTEM, "code": RISK_CODE[category]}],
            "text": category,
        }
    return out


@dataclass(slots=True)
class Assessment:
    """One patient of a bundle: the mapping, and the answer when the record was valid."""

    mapped: MappedPatient
    record: Any = None
    answer: dict[str, Any] | None = None


def validate_records(patients: list[MappedPatient]) -> list[Assessment]:
    """Validate each complete mapped record; a record's problems become issues naming the
    resource its value came from (``MappedPatient.ok`` then says False)."""
    out = [Assessment(m) for m in patients]
    for a in out:
        if a.mapped.ok:
            try:
                a.record = parse_record(a.mapped.record)
            except RecordError as err:
                a.mapped.issues.extend(record_issues(a.mapped, err))
    return out


def assess(model: PERiskModel, version: str, patients: list[MappedPatient]) -> list[Assessment]:
    """``validate_records``, then the valid ones answered in one vectorised call, exactly as
    ``/predict`` answers them."""
    out = validate_records(patients)
    valid = [a for a in out if a.record is not None]
    if valid:
        answers = predict_records(model, version, [a.record for a in valid])
        for a, answer in zip(valid, answers, strict=True):
            a.answer = answer
    return out


def _days(n: int) -> dict[str, Any]:
    return {"value": n, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}
