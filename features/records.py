"""The patient record as a typed pydantic model, and errors that say what is wrong.

``PatientRecord`` is generated from ``features.contract.FIELDS`` so that names,
ranges and descriptions have one source. It is strict where a guess would be
dangerous: unknown fields are rejected, booleans are JSON ``true``/``false`` only
(``"maybe"``, ``"yes"`` and ``1`` are rejected), numbers are JSON numbers (not
strings, not NaN/Infinity), categories are the exact lower-case strings of the
contract, and lab values are converted from their UCUM unit to the canonical unit
before the hard range is checked.

Every error becomes a ``FieldIssue`` of ``features.messages`` naming the field, the
value, the rule, and where one exists the likely fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from features.messages import (
    FieldIssue,
    RecordWarning,
    issues_from,
    missing_issue,
    range_issue,
    unit_issue,
)
from features.units import DDU_CAVEAT, DDU_UNITS, UnitError, accepted_units, factor, normalise_unit


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
        if type(data) is dict or isinstance(data, Mapping):  # dict first: an ABC check is slow
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


#: the fields whose sent value can warn or carry a unit, in contract order
_CHECKED = tuple(f for f in FIELDS if f.usual is not None or f.kind is Kind.LAB)


def _given_and_warnings(
    record: _RecordBase, raw: Mapping[str, Any]
) -> tuple[dict[str, str], list[RecordWarning]]:
    given: dict[str, str] = {}
    warnings: list[RecordWarning] = []
    values = record.__dict__
    for spec in _CHECKED:  # a value that is known was sent (absent fields are None)
        value = values[spec.name]
        if value is None:
            continue
        sent = raw[spec.name]
        if isinstance(sent, dict | LabQuantity):  # {value, unit}
            q = sent if isinstance(sent, LabQuantity) else LabQuantity.model_validate(sent)
            unit = normalise_unit(q.unit)
            given[spec.name] = f"{q.value:g} {unit}"
            if unit in DDU_UNITS:
                warnings.append(
                    RecordWarning(
                        spec.name,
                        q.model_dump(),
                        f"d_dimer was given in DDU and converted to {value:g} mg/L FEU "
                        + DDU_CAVEAT,
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
        if type(raw) is dict or isinstance(raw, Mapping)
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
