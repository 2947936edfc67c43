"""The patient record as a typed pydantic model, and errors that say what is wrong.

``PatientRecord`` is generated from ``features.contract.FIELDS`` so that names,
ranges and descriptions have one source. It is strict where a guess would be
dangerous: unknown fields are rejected, booleans are JSON ``true``/``false`` only
(``"maybe"``, ``"yes"`` and ``1`` are rejected), numbers are JSON numbers (not
strings, not NaN/Infinity), categories are the exact lower-case strings of the
contract, and lab values are converted from their UCUM unit to the canonical unit
before the hard range is checked.

Every error becomes a ``FieldIssue`` naming the field, the value, the rule, and
where one exists the likely fix (a D-dimer of 850 given as a bare number was
probably sent in ng/mL).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from features.contract import BY_NAME, FIELDS, REQUIRED, FieldSpec, Kind
from features.units import DDU_UNITS, LAB_UNITS, UnitError, accepted_units, factor, normalise_unit


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


class RecordError(ValueError):
    """A record that failed validation; ``issues`` lists every problem, not just the first."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(i.message for i in issues))


class LabQuantity(BaseModel):
    """A laboratory value with its UCUM unit, e.g. ``{"value": 850, "unit": "ng/mL{FEU}"}``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    value: StrictFloat | StrictInt = Field(description="The number, in `unit`.")
    unit: str = Field(description="A UCUM unit accepted for this analyte.", max_length=32)


# ---------------------------------------------------------------------------------------
# Messages: one function per rule, used by the JSON path and the table path alike.
# ---------------------------------------------------------------------------------------


def show(value: Any) -> str:
    """A value as messages echo it (JSON spelling, truncated)."""
    if isinstance(value, LabQuantity):
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
    if isinstance(given, LabQuantity | Mapping):
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


def unknown_issue(name: str, value: Any, extra_known: Iterable[str] = ()) -> FieldIssue:
    known = [*BY_NAME, *extra_known]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else "; see the data contract for field names"
    return FieldIssue(
        name, _plain(value), "unknown_field", f"{name!r} is not a field of the patient record{hint}"
    )


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, LabQuantity) else value


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


def _lab_to_canonical(name: str):
    spec = BY_NAME[name]

    def convert(v: float | LabQuantity) -> float:
        if isinstance(v, LabQuantity):
            try:
                value = v.value * factor(name, v.unit)
            except UnitError as err:
                raise PydanticCustomError(
                    "unit", "{msg}", {"msg": unit_issue(spec, v, err).message}
                ) from None
        else:
            value = float(v)
        assert spec.hard is not None
        if not spec.hard[0] <= value <= spec.hard[1]:
            raise PydanticCustomError(
                "range", "{msg}", {"msg": range_issue(spec, v, value).message}
            )
        return value

    return convert


def _annotation(spec: FieldSpec) -> Any:
    desc = spec.description + (f" Unit: {spec.unit}." if spec.unit else "")
    if spec.kind is Kind.LAB:
        units = ", ".join(accepted_units(spec.name))
        desc += (
            f" A bare number in the canonical unit, or {{value, unit}} with unit one of: {units}."
        )
        converted = Annotated[
            StrictFloat | StrictInt | LabQuantity, AfterValidator(_lab_to_canonical(spec.name))
        ]
        return Annotated[converted | None, Field(description=desc)]  # null is not converted
    if spec.kind in (Kind.NUMBER, Kind.INTEGER):
        base = StrictInt if spec.kind is Kind.INTEGER else StrictFloat | StrictInt
        lo, hi = spec.hard or (None, None)
        return Annotated[base | None, Field(ge=lo, le=hi, description=desc)]
    if spec.kind is Kind.BOOLEAN:
        return Annotated[StrictBool | None, Field(description=desc)]
    if spec.kind is Kind.CATEGORY:
        return Annotated[Literal[spec.choices] | None, Field(description=desc)]  # type: ignore[valid-type]
    return Annotated[str | None, Field(max_length=spec.max_length, description=desc)]


class _RecordBase(BaseModel):
    """Shared behaviour of the generated record model."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, title="PatientRecord"
    )
    # What validation learnt beside the fields: each value as sent with its unit, and the
    # warnings. Plain slots, set once by the validator below: pydantic private attributes
    # would cost a fifth of a record's validation (a Python post-init per instance).
    __slots__ = ("_given", "_warnings")
    if TYPE_CHECKING:  # annotated at run time, they would become private attributes
        _given: dict[str, str]
        _warnings: list[RecordWarning]

    @model_validator(mode="wrap")
    @classmethod
    def _remember_units(cls, data: Any, handler: Any) -> Any:
        record = handler(data)
        if isinstance(data, Mapping):
            given, warnings = _given_and_warnings(record, data)
            object.__setattr__(record, "_given", given)  # frozen: set here, once
            object.__setattr__(record, "_warnings", warnings)
        return record

    @property
    def warnings(self) -> list[RecordWarning]:
        """Accepted-but-noteworthy inputs, each saying what to check."""
        return list(self._warnings)

    def given(self, name: str) -> str | None:
        """The value of ``name`` as the client sent it, with its unit (None when absent)."""
        return self.given_all((name,))[0]

    def given_all(self, names: Sequence[str | None]) -> list[str | None]:
        """``given`` for many fields at once (None for a None name): one answer per feature."""
        return [col[0] for col in self.given_columns([self], names)]

    @staticmethod
    def given_columns(
        records: Sequence[_RecordBase], names: Sequence[str | None]
    ) -> list[list[str | None]]:
        """``given_all`` for many records at once, one list per name (the batch path's
        form: a field's values are formatted in one pass, and shared by its one-hots)."""
        dicts = [r.__dict__ for r in records]
        given = [r._given for r in records]
        with_units = set().union(*given)
        done: dict[str, list[str | None]] = {}
        out: list[list[str | None]] = []
        for name in names:
            if name is None:
                out.append([None] * len(dicts))
                continue
            if name not in done:
                values = [d[name] for d in dicts]
                spec = BY_NAME[name]
                if spec.kind is Kind.BOOLEAN:
                    col = [None if v is None else "yes" if v else "no" for v in values]
                elif spec.kind in (Kind.NUMBER, Kind.INTEGER, Kind.LAB):
                    unit = f" {spec.unit}" if spec.unit else ""
                    col = [None if v is None else f"{v:g}{unit}" for v in values]
                else:
                    col = [None if v is None else str(v) for v in values]
                if name in with_units:
                    col = [g.get(name, c) for g, c in zip(given, col, strict=True)]
                done[name] = col
            out.append(done[name])
        return out

    def present(self) -> dict[str, Any]:
        """The known fields in canonical units (absent and null fields left out)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


PatientRecord: type[_RecordBase] = create_model(  # type: ignore[call-overload]
    "PatientRecord",
    __base__=_RecordBase,
    __doc__="One person with lung cancer at one assessment (shared/data-contract.md).",
    **{f.name: (_annotation(f), ... if f.required else None) for f in FIELDS},
)


#: the fields whose sent value can warn or carry a unit, by their contract position
_CHECKED = {
    f.name: (k, f) for k, f in enumerate(FIELDS) if f.usual is not None or f.kind is Kind.LAB
}


def _given_and_warnings(
    record: _RecordBase, raw: Mapping[str, Any]
) -> tuple[dict[str, str], list[RecordWarning]]:
    given: dict[str, str] = {}
    warnings: list[RecordWarning] = []
    values = record.__dict__
    checked = sorted(_CHECKED[n] for n in raw if n in _CHECKED and values[n] is not None)
    for _, spec in checked:  # contract order
        value = values[spec.name]
        sent = raw[spec.name]
        if isinstance(sent, dict | LabQuantity):  # dict first: an ABC check is slow
            q = sent if isinstance(sent, LabQuantity) else LabQuantity.model_validate(sent)
            unit = normalise_unit(q.unit)
            given[spec.name] = f"{q.value:g} {unit}"
            if unit in DDU_UNITS:
                warnings.append(
                    RecordWarning(
                        spec.name,
                        q.model_dump(),
                        f"d_dimer was given in DDU and converted to {value:g} mg/L FEU with the "
                        "approximate factor FEU ≈ 2 × DDU (assay-dependent); check against the "
                        "assay's own FEU cut-off",
                    )
                )
        if spec.usual is not None and not spec.usual[0] <= value <= spec.usual[1]:
            lo, hi = spec.usual
            warnings.append(
                RecordWarning(
                    spec.name,
                    value,
                    f"{spec.name}={value:g} {spec.unit} is outside the usual range {lo:g}–{hi:g} "
                    f"{spec.unit}; accepted, but check the value and its unit".replace("  ", " "),
                )
            )
    return given, warnings


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


def parse_record(raw: Any) -> _RecordBase:
    """Validate one record (a dict as decoded from JSON).

    Raises
    ------
    RecordError
        With every problem found, each naming the field, the value and the rule.
    """
    # a required field sent as null is missing, not unknown (schema-level None is allowed
    # for every field so that optional ones can be null)
    nulls = (
        [missing_issue(BY_NAME[name]) for name in REQUIRED if name in raw and raw[name] is None]
        if isinstance(raw, Mapping)
        else []
    )
    try:
        record = PatientRecord.model_validate(raw)
    except ValidationError as exc:
        seen = {i.field for i in nulls}
        raise RecordError(
            nulls + [i for i in issues_from(exc, raw) if i.field not in seen]
        ) from None
    if nulls:
        raise RecordError(nulls)
    return record
