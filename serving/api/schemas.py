"""Request and response models of the HTTP API (they are what ``/docs.json`` documents).

The record itself is validated by ``features.records`` (every field, unit and range, with
messages that name the field, value and rule); ``RecordIn`` only documents the fields so
that the OpenAPI spec lists them, and accepts anything so that the one validator decides.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    create_model,
    field_validator,
)

from features.contract import FIELDS

#: the limits of one request, declared once (the guard, the batch model and the CDS Hooks
#: feedback read them): records in a batch, members of any JSON object, items of any JSON
#: array (a FHIR bundle's entries included), feedback items, and errors listed per record
MAX_BATCH = 10_000
MAX_MEMBERS = 256
MAX_ITEMS = MAX_BATCH
MAX_FEEDBACK = 100
MAX_ERRORS = 50


def _record_in() -> type[BaseModel]:
    fields: dict[str, Any] = {
        f.name: (
            Any,
            Field(
                default=None,
                description=f.description
                + (f" [{f.unit}]" if f.unit else "")
                + (" (required)" if f.required else ""),
            ),
        )
        for f in FIELDS
    }
    return create_model(
        "PatientRecordIn",
        __config__=ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False}),
        **fields,
    )


RecordIn = _record_in()


class FieldError(BaseModel):
    field: str = Field(description="the field (or JSON path) at fault; '' for the whole body")
    value: Any = Field(default=None, description="the value as sent")
    rule: str = Field(
        description="the rule it broke: required, type, range, unit, choice, unknown, json, ..."
    )
    message: str = Field(description="what is wrong and what is accepted")


class ErrorBody(BaseModel):
    """Every 4xx answer has this shape."""

    error: str
    detail: list[FieldError] = Field(default_factory=list)


class Contribution(BaseModel):
    feature: str
    label: str
    value: str | None = Field(default=None, description="as given, with its unit; null when absent")
    contribution: float = Field(description="on the calibrated log-odds scale")
    direction: Literal["raises", "lowers", "none"]


class Rest(BaseModel):
    """The features an explanation does not list (``top_contributions``), summed."""

    features: int = Field(ge=1, description="how many features are not listed")
    contribution: float = Field(description="their contributions' sum, on the log-odds scale")


class Explanation(BaseModel):
    scale: Literal["log-odds"] = "log-odds"
    base_value: float
    contributions: list[Contribution] = Field(
        description="by |contribution|: all features, or the top_contributions largest"
    )
    rest: Rest | None = Field(
        default=None,
        description="only with top_contributions: the unlisted features, summed, so that "
        "base_value + Σ contributions + rest.contribution is still the log-odds",
    )


class Recommendation(BaseModel):
    code: str
    severity: Literal["info", "warning", "critical"]
    text: str
    source: str


class Warning(BaseModel):
    field: str
    value: Any = None
    message: str


class ModelBlock(BaseModel):
    name: str
    version: str
    trained_on: str
    synthetic_data: bool
    trained_at: str | None = None
    calibration: str
    data_digest: str | None = None
    notice: str


class RiskBands(BaseModel):
    low_below: float
    high_from: float


class AtHorizon(BaseModel):
    horizon_days: int
    probability: float = Field(ge=0, le=1)
    base_value: float | None = Field(
        default=None,
        description="the explanation's base at this horizon: base_value + Σ contributions = "
        "logit(probability) (the contributions are the same at every horizon)",
    )


class EstimateOut(BaseModel):
    question: str = Field(description="what this estimate answers, in words")
    outcome: str = Field(description="its outcome in a few words")
    probability: float | None = Field(default=None, ge=0, le=1)
    risk_category: Literal["low", "intermediate", "high"] | None = None
    risk_bands: RiskBands | None = None
    horizon_days: int = Field(description="0: at the work-up of this assessment")
    by_horizon: list[AtHorizon] | None = Field(
        default=None, description="new_pe only: 30, 90 and 180 days, never decreasing"
    )
    explanation: Explanation | None = None
    not_estimated: str | None = Field(default=None, description="why there is no estimate")


class Estimates(BaseModel):
    pe_now: EstimateOut = Field(
        description="Is there a PE now? P(the work-up at this assessment finds a PE); only "
        "when PE is suspected"
    )
    new_pe: EstimateOut = Field(
        description="How likely is a new PE? Cumulative incidence by 30/90/180 days, death "
        "competing; when PE is suspected, given that the work-up excludes it"
    )


class Prediction(BaseModel):
    patient_id: str | None = None
    question: Literal["pe_now", "new_pe"] = Field(
        description="which estimate probability, risk_category, horizon_days and explanation "
        "carry: pe_now when PE is suspected (and the model answers it), else new_pe at 180 days"
    )
    probability: float = Field(
        ge=0, le=1, description="the estimate named by question (see estimates for both)"
    )
    risk_category: Literal["low", "intermediate", "high"]
    risk_bands: RiskBands
    horizon_days: int = Field(description="0 for pe_now (at the work-up), 180 for new_pe")
    explanation: Explanation | None = None
    estimates: Estimates
    clinical_scores: dict[str, dict[str, Any]] | None = None
    recommendations: list[Recommendation] | None = None
    warnings: list[Warning]
    model: ModelBlock | None = Field(default=None, description="always in /predict; once per batch")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patients: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)
    explain: StrictBool = Field(default=True, description="include exact contributions")
    top_contributions: StrictInt | None = Field(
        default=None,
        ge=1,
        description="list only each explanation's N largest contributions and sum the others "
        "into explanation.rest (the answer stays exact and is several times smaller and "
        "faster for large batches); null lists every feature",
    )
    scores: StrictBool = Field(
        default=False,
        description="include clinical scores and guideline flags (~0.6 ms per record)",
    )

    @field_validator("top_contributions")
    @classmethod
    def _explained(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top is not None and info.data.get("explain") is False:
            raise ValueError(
                "top_contributions shortens explanations, and explain is false: send "
                "explain true (the default), or leave top_contributions out"
            )
        return top


class BatchItem(BaseModel):
    index: int
    ok: bool
    patient_id: str | None = Field(
        default=None, description="a refused record's patient_id, when it is text"
    )
    result: Prediction | None = None
    errors: list[FieldError] | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    model: ModelBlock
