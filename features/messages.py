"""What the record, the table and the FHIR mapping say when a value is wrong: one function
per rule, each naming the field, echoing the value, stating the rule and, where one exists,
the likely fix (a D-dimer of 850 given as a bare number was probably sent in ng/mL).

The JSON path (``features.records``) and the table path (``features.table``) use the same
messages, so a hospital's row report and the API's 422 body read alike."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from features.contract import BY_NAME, FieldSpec, Kind
from features.units import LAB_UNITS, UnitError, accepted_units


@dataclass(frozen=True, slots=True)
class FieldIssue:
    """One problem with one field: what a 4xx body and a row report are made of."""

    field: str
    value: Any
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RecordWarning:
    """An accepted but noteworthy input: outside the usual range, or converted approximately."""

    field: str
    value: Any
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def show(value: Any) -> str:
    """A value as messages echo it (JSON spelling, truncated)."""
    if hasattr(value, "model_dump"):  # a {value, unit} lab quantity
        value = value.model_dump()
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def unit_suggestion(spec: FieldSpec, value: float) -> str | None:
    """An accepted unit that would put a bare out-of-range ``value`` in the usual range."""
    if spec.kind is not Kind.LAB:
        return None
    target = spec.usual or spec.hard
    assert target is not None
    lo, hi = target
    for unit, f in LAB_UNITS[spec.name].factors.items():
        if f != 1.0 and lo <= value * f <= hi:
            return unit
    return None


def range_issue(spec: FieldSpec, given: Any, canonical: float) -> FieldIssue:
    """The message for a value outside the hard range (canonical units)."""
    assert spec.hard is not None
    lo, hi = spec.hard
    unit = f" {spec.unit}" if spec.unit else ""
    side = (
        f"above the accepted maximum {hi:g}{unit}"
        if canonical > hi
        else (f"below the accepted minimum {lo:g}{unit}")
    )
    shown = show(given)
    if hasattr(given, "model_dump") or isinstance(given, Mapping):
        msg = f"{spec.name}={shown} is {canonical:g}{unit}, {side} (accepted {spec.range_text()})"
    else:
        msg = f"{spec.name}={shown} is {side} (accepted {spec.range_text()})"
        hint = unit_suggestion(spec, float(given)) if isinstance(given, int | float) else None
        if hint:
            msg += f'; was it sent in {hint}? give {{"value": {shown}, "unit": "{hint}"}}'
    return FieldIssue(spec.name, _plain(given), "range", msg)


def unit_issue(spec: FieldSpec, given: Any, err: UnitError) -> FieldIssue:
    return FieldIssue(
        spec.name,
        _plain(given),
        "unit",
        f"{spec.name}={show(given)}: unit {show(err.unit)} is not accepted; {err.hint}",
    )


def choice_issue(spec: FieldSpec, given: Any) -> FieldIssue:
    msg = (
        f"{spec.name}={show(given)} is not accepted; accepted values are {', '.join(spec.choices)}"
    )
    if isinstance(given, str):
        folded = {c.lower(): c for c in spec.choices}
        roman = {"1": "I", "2": "II", "3": "III", "4": "IV"}
        guess = folded.get(given.strip().lower()) or roman.get(given.strip().rstrip("ABCabc"))
        if guess is None and spec.name == "stage":
            guess = folded.get(given.strip().rstrip("ABCabc").lower())
        if guess is None:
            close = [c for c in spec.choices if c.startswith(given.strip().lower()[:4])]
            close = close or difflib.get_close_matches(given.lower(), spec.choices, n=1)
            guess = close[0] if close else None
        if guess:
            msg += f"; did you mean {guess!r}?"
    return FieldIssue(spec.name, _plain(given), "choice", msg)


def type_issue(spec: FieldSpec, given: Any) -> FieldIssue:
    if spec.kind is Kind.BOOLEAN:
        want = "true or false (leave the field out when it is not known)"
    elif spec.kind is Kind.INTEGER:
        want = f"a whole number ({spec.range_text() or 'integer'})"
    elif spec.kind is Kind.LAB:
        want = (
            f"a number in {LAB_UNITS[spec.name].canonical} or "
            f'{{"value": <number>, "unit": <one of {accepted_units(spec.name)}>}}'
        )
    elif spec.kind is Kind.NUMBER:
        want = f"a finite number ({spec.range_text() or 'number'})"
    elif spec.kind is Kind.CATEGORY:
        want = f"one of {', '.join(spec.choices)}"
    else:
        want = f"a string of at most {spec.max_length} characters"
    return FieldIssue(
        spec.name, _plain(given), "type", f"{spec.name}={show(given)} is not accepted; give {want}"
    )


def missing_issue(spec: FieldSpec) -> FieldIssue:
    what = spec.range_text() or ", ".join(spec.choices)
    return FieldIssue(
        spec.name,
        None,
        "required",
        f"{spec.name} is required ({spec.description.rstrip('.')}: {what})",
    )


def closest_field(name: str, extra_known: Iterable[str] = ()) -> str | None:
    """The contract field (or one of ``extra_known``) that ``name`` is likely a misspelling of."""
    close = difflib.get_close_matches(name, [*BY_NAME, *extra_known], n=1, cutoff=0.75)
    return close[0] if close else None


def unknown_issue(name: str, value: Any, extra_known: Iterable[str] = ()) -> FieldIssue:
    close = closest_field(name, extra_known)
    hint = f"; did you mean {close!r}?" if close else "; see the data contract for field names"
    return FieldIssue(
        name, _plain(value), "unknown_field", f"{name!r} is not a field of the patient record{hint}"
    )


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


_PYDANTIC_TYPE_ERRORS = {
    "bool_type",
    "float_type",
    "int_type",
    "string_type",
    "int_from_float",
    "model_type",
    "finite_number",
    "dict_type",
    "float_parsing",
    "int_parsing",
    "model_attributes_type",
}


def issues_from(exc: ValidationError, raw: Any) -> list[FieldIssue]:
    """Translate a pydantic ``ValidationError`` on ``PatientRecord`` into ``FieldIssue``s.

    One issue per field (pydantic reports each branch of a union; the most
    specific is kept).
    """
    if not isinstance(raw, Mapping):
        return [
            FieldIssue(
                "(record)",
                _truncate(raw),
                "type",
                f"the record must be a JSON object of fields, got {show(raw)}",
            )
        ]
    by_field: dict[str, FieldIssue] = {}
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        name = str(loc[0]) if loc else "(record)"
        given = raw.get(name)
        spec = BY_NAME.get(name)
        etype = err["type"]
        if spec is None or (etype == "extra_forbidden" and len(loc) == 1):
            issue = unknown_issue(name, given)
        elif etype == "missing" and len(loc) == 1:
            issue = missing_issue(spec)
        elif etype in ("unit", "range"):
            issue = FieldIssue(name, _truncate(given), etype, err["ctx"]["msg"])
        elif etype in ("greater_than_equal", "less_than_equal"):
            issue = range_issue(spec, given, float(given))
        elif etype == "literal_error":
            issue = choice_issue(spec, given)
        elif etype == "string_too_long":
            issue = FieldIssue(
                name,
                _truncate(given),
                "length",
                f"{name} is longer than {spec.max_length} characters",
            )
        else:
            issue = type_issue(spec, given)
        # keep the most specific message per field: unit/range beat a union's type errors
        prev = by_field.get(name)
        if prev is None or (prev.rule == "type" and issue.rule != "type"):
            by_field[name] = issue
    return list(by_field.values())


def _truncate(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    if isinstance(value, list | dict) and len(show(value)) > 80:
        return show(value)
    return value
