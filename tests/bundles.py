"""Realistic FHIR R4 resources for the interoperability tests and the FHIR benchmark.

Shaped the way EHR exports look: ``urn:uuid`` full URLs next to ``Type/id`` references,
US Core / mCODE codes, UCUM units with and without annotations, vital-sign panels with
components, searchset entries with ``search.mode``, and resources pe-risk does not read.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

#: the assessment date the example dates below are written for. A test that assesses at
#: another date (the CDS Hooks routes assess "today") passes its own ``today`` and every
#: date moves with it, so that each value keeps its age at the assessment.
INDEX = date(2026, 11, 24)

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
HISTOLOGY_EXT = (
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"
)


def _id() -> str:
    return uuid.uuid4().hex[:12]


def concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def patient(pid: str, gender: str = "male", birth: str = "1958-03-14") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": f"MRN-{pid}"}],
        "name": [{"family": "Example", "given": ["Test"]}],
        "gender": gender,
        "birthDate": birth,
    }


def lab(
    pid: str, code: str, value: float, unit: str, when: str, display: str = "", **extra: Any
) -> dict[str, Any]:
    """A laboratory result with a UCUM quantity; ``extra`` overrides fields (id, status)."""
    category = concept("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")
    quantity = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    out = observation(pid, code, display, when, category=[category], valueQuantity=quantity)
    return {**out, **extra}


def observation(pid: str, code: str, display: str, when: str, **value: Any) -> dict[str, Any]:
    """A final Observation coded by LOINC; ``value`` gives its value[x] or components."""
    return {
        "resourceType": "Observation",
        "id": _id(),
        "status": "final",
        "code": concept(LOINC, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def blood_pressure(pid: str, systolic: float, diastolic: float, when: str) -> dict[str, Any]:
    def part(code: str, display: str, v: float) -> dict[str, Any]:
        return {
            "code": concept(LOINC, code, display),
            "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    parts = [
        part("8480-6", "Systolic blood pressure", systolic),
        part("8462-4", "Diastolic blood pressure", diastolic),
    ]
    return observation(pid, "85354-9", "Blood pressure panel", when, component=parts)


def stage_group(pid: str, code: str, when: str, system: str = "http://cancerstaging.org"):
    value = concept(system, code)
    return observation(
        pid, "21908-9", "Stage group.clinical Cancer", when, valueCodeableConcept=value
    )


def condition(
    pid: str, system: str, code: str, display: str, onset: str | None = None, **extra: Any
) -> dict[str, Any]:
    out = {
        "resourceType": "Condition",
        "id": extra.pop("id", _id()),
        "clinicalStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", "active"
        ),
        "verificationStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            extra.pop("verification", "confirmed"),
        ),
        "code": concept(system, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        **extra,
    }
    if onset:
        out["onsetDateTime"] = onset
    return out


def lung_cancer(pid: str, onset: str, morphology: str | None = "8140/3") -> dict[str, Any]:
    """An mCODE-style primary cancer condition (ICD-10-CM C34.1) with a histology extension."""
    out = condition(pid, ICD10, "C34.11", "Malignant neoplasm of upper lobe, right lung", onset)
    if morphology:
        out["extension"] = [
            {
                "url": HISTOLOGY_EXT,
                "valueCodeableConcept": concept(
                    "http://terminology.hl7.org/CodeSystem/icd-o-3", morphology
                ),
            }
        ]
    return out


def medication(
    pid: str, system: str, code: str, display: str, start: str, status: str = "active", **extra
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": _id(),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept(system, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": start,
        **extra,
    }


def procedure(pid: str, system: str, code: str, display: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": _id(),
        "status": "completed",
        "code": concept(system, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "performedDateTime": when,
    }


def shifted(when: str, today: date) -> str:
    """``when``, written for an assessment at :data:`INDEX`, moved to an assessment at
    ``today``: the same number of days before it."""
    return (date.fromisoformat(when) + (today - INDEX)).isoformat()


def unrelated(pid: str, today: date = INDEX) -> list[dict[str, Any]]:
    """Resources an EHR export carries that pe-risk does not read."""
    return [
        {
            "resourceType": "Encounter",
            "id": _id(),
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
            },
            "subject": {"reference": f"Patient/{pid}"},
        },
        {
            "resourceType": "Practitioner",
            "id": _id(),
            "name": [{"family": "Anydoc", "given": ["Kyle"]}],
        },
        lab(
            pid,
            "2345-7",
            5.4,
            "mmol/L",
            shifted("2026-11-20", today),
            "Glucose [Moles/volume] in Serum",
        ),
    ]


def bundle(resources: list[dict[str, Any]], kind: str = "collection") -> dict[str, Any]:
    entries = []
    for r in resources:
        entry: dict[str, Any] = {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": r,
        }
        if kind == "searchset":
            entry["search"] = {"mode": "match"}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def typical_patient(pid: str = "p1", today: date = INDEX) -> list[dict[str, Any]]:
    """A man of 68 with stage IV lung adenocarcinoma on carboplatin + pemetrexed, a D-dimer
    in ng/mL FEU, an older and a newer platelet count, and a vital-sign panel, as seen at an
    assessment on ``today`` (the dates below are for :data:`INDEX`, moved with it)."""

    def at(when: str) -> str:
        return shifted(when, today)

    return [
        patient(pid, "male", at("1958-03-14")),
        lung_cancer(pid, at("2026-06-02")),
        stage_group(pid, "4A", at("2026-06-10")),
        condition(pid, ICD10, "J44.9", "Chronic obstructive pulmonary disease, unspecified"),
        lab(pid, "48065-7", 1800, "ng/mL", at("2026-11-23"), "Fibrin D-dimer FEU"),
        lab(pid, "777-3", 210, "10*3/uL", at("2026-09-01"), "Platelets"),
        lab(pid, "777-3", 412, "10*3/uL", at("2026-11-22"), "Platelets"),
        lab(pid, "718-7", 11.8, "g/dL", at("2026-11-22"), "Hemoglobin"),
        lab(pid, "6690-2", 12.4, "10*3/uL", at("2026-11-22"), "Leukocytes"),
        lab(pid, "2160-0", 0.9, "mg/dL", at("2026-11-22"), "Creatinine"),
        lab(pid, "39156-5", 24.1, "kg/m2", at("2026-10-01"), "BMI"),
        lab(pid, "8867-4", 104, "/min", at("2026-11-24"), "Heart rate"),
        blood_pressure(pid, 128, 76, at("2026-11-24")),
        medication(pid, ATC, "L01XA02", "carboplatin", at("2026-10-05")),
        medication(pid, RXNORM, "68446", "pemetrexed", at("2026-10-05")),
        *unrelated(pid, today),
    ]
