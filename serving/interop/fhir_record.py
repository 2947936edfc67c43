"""FHIR R4 bundles → patient records (``shared/data-contract.md``), with what was not used.

``map_bundle`` reads a Bundle already validated by ``serving.interop.fhir.validate_bundle``:
a ``collection`` or ``searchset``, or a ``transaction``, ``batch`` or ``document`` as EHRs
and Synthea export them (their resources are read; ``entry.request`` is not executed, and
the outcome says so). Each Patient becomes one record:

- Patient: ``gender`` → ``sex``; ``birthDate`` → ``age`` at the index date.
- Every other resource is looked up in the mapping table (``serving.interop.fhir_map``) by its
  codes: Observation (labs by LOINC, with UCUM units left to the record's converter;
  vital signs, also as components of a panel; stage group; ECOG; smoking), Condition
  (the lung cancer with histology from its code or the mCODE histology extension and its
  onset; prior DVT/PE; COPD; pleural effusion), MedicationStatement / -Request /
  -Administration (by the medication's code, also through a referenced Medication),
  Procedure (thoracic surgery and its date) and AllergyIntolerance.
- Only what was known at the index date is used: a value dated after it is skipped, a
  value older than the row's ``max_age_days`` is skipped, and among the rest the most
  recent value wins. A treatment counts when it was given within ``max_age_days`` before
  the index date (or is still active).
- Nothing is dropped silently: every resource or value not used becomes an issue naming
  the resource and why (``Issue``), returned as an OperationOutcome; alike informational
  issues (312 Claims pe-risk does not read, 40 heart rates older than a day) are
  summarised into one that counts them and names the first (``summarise``).
- A Patient whose ``deceased[x]`` says it died on or before the index date (or
  ``deceasedBoolean`` true) is not assessed: an error naming it.

Absence stays absence: a bundle without a chemotherapy order leaves ``chemotherapy``
unknown, never false, as the data contract asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from features.contract import Kind
from serving.interop.fhir import (
    REQUEST_TYPES,
    BundleIndex,
    Entry,
    Issue,
    MappedPatient,
    codings,
    describe,
    fhir_date,
    summarise,
)
from serving.interop.fhir_map import DAYS_SINCE, MapRow, MapTable, field_kind

MEDICATIONS = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
SUBJECT = {"AllergyIntolerance": "patient"}  # every other mapped resource uses ``subject``
_TABLE_KIND = {
    "AllergyIntolerance": "AllergyIntolerance",
    **dict.fromkeys(MEDICATIONS, "Medication"),
}
_OBSERVATION_OK = frozenset({"final", "amended", "corrected"})
_NOT_GIVEN = frozenset(
    {"entered-in-error", "not-taken", "not-done", "cancelled", "draft", "intended", "unknown"}
)
_UNVERIFIED = frozenset({"provisional", "differential"})
_UNUSABLE_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_NOT_CURRENT = frozenset({"inactive", "resolved", "remission"})
_SUPPORTING = frozenset({"Medication", "Practitioner", "PractitionerRole", "Organization"})


@dataclass(slots=True)
class _Value:
    """A candidate value of one field: the most recent one wins."""

    when: date | None
    index: int
    value: Any
    entry: Entry


def map_bundle(
    doc: Mapping[str, Any],
    table: MapTable,
    index_date: date,
    *,
    suspected_pe: bool | None = None,
) -> tuple[list[MappedPatient], list[Issue]]:
    """Every Patient of a validated bundle as a raw record, plus the bundle-level issues
    (resources that belong to no patient in the bundle, or that pe-risk does not read)."""
    bundle = BundleIndex(doc)
    patients = {
        e.ref: _Collector(e, table, index_date) for e in bundle.entries if e.type == "Patient"
    }
    loose: list[Issue] = []
    for entry in bundle.entries:
        if entry.type == "Patient":
            continue
        if entry.type in _SUPPORTING or entry.type == "OperationOutcome":
            continue
        if entry.type not in ("Observation", "Condition", "Procedure", *_TABLE_KIND):
            loose.append(
                entry.issue(
                    "information", "not-supported", "pe-risk does not read this resource type"
                )
            )
            continue
        subject = entry.resource.get(SUBJECT.get(entry.type, "subject"))
        owner = bundle.resolve(subject)
        if owner is None or owner.ref not in patients:
            shown = subject.get("reference") if isinstance(subject, Mapping) else None
            loose.append(
                entry.issue(
                    "warning",
                    "not-found",
                    f"its patient {shown!r} is not a Patient in this bundle; not used",
                )
            )
            continue
        patients[owner.ref].add(entry, bundle)
    requests = sum(1 for e in doc.get("entry") or [] if isinstance(e, Mapping) and "request" in e)
    if doc.get("type") in REQUEST_TYPES and requests:
        loose.append(
            Issue(
                "information",
                "informational",
                f"a {doc['type']} Bundle: its resources were read as a collection; the "
                f"request of its {requests} entries (Bundle.entry.request) was ignored, and "
                "nothing was created or changed",
                "Bundle.entry.request",
            )
        )
    mapped = [c.finish(suspected_pe) for c in patients.values()]
    for m in mapped:
        m.issues = summarise(m.issues)
    return mapped, summarise(loose)


class _Collector:
    """Gathers one patient's candidate values, then picks what the record gets."""

    def __init__(self, patient: Entry, table: MapTable, index_date: date) -> None:
        self.table, self.index = table, index_date
        self.out = MappedPatient(patient)
        self.values: dict[str, list[_Value]] = {}
        self.cancer: list[Entry] = []
        self.cancer_onset: list[tuple[date, Entry]] = []

    # -- adding resources ---------------------------------------------------------------
    def add(self, entry: Entry, bundle: BundleIndex) -> None:
        kind = entry.type
        if kind == "Observation":
            self._observation(entry)
        elif kind == "Condition":
            self._condition(entry)
        elif kind == "Procedure":
            self._procedure(entry)
        else:
            self._exposure(entry, bundle)

    def _note(self, entry: Entry, severity: str, code: str, text: str) -> None:
        self.out.issues.append(entry.issue(severity, code, text))

    def _skip(self, entry: Entry, text: str, reason: str | None = None) -> None:
        """A resource or value deliberately not used (too old, later, not final, ...);
        ``reason`` is the text without this resource's own date, for ``summarise``."""
        self.out.issues.append(entry.issue("information", "informational", text, reason))

    def _unmapped(self, entry: Entry, concept: Any, state: str = "") -> None:
        self._note(
            entry, "information", "not-supported", f"no mapping for {describe(concept)}{state}"
        )

    def _rows(self, kind: str, concept: Any) -> list[MapRow]:
        return [
            r
            for c in codings(concept)
            for r in self.table.lookup(kind, c.get("system"), c.get("code"))
        ]

    def _offer(self, row: MapRow, value: Any, when: date | None, entry: Entry) -> None:
        self.values.setdefault(row.field, []).append(_Value(when, entry.index, value, entry))

    def _dated(self, entry: Entry, when: date | None, what: str) -> bool:
        if when is None:
            self._note(
                entry,
                "warning",
                "incomplete",
                f"{what} has no date, so it cannot be placed before the index date; not used",
            )
            return False
        if when > self.index:
            self._skip(
                entry,
                f"{what} is dated {when}, after the index date {self.index}; not used",
                f"{what}: dated after the index date {self.index}; not used",
            )
            return False
        return True

    def _fresh(self, entry: Entry, row: MapRow, when: date) -> bool:
        age = (self.index - when).days
        if row.max_age_days is not None and age > row.max_age_days:
            self._skip(
                entry,
                f"{row.field} from {when} is {age} days old at the index date; "
                f"the mapping uses values up to {row.max_age_days} days old; not used",
                f"{row.field}: more than {row.max_age_days} days old at the index date "
                f"{self.index}, the most the mapping uses; not used",
            )
            return False
        return True

    def _observation(self, entry: Entry) -> None:
        res = entry.resource
        if res.get("status") not in _OBSERVATION_OK:
            self._skip(
                entry,
                f"status {res.get('status')!r}; only final, amended or corrected results are used",
            )
            return
        when = fhir_date(
            res.get("effectiveDateTime")
            or (res.get("effectivePeriod") or {}).get("end")
            or (res.get("effectivePeriod") or {}).get("start")
            or res.get("effectiveInstant")
            or res.get("issued")
        )
        parts = [(res.get("code"), res)] + [(c.get("code"), c) for c in res.get("component") or []]
        used = False
        for concept, holder in parts:
            rows = self._rows("Observation", concept)
            if not rows:
                continue
            used = True
            if not self._dated(entry, when, describe(concept)):
                return
            assert when is not None
            for row in rows:
                if self._fresh(entry, row, when):
                    self._observed(entry, row, holder, when)
        if not used:
            self._unmapped(entry, res.get("code"))

    def _observed(self, entry: Entry, row: MapRow, holder: Mapping[str, Any], when: date) -> None:
        """The value of one mapped observation (or component), as the record takes it."""
        if row.value:
            self._offer(row, row.typed_value(), when, entry)
            return
        kind = row.kind
        if "valueQuantity" in holder:
            q = holder["valueQuantity"]
            unit, number = q.get("code") or q.get("unit"), q.get("value")
            if number is None or (not unit and kind is Kind.LAB):
                self._note(
                    entry,
                    "warning",
                    "incomplete",
                    f"{row.field}: a quantity without "
                    f"{'a unit' if number is not None else 'a value'} is not used (never guessed)",
                )
                return
            if kind is Kind.LAB:
                if row.annotation and "{" not in unit:
                    unit += "{" + row.annotation + "}"
                self._offer(row, {"value": number, "unit": unit}, when, entry)
            elif row.unit and unit not in row.unit:
                self._note(
                    entry,
                    "error",
                    "value",
                    f"{row.field}: unit {unit!r} is not accepted; "
                    f"the mapping accepts {list(row.unit)}",
                )
            else:
                self._offer(
                    row,
                    int(number)
                    if kind is Kind.INTEGER and isinstance(number, float) and number.is_integer()
                    else number,
                    when,
                    entry,
                )
        elif "valueInteger" in holder and kind in (Kind.INTEGER, Kind.NUMBER):
            self._offer(row, holder["valueInteger"], when, entry)
        elif "valueBoolean" in holder and kind is Kind.BOOLEAN:
            self._offer(row, holder["valueBoolean"], when, entry)
        elif "valueCodeableConcept" in holder:
            self._coded(entry, row.field, holder["valueCodeableConcept"], when)
        else:
            got = next((k for k in holder if k.startswith("value")), "no value")
            self._note(
                entry,
                "warning",
                "not-supported",
                f"{row.field}: {got} cannot give a {kind.value}; not used",
            )

    def _coded(
        self, entry: Entry, name: str, concept: Any, when: date | None, into: str = ""
    ) -> bool:
        """A coded value through the table's Answer rows (kept under ``into``, default
        ``name``); an unmapped answer is reported, not guessed from its display text."""
        for c in codings(concept):
            answer = self.table.answer(name, c.get("system"), c.get("code"))
            if answer is not None:
                self.values.setdefault(into or name, []).append(
                    _Value(when, entry.index, typed_answer(answer, name), entry)
                )
                return True
        self._note(
            entry,
            "warning",
            "code-invalid",
            f"{name}: no mapping for the value {describe(concept)}; not used",
        )
        return False

    def _condition(self, entry: Entry) -> None:
        res = entry.resource
        verification = {c.get("code") for c in codings(res.get("verificationStatus"))}
        clinical = {c.get("code") for c in codings(res.get("clinicalStatus"))}
        if verification & _UNUSABLE_VERIFICATION:
            self._skip(entry, f"verification status {sorted(verification)}; not used")
            return
        kind = "Condition.provisional" if verification & _UNVERIFIED else "Condition"
        rows = self._rows(kind, res.get("code"))
        if not rows:
            self._unmapped(entry, res.get("code"), " (provisional)" if kind != "Condition" else "")
            return
        onset = fhir_date(
            res.get("onsetDateTime")
            or (res.get("onsetPeriod") or {}).get("start")
            or res.get("recordedDate")
        )
        if onset is not None and onset > self.index:
            self._skip(
                entry,
                f"dated {onset}, after the index date {self.index}; not used",
                f"dated after the index date {self.index}; not used",
            )
            return
        for row in rows:
            if row.max_age_days is not None:  # a current finding: dated, recent, not resolved
                if not self._dated(entry, onset, row.field) or clinical & _NOT_CURRENT:
                    continue
                assert onset is not None
                if not self._fresh(entry, row, onset):
                    continue
            if row.field == "lung_cancer":
                self.cancer.append(entry)
                diagnosed = fhir_date(  # recordedDate is not a diagnosis date
                    res.get("onsetDateTime") or (res.get("onsetPeriod") or {}).get("start")
                )
                if diagnosed is not None:
                    self.cancer_onset.append((diagnosed, entry))
                self._cancer_details(entry)
            else:
                self._offer(row, row.typed_value(), onset, entry)

    def _cancer_details(self, entry: Entry) -> None:
        res = entry.resource
        for ext in res.get("extension") or []:
            row = self.table.extension(ext.get("url", ""))
            if row is not None and "valueCodeableConcept" in ext:
                self._coded(
                    entry,
                    row.field,
                    ext["valueCodeableConcept"],
                    fhir_date(res.get("recordedDate")),
                )
        for stage in res.get("stage") or []:
            if stage.get("summary"):
                self._coded(entry, "stage", stage["summary"], None, into="stage_summary")

    def _procedure(self, entry: Entry) -> None:
        res = entry.resource
        rows = self._rows("Procedure", res.get("code"))
        if not rows:
            self._unmapped(entry, res.get("code"))
            return
        if res.get("status") != "completed":
            self._skip(entry, f"status {res.get('status')!r}; only completed procedures are used")
            return
        period = res.get("performedPeriod") or {}
        when = fhir_date(res.get("performedDateTime") or period.get("end") or period.get("start"))
        if not self._dated(entry, when, describe(res.get("code"))):
            return
        assert when is not None
        for row in rows:
            if self._fresh(entry, row, when):
                value = (self.index - when).days if row.value == DAYS_SINCE else row.typed_value()
                self._offer(row, value, when, entry)

    def _exposure(self, entry: Entry, bundle: BundleIndex) -> None:
        """A medication (statement, request or administration) or an allergy."""
        res, table_kind = entry.resource, _TABLE_KIND[entry.type]
        status = res.get("status")
        concept = res.get("medicationCodeableConcept") or res.get("code")
        if res.get("medicationReference"):
            med = bundle.resolve(res["medicationReference"], entry)
            concept = med.resource.get("code") if med else None
        if entry.type == "AllergyIntolerance":
            status = next(
                iter({c.get("code") for c in codings(res.get("verificationStatus"))}), None
            )
        rows = self._rows(table_kind, concept)
        if not rows:
            self._unmapped(entry, concept)
            return
        if status in _NOT_GIVEN or status in _UNUSABLE_VERIFICATION:
            self._skip(entry, f"status {status!r}; not used")
            return
        period = res.get("effectivePeriod") or {}
        start = fhir_date(
            res.get("effectiveDateTime")
            or period.get("start")
            or res.get("authoredOn")
            or res.get("onsetDateTime")
            or res.get("recordedDate")
            or res.get("dateAsserted")
        )
        if start is None and entry.type == "AllergyIntolerance":
            start = self.index  # an allergy on the list holds however old it is
        if not self._dated(entry, start, describe(concept)):
            return
        assert start is not None
        ongoing = status in ("active", "on-hold", "in-progress") and not period.get("end")
        last = self.index if ongoing else fhir_date(period.get("end")) or start
        for row in rows:
            if self._fresh(entry, row, min(last, self.index)):
                self._offer(row, row.typed_value(), start, entry)

    # -- choosing ---------------------------------------------------------------------
    def finish(self, suspected_pe: bool | None) -> MappedPatient:
        out, res = self.out, self.out.patient.resource
        record = out.record
        if res.get("id"):
            record["patient_id"] = res["id"][:64]
        self._demographics(res)
        if not self.cancer:
            out.issues.append(
                out.patient.issue(
                    "error",
                    "required",
                    "no lung cancer Condition (a table row with field lung_cancer, e.g. "
                    "ICD-10 C34) for this patient; pe-risk assesses people with lung cancer",
                )
            )
        else:  # not a record field: the cancer Conditions are the basis of the record
            out.sources["lung_cancer"] = list(dict.fromkeys(e.ref for e in self.cancer))
        if self.cancer_onset:
            onset, entry = max(self.cancer_onset, key=lambda t: t[0])
            self._put(
                "months_since_diagnosis", round((self.index - onset).days / 30.4375, 1), entry
            )
        stages = self.values.pop("stage", []) or self.values.pop("stage_summary", [])
        self.values.pop("stage_summary", None)
        if stages:
            self._set("stage", stages)
        elif self.cancer:
            out.issues.append(
                out.patient.issue(
                    "error",
                    "required",
                    "no stage group found (an Observation such as LOINC 21908-9, or "
                    "Condition.stage.summary on the lung cancer); the record needs stage",
                )
            )
        for name in sorted(self.values):
            self._set(name, self.values[name])
        if "histology" not in record and self.cancer:
            record["histology"] = "unknown"
            out.sources["histology"] = [e.ref for e in self.cancer]
            out.issues.append(
                out.patient.issue(
                    "warning",
                    "incomplete",
                    "no histology in the lung cancer Condition's code or its histology "
                    "extension; sent as 'unknown'",
                )
            )
        if suspected_pe is not None:
            record["suspected_pe"] = suspected_pe
        return out

    def _demographics(self, res: Mapping[str, Any]) -> None:
        out, patient = self.out, self.out.patient
        gender = res.get("gender")
        if gender in ("female", "male"):
            self._put("sex", gender, patient)
        else:
            out.issues.append(
                patient.issue(
                    "error",
                    "required",
                    f"Patient.gender {gender!r} cannot give sex; the model takes female or male",
                )
            )
        died = fhir_date(res.get("deceasedDateTime"))
        if died is not None and died <= self.index:
            dead = (
                f"Patient.deceasedDateTime {res['deceasedDateTime']}: the patient had died by "
                f"the index date {self.index}; give an earlier index date to look back"
            )
        elif res.get("deceasedBoolean") is True:
            dead = "Patient.deceasedBoolean true: the patient has died (date not recorded)"
        else:
            dead = ""
        if dead:
            out.issues.append(
                patient.issue("error", "business-rule", f"{dead}; pe-risk assesses the living")
            )
        born = fhir_date(res.get("birthDate"))
        if born is None:
            out.issues.append(
                patient.issue(
                    "error", "required", "Patient.birthDate is missing; the record needs age"
                )
            )
        else:
            before = (self.index.month, self.index.day) < (born.month, born.day)
            self._put("age", self.index.year - born.year - before, patient)

    def _put(self, name: str, value: Any, entry: Entry) -> None:
        self.out.record[name] = value
        self.out.sources[name] = [entry.ref]

    def _set(self, name: str, values: list[_Value]) -> None:
        """Pick the most recent value (naming the ones it supersedes); a finding or
        treatment found true anywhere is true."""
        ordered = sorted(values, key=lambda v: (v.when or date.min, v.index))
        kind = field_kind(name)
        if kind is Kind.BOOLEAN:
            chosen = [v for v in ordered if v.value is True] or ordered[-1:]
        else:
            chosen = ordered[-1:]
            winner = chosen[0]
            for older in ordered[:-1]:
                if older.entry.ref == winner.entry.ref:
                    continue
                clash = older.value != winner.value and kind is Kind.CATEGORY
                self.out.issues.append(
                    older.entry.issue(
                        "warning" if clash else "information",
                        "conflict" if clash else "informational",
                        f"{name}: {older.value!r} ({older.when or 'undated'}) is superseded by "
                        f"{winner.value!r} from {winner.entry.ref} ({winner.when or 'undated'})",
                        f"{name}: superseded by {winner.value!r} from {winner.entry.ref} "
                        f"({winner.when or 'undated'})",
                    )
                )
        self.out.record[name] = chosen[-1].value
        self.out.sources[name] = list(dict.fromkeys(v.entry.ref for v in chosen))


def typed_answer(row: MapRow, name: str) -> Any:
    """An Answer row's value in the type of ``name`` (a generic boolean answer included)."""
    return row.typed_value() if row.field == name else row.value == "true"
