"""FHIR R4 bundles: validation, the resources and references of a bundle, and issues.

``validate_bundle`` checks a body against ``fhir.resources`` R4B (structure, not
terminology); ``BundleIndex`` resolves references the way FHIR does (``Type/id``, a full
URL, ``#contained``); ``Issue`` is one line of the OperationOutcome that reports what a
bundle gave and what pe-risk did not use; ``MappedPatient`` is one patient's record with
where each field came from. ``serving.interop.fhir_record`` does the mapping itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError

BUNDLE_TYPES = ("collection", "searchset", "transaction", "batch", "document")
#: bundle types whose entries carry a ``request`` pe-risk does not execute (it only reads)
REQUEST_TYPES = frozenset({"transaction", "batch"})


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome issue: what could not be used, and why."""

    severity: str  # fatal | error | warning | information
    code: str  # FHIR issue type: invalid, required, value, not-supported, informational, ...
    diagnostics: str
    expression: str | None = None
    #: for an informational issue about one resource: (its type, the reason without the
    #: resource's own details, its reference), so that ``summarise`` can group alike ones
    about: tuple[str, str, str] | None = field(default=None, compare=False)

    def as_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = [self.expression]
        return out


class BundleError(ValueError):
    """A body that is not a usable FHIR Bundle (answered 400 with an OperationOutcome)."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("; ".join(i.diagnostics for i in issues))


@dataclass(slots=True)
class Entry:
    """A resource of the bundle, with the reference that names it."""

    index: int
    resource: dict[str, Any]
    ref: str

    @property
    def type(self) -> str:
        return self.resource.get("resourceType", "")

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}].resource"

    def issue(self, severity: str, code: str, text: str, reason: str | None = None) -> Issue:
        """An issue about this resource; ``reason`` (default ``text``) is what alike issues
        share, e.g. "older than the 30 days the mapping allows" without the date."""
        return Issue(
            severity, code, f"{self.ref}: {text}", self.where, (self.type, reason or text, self.ref)
        )


@dataclass(slots=True)
class MappedPatient:
    """One Patient of the bundle as a raw record, with where each field came from."""

    patient: Entry
    record: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(i.severity in ("error", "fatal") for i in self.issues)

    @property
    def basis(self) -> list[str]:
        """The references of every resource the record was built from, Patient first."""
        seen = {self.patient.ref: None}
        for refs in self.sources.values():
            seen.update(dict.fromkeys(refs))
        return list(seen)


def summarise(issues: Iterable[Issue], shown: int = 3) -> list[Issue]:
    """Alike informational issues as one: "Claim ×312: pe-risk does not read this resource
    type (Claim/1, Claim/2, Claim/3 and 309 more)". Warnings and errors stay one per
    resource, and every reason stays (an unmapped code is named once per code), so the
    outcome still says what was not used and why, in a size a client can read."""
    order: list[Issue | tuple[str, str, str]] = []
    groups: dict[tuple[str, str, str], list[Issue]] = {}
    for i in issues:
        if i.severity != "information" or i.about is None:
            order.append(i)
            continue
        key = (i.code, i.about[0], i.about[1])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(i)
    out = []
    for item in order:
        if isinstance(item, Issue):
            out.append(item)
            continue
        alike = groups[item]
        if len(alike) == 1:
            out.append(alike[0])
            continue
        refs = [i.about[2] for i in alike if i.about]
        more = f" and {len(refs) - shown} more" if len(refs) > shown else ""
        out.append(
            Issue(
                "information",
                item[0],
                f"{item[1]} ×{len(alike)}: {item[2]} ({', '.join(refs[:shown])}{more})",
            )
        )
    return out


def validate_bundle(doc: Any) -> None:
    """Check ``doc`` is an R4 Bundle of an accepted type (``fhir.resources`` R4B).

    Raises
    ------
    BundleError
        Naming each structural problem with its FHIRPath-style location.
    """
    from fhir.resources.R4B.bundle import Bundle  # 1 s to import: only where bundles arrive

    if not isinstance(doc, Mapping) or doc.get("resourceType") != "Bundle":
        got = doc.get("resourceType") if isinstance(doc, Mapping) else type(doc).__name__
        raise BundleError(
            [
                Issue(
                    "error",
                    "invalid",
                    f"send a FHIR Bundle ({' or '.join(BUNDLE_TYPES)}), not {got!r}",
                )
            ]
        )
    try:
        Bundle.model_validate(doc)
    except ValidationError as exc:
        raise BundleError([_pydantic_issue(e) for e in exc.errors()[:20]]) from None
    if doc.get("type") not in BUNDLE_TYPES:
        raise BundleError(
            [
                Issue(
                    "error",
                    "value",
                    f"Bundle.type {doc.get('type')!r} is not accepted; "
                    f"send {' or '.join(BUNDLE_TYPES)}",
                    "Bundle.type",
                )
            ]
        )


def _pydantic_issue(err: Mapping[str, Any]) -> Issue:
    path = "Bundle"
    for part in err.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    value = err.get("input")
    shown = repr(value)[:60] if not isinstance(value, dict | list) else type(value).__name__
    return Issue("error", "structure", f"{path}: {err.get('msg', 'invalid')} (got {shown})", path)


def fhir_date(text: Any) -> date | None:
    """The calendar date of a FHIR date/dateTime/instant (a partial date → its first day)."""
    if not isinstance(text, str) or len(text) < 4:
        return None
    try:
        return date(int(text[:4]), int(text[5:7] or 1), int(text[8:10] or 1))
    except ValueError:
        return None


def codings(concept: Any) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept (none for anything else)."""
    return list(concept.get("coding") or []) if isinstance(concept, Mapping) else []


def describe(concept: Any) -> str:
    """A CodeableConcept as issues quote it: ``system|code 'display'``."""
    found = codings(concept)
    if not found:
        return repr(concept.get("text", "no code")) if isinstance(concept, Mapping) else "no code"
    return ", ".join(
        f"{c.get('system', '?')}|{c.get('code', '?')}"
        + (f" {c['display']!r}" if c.get("display") else "")
        for c in found
    )


class BundleIndex:
    """The bundle's entries, with references resolved the way FHIR resolves them."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.entries: list[Entry] = []
        self.by_ref: dict[str, Entry] = {}
        for i, e in enumerate(doc.get("entry") or []):
            res = e.get("resource")
            if not isinstance(res, dict):
                continue
            rtype, rid, full = res.get("resourceType"), res.get("id"), e.get("fullUrl")
            entry = Entry(i, res, f"{rtype}/{rid}" if rid else full or f"{rtype} entry {i}")
            self.entries.append(entry)
            for key in (f"{rtype}/{rid}" if rid else None, full):
                if key:
                    self.by_ref[key] = entry

    def resolve(self, reference: Any, holder: Entry | None = None) -> Entry | None:
        ref = reference.get("reference") if isinstance(reference, Mapping) else None
        if not isinstance(ref, str):
            return None
        if ref.startswith("#") and holder is not None:  # a contained resource
            for res in holder.resource.get("contained") or []:
                if res.get("id") == ref[1:]:
                    return Entry(holder.index, res, f"{holder.ref}{ref}")
            return None
        found = self.by_ref.get(ref)
        if found is None and "/" in ref:  # an absolute URL naming Type/id
            found = self.by_ref.get("/".join(ref.rstrip("/").split("/")[-2:]))
        return found
