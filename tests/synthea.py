"""Patient bundles shaped as Synthea exports them, built from the codes of its modules.

Not copied patient files: each resource is written here, with the codes and the export
shape of synthetichealth/synthea (``src/main/resources/modules/lung_cancer.json`` for the
cancer, its stages, chemotherapy and radiation; the vital-signs and metabolic-panel codes
of its encounters). An export is a ``transaction`` Bundle: ``urn:uuid`` full URLs and
references, and a ``request`` (POST) on every entry; most of its entries are Encounters,
Claims and ExplanationOfBenefits pe-risk does not read, and years of routine vital signs.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from tests.bundles import LOINC, RXNORM, SCT, UCUM, concept

CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


#: lung_cancer.json: the cancer's ConditionOnset states
NSCLC = ("254637007", "Non-small cell lung cancer (disorder)")
SUSPECTED = ("162573006", "Suspected lung cancer (situation)")
NSCLC_STAGE = {
    "I": ("424132000", "Non-small cell carcinoma of lung, TNM stage 1 (disorder)"),
    "II": ("425048006", "Non-small cell carcinoma of lung, TNM stage 2 (disorder)"),
    "III": ("422968005", "Non-small cell carcinoma of lung, TNM stage 3 (disorder)"),
    "IV": ("423121009", "Non-small cell carcinoma of lung, TNM stage 4 (disorder)"),
}
SCLC = ("254632001", "Small cell carcinoma of lung (disorder)")
SCLC_STAGE = {
    "I": ("67811000119102", "Primary small cell malignant neoplasm of lung, TNM stage 1"),
    "II": ("67821000119109", "Primary small cell malignant neoplasm of lung, TNM stage 2"),
    "III": ("67831000119107", "Primary small cell malignant neoplasm of lung, TNM stage 3"),
    "IV": ("67841000119103", "Primary small cell malignant neoplasm of lung, TNM stage 4"),
}
#: lung_cancer.json: MedicationOrder and Procedure states of the treatment paths
CISPLATIN = ("1736854", "Cisplatin 50 MG Injection")
PACLITAXEL = ("583214", "PACLitaxel 100 MG Injection")
ETOPOSIDE = ("1734340", "Etoposide 100 MG Injection")
CHEMO_RADIATION = ("703423002", "Combined chemotherapy and radiation therapy (procedure)")
CHEST_XRAY = ("399208008", "Plain chest X-ray (procedure)")
#: the metabolic panel (Record_CMP) and routine vital signs of Synthea's encounters
CREATININE = ("38483-4", "Creatinine", "mg/dL")
PANEL = [
    ("2339-0", "Glucose", "mg/dL", 95.0),
    ("6299-2", "Urea Nitrogen", "mg/dL", 14.0),
    ("49765-1", "Calcium", "mg/dL", 9.4),
    ("2947-0", "Sodium", "mmol/L", 140.0),
    ("6298-4", "Potassium", "mmol/L", 4.2),
]
VITALS = [
    ("8302-2", "Body Height", "cm", 172.0),
    ("29463-7", "Body Weight", "kg", 74.0),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 25.0),
    ("8867-4", "Heart rate", "/min", 88.0),
    ("9279-1", "Respiratory rate", "/min", 16.0),
    ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}", 2.0),
]


class Export:
    """One patient's Synthea-style export, dated back from ``today``."""

    def __init__(self, today: date, *, gender: str = "male", born: str = "1955-02-01") -> None:
        self.today = today
        self.entries: list[dict[str, Any]] = []
        self.patient_url = self._add(
            {
                "resourceType": "Patient",
                "id": str(uuid.uuid4()),
                "name": [{"use": "official", "family": "Synthetic", "given": ["Pat"]}],
                "gender": gender,
                "birthDate": born,
            }
        )

    def _add(self, resource: dict[str, Any]) -> str:
        resource.setdefault("id", str(uuid.uuid4()))
        url = f"urn:uuid:{resource['id']}"
        self.entries.append(
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
        return url

    def when(self, days_ago: int) -> str:
        return f"{self.today - timedelta(days=days_ago)}T09:00:00+00:00"

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": self.patient_url}

    def encounter(self, days_ago: int) -> str:
        """An encounter with its Claim and ExplanationOfBenefit, as every Synthea visit has."""
        enc = self._add(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "type": [
                    {
                        "coding": [
                            {"system": SCT, "code": "185347001", "display": "Encounter for problem"}
                        ]
                    }
                ],
                "subject": self.subject,
                "period": {"start": self.when(days_ago), "end": self.when(days_ago)},
            }
        )
        billed = {  # what a Claim and its ExplanationOfBenefit share
            "status": "active",
            "type": concept(CLAIM_TYPE, "professional"),
            "use": "claim",
            "patient": self.subject,
            "created": self.when(days_ago),
            "provider": {"display": "Synthetic clinic"},
        }
        claim = self._add(
            {
                "resourceType": "Claim",
                **billed,
                "priority": concept(PRIORITY, "normal"),
                "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
                "item": [
                    {
                        "sequence": 1,
                        "productOrService": concept(SCT, "185347001"),
                        "encounter": [{"reference": enc}],
                    }
                ],
                "total": {"value": 129.16, "currency": "USD"},
            }
        )
        self._add(
            {
                "resourceType": "ExplanationOfBenefit",
                **billed,
                "insurer": {"display": "Medicare"},
                "claim": {"reference": claim},
                "outcome": "complete",
                "insurance": [{"focal": True, "coverage": {"display": "Medicare"}}],
            }
        )
        return enc

    def condition(self, code: tuple[str, str], days_ago: int) -> None:
        self._add(
            {
                "resourceType": "Condition",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": "confirmed",
                        }
                    ]
                },
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                "code": "encounter-diagnosis",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [{"system": SCT, "code": code[0], "display": code[1]}],
                    "text": code[1],
                },
                "subject": self.subject,
                "onsetDateTime": self.when(days_ago),
                "recordedDate": self.when(days_ago),
            }
        )

    def order(self, drug: tuple[str, str], days_ago: int) -> None:
        """A MedicationOrder state: a MedicationRequest, stopped by its MedicationEnd."""
        self._add(
            {
                "resourceType": "MedicationRequest",
                "status": "stopped",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": drug[0], "display": drug[1]}],
                    "text": drug[1],
                },
                "subject": self.subject,
                "authoredOn": self.when(days_ago),
            }
        )

    def procedure(self, code: tuple[str, str], days_ago: int) -> None:
        self._add(
            {
                "resourceType": "Procedure",
                "status": "completed",
                "code": {
                    "coding": [{"system": SCT, "code": code[0], "display": code[1]}],
                    "text": code[1],
                },
                "subject": self.subject,
                "performedPeriod": {"start": self.when(days_ago), "end": self.when(days_ago)},
            }
        )

    def observation(
        self, code: str, display: str, days_ago: int, category: str, **value: Any
    ) -> None:
        """A final Observation coded by LOINC; ``value`` gives its value[x] or components."""
        self._add(
            {
                "resourceType": "Observation",
                "status": "final",
                "category": [concept(OBSERVATION_CATEGORY, category)],
                "code": concept(LOINC, code, display),
                "subject": self.subject,
                "effectiveDateTime": self.when(days_ago),
                "issued": self.when(days_ago),
                **value,
            }
        )

    def measured(
        self, code: str, display: str, unit: str, value: float, days_ago: int, category: str
    ) -> None:
        self.observation(code, display, days_ago, category, valueQuantity=quantity(value, unit))

    def blood_pressure(self, days_ago: int, systolic: float = 128.0) -> None:
        parts = [
            {"code": concept(LOINC, "8462-4", "Diastolic Blood Pressure")}
            | {"valueQuantity": quantity(80.0, "mm[Hg]")},
            {"code": concept(LOINC, "8480-6", "Systolic Blood Pressure")}
            | {"valueQuantity": quantity(systolic, "mm[Hg]")},
        ]
        self.observation(
            "85354-9",
            "Blood pressure panel with all children optional",
            days_ago,
            "vital-signs",
            component=parts,
        )

    def visit(self, days_ago: int) -> None:
        """A routine wellness visit: vital signs and a metabolic panel with creatinine."""
        self.encounter(days_ago)
        for code, display, unit, value in VITALS:
            self.measured(code, display, unit, value, days_ago, "vital-signs")
        self.blood_pressure(days_ago)
        for code, display, unit, value in [*PANEL, (*CREATININE, 1.0)]:
            self.measured(code, display, unit, value, days_ago, "laboratory")

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def lung_cancer_export(
    today: date,
    *,
    stage: str = "III",
    small_cell: bool = False,
    visits: int = 50,
    died: str | None = None,
) -> dict[str, Any]:
    """A Synthea lung-cancer patient as the module writes one: years of routine visits,
    the suspicion, the cancer and its stage Condition, then a treatment cycle a month
    ago (two chemotherapy orders and the combined chemo-radiotherapy procedure)."""
    x = Export(today)
    if died:
        x.entries[0]["resource"]["deceasedDateTime"] = died
    for k in range(visits):
        x.visit(30 + 60 * k)
    x.encounter(60)
    x.condition(SUSPECTED, 60)
    x.procedure(CHEST_XRAY, 60)
    x.condition(SCLC if small_cell else NSCLC, 50)
    x.condition((SCLC_STAGE if small_cell else NSCLC_STAGE)[stage], 45)
    x.encounter(30)
    x.order(CISPLATIN, 30)
    x.order(ETOPOSIDE if small_cell else PACLITAXEL, 30)
    x.procedure(CHEMO_RADIATION, 30)
    return x.bundle()
