"""Validated records → the response the design promises (design.md, "Prediction response").

One function builds every answer, so ``/predict``, ``/predict_batch`` and the report say
the same thing: the batch is vectorised (per head, one booster call and one contributions
call), then each row is dressed with its explanations, scores, flags and warnings.

Two estimates answer two questions (``models.artifact``): ``estimates.pe_now`` (is there a
PE now? only when PE is suspected) and ``estimates.new_pe`` (a new PE by 30, 90 and 180
days, death competing; if PE is suspected, given that the work-up excludes it). The
top-level ``probability``, ``risk_category``, ``horizon_days`` and ``explanation`` carry
the estimate that answers the question of the assessment, named by ``question``: PE now
when PE is suspected (horizon 0: at the work-up), else a new PE by 180 days.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from features.build import derive, record_columns
from features.contract import FIELDS, Kind
from features.either import one_record
from features.recommend import recommendations
from features.records import PatientRecord
from features.scores import score_table
from features.spec import BY_NAME, FEATURES
from models.artifact import NEW_PE, PE_NOW, Explanation, Head, PERiskModel

#: inputs whose absence the review says weakens the estimate (a warning, never a refusal):
#: the Khorana laboratory items and BMI (Khorana 2008), D-dimer (Pabinger 2018), and the
#: treatment and history items with the largest effects (chemotherapy, prior VTE,
#: anticoagulation) and the setting (whether PE is suspected)
KEY_INPUTS = (
    "d_dimer",
    "platelets",
    "hemoglobin",
    "leukocytes",
    "bmi",
    "chemotherapy",
    "prior_vte",
    "anticoagulated",
    "suspected_pe",
)
_MEASURED = frozenset(f.name for f in FIELDS if f.kind in (Kind.LAB, Kind.NUMBER))
_DERIVED = tuple(f for f in FEATURES if not f.in_model)
_DIRECTION = ("none", "raises", "lowers")  # indexed by np.sign: 0, 1, -1
#: what each estimate answers, in the words the answer, the FHIR RiskAssessment, the CDS
#: card and the report use
QUESTIONS = {
    PE_NOW: "Is there a PE now? Probability that the work-up at this assessment finds a PE.",
    NEW_PE: "How likely is a new PE? Cumulative incidence of a new PE by each horizon, death "
    "competing (if PE is suspected: given that the work-up excludes it).",
}
#: the outcome of each estimate in a few words (FHIR prediction text, CDS summary)
OUTCOMES = {PE_NOW: "PE present now", NEW_PE: "new PE (death competing)"}
#: a model trained on pe_event alone answers one mixed question, and says so
UNTIMED = (
    "How likely is a PE within 180 days? Trained on pe_event (complete follow-up assumed): "
    "a PE present now is included and death is not a competing risk.",
    "PE, present now or new (complete follow-up assumed)",
)


def timed(model: PERiskModel) -> bool:
    """Whether the model was trained on the time-to-event outcomes (else pe_event alone)."""
    return bool(model.info.get("outcomes", {}).get("timed", True))


def model_block(model: PERiskModel, version: str) -> dict[str, Any]:
    info = model.info
    synthetic = bool(info.get("synthetic"))
    return {
        "name": info.get("model_name", "pe-risk"),
        "version": version,
        "trained_on": info.get("trained_on", "unknown"),
        "synthetic_data": synthetic,
        "trained_at": info.get("trained_at"),
        "calibration": model.new_pe.calibration.method,
        "questions": sorted(model.heads),
        "data_digest": info.get("data_digest"),
        "notice": (
            "Trained on SYNTHETIC data generated from published effect sizes; not validated "
            "on patients. Decision support only."
            if synthetic
            else "Decision support only; validated as described in the model card."
        ),
    }


def _contributions(
    shown: Sequence[str | None],
    names: Sequence[str],
    labels: Sequence[str],
    phi: list[float],
    sign: list[int],
    order: list[int],
) -> list[dict]:
    """The features in ``order`` (largest |contribution| first, one argsort per batch),
    with ``phi`` and ``sign`` already in that order; ``shown`` is each feature's value as
    the client gave it (see ``_shown``)."""
    return [
        {
            "feature": names[j],
            "label": labels[j],
            "value": shown[j],
            "contribution": c,
            "direction": _DIRECTION[d],
        }
        for j, c, d in zip(order, phi, sign, strict=True)
    ]


def _shown(
    records: Sequence[Any],
    fields: Sequence[str | None],
    units: Sequence[str],
    x: np.ndarray,
    listed: set[int],
) -> list[tuple[str | None, ...]]:
    """Each row's feature values as the client gave them (with their unit), else as derived;
    built column by column, then one tuple per row. Only the ``listed`` features (those
    some explanation lists) are formatted; the others stay None."""
    fields = [f if j in listed else None for j, f in enumerate(fields)]
    cols = PatientRecord.given_columns(records, fields)
    known = ~np.isnan(x)
    for j, col in enumerate(cols):
        if j not in listed:
            continue
        if None in col and known[:, j].any():  # not given: the derived value, if there is one
            unit = f" {units[j]}" if units[j] else ""
            cols[j] = [
                g if g is not None else None if v != v else f"{v:g}{unit}"
                for g, v in zip(col, x[:, j].tolist(), strict=True)
            ]
    return list(zip(*cols, strict=True))


def _derived_rows(columns: dict[str, np.ndarray], n: int) -> list[dict[str, float]]:
    """The derived predictors (review thresholds) of each row; for one record on its Python
    scalars (``features.either``), several times faster than on one-element arrays."""
    if n == 1:
        return [{k: float(v) for k, v in derive(one_record(columns), _DERIVED).items()}]
    derived = derive(columns, _DERIVED)
    return [
        dict(zip(derived, row, strict=True))
        for row in zip(*(v.tolist() for v in derived.values()), strict=True)
    ]


def _outside_training_range(x: np.ndarray, names: Sequence[str], ranges: dict) -> np.ndarray:
    """rows × features: True where a known value lies outside the training range."""
    lo = np.array([ranges.get(n, (-np.inf, np.inf))[0] for n in names], dtype=np.float64)
    hi = np.array([ranges.get(n, (-np.inf, np.inf))[1] for n in names], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (x < lo) | (x > hi)  # NaN compares False: a missing value is never outside


def _warnings(
    record: Any, x: np.ndarray, names: Sequence[str], ranges: dict, outside: list[int]
) -> list[dict]:
    out = [{"field": w.field, "value": w.value, "message": w.message} for w in record.warnings]
    for name in KEY_INPUTS:
        if getattr(record, name) is None:
            known = "measured" if name in _MEASURED else "known"
            out.append(
                {
                    "field": name,
                    "value": None,
                    "message": f"{name} is not recorded: scored as unknown (between its possible "
                    f"values), so the estimate is less certain; add it if it was {known}",
                }
            )
    for j in outside:
        name, v, (lo, hi) = names[j], float(x[j]), ranges[names[j]]
        out.append(
            {
                "field": BY_NAME[name].field or name,
                "value": v,
                "message": f"{name}={v:g} is outside the training range "
                f"[{lo:g}, {hi:g}]: the estimate is an extrapolation",
            }
        )
    return out


class _Dressed:
    """One head's batch, ready to be dressed row by row: probabilities per horizon, and the
    explanation's lists (lists, not arrays, in the per-row loop: float(a[i, j]) is slow)."""

    def __init__(
        self, head: Head, x: np.ndarray, explain: bool, mixed: bool = False, top: int | None = None
    ) -> None:
        self.head = head
        self.question, self.outcome = (
            UNTIMED if mixed else (QUESTIONS[head.key], OUTCOMES[head.key])
        )
        self.expl: Explanation | None = None
        self.rest: list[float] | None = None  # with ``top``: each row's unlisted sum
        if not explain:
            self.p = head.probabilities(x).tolist()
        else:
            _, expl = head.explain(x)
            self.expl = expl
            phi = expl.contributions
            total = phi.sum(axis=1)
            order = np.argsort(-np.abs(phi), axis=1, kind="stable")
            cut = top is not None and top < order.shape[1]
            if cut:
                order = order[:, :top]
            # each row's contributions in its own order: one gather, and only what is listed
            listed = np.take_along_axis(phi, order, axis=1)
            if cut:  # the rest, summed: the explanation stays exact
                self.rest = (total - listed.sum(axis=1)).tolist()
                self.unlisted = phi.shape[1] - order.shape[1]
            self.order, self.phi = order.tolist(), listed.tolist()
            #: the features some row lists (all of them unless cut)
            self.listed = np.unique(order).tolist() if cut else list(range(phi.shape[1]))
            self.sign = np.sign(listed).astype(np.int8).tolist()
            self.base = expl.base_value.tolist()
            # the bias of each horizon differs from the longest one's by its intercept, and
            # each probability is computed from the contributions it is explained by
            b = np.asarray(head.calibration.intercepts)
            self.shift = (b - b[-1]).tolist()
            z = expl.base_value + total
            self.p = expit(z[:, None] + (b - b[-1])[None, :]).tolist()
        self.bands = {"low_below": head.bands.low_below, "high_from": head.bands.high_from}

    def estimate(self, i: int, shown: Sequence[str | None], names, labels) -> dict[str, Any]:
        head, p = self.head, self.p[i]
        out: dict[str, Any] = {
            "question": self.question,
            "outcome": self.outcome,
            "probability": p[-1],
            "risk_category": head.category(p[-1]),
            "risk_bands": self.bands,
            "horizon_days": head.horizon_days,
        }
        if head.key == NEW_PE:
            out["by_horizon"] = [
                {"horizon_days": h, "probability": ph}
                | ({"base_value": self.base[i] + self.shift[j]} if self.expl else {})
                for j, (h, ph) in enumerate(zip(head.horizons, p, strict=True))
            ]
        if self.expl is not None:
            out["explanation"] = {
                "scale": self.expl.scale,
                "base_value": self.base[i],
                "contributions": _contributions(
                    shown, names, labels, self.phi[i], self.sign[i], self.order[i]
                ),
            }
            if self.rest is not None:
                out["explanation"]["rest"] = {
                    "features": self.unlisted,
                    "contribution": self.rest[i],
                }
        return out


def _not_asked(model: PERiskModel, suspected: bool | None) -> dict[str, Any]:
    """``estimates.pe_now`` where it is not estimated, saying why."""
    if model.pe_now is None:
        why = "this model was trained without PE-now outcomes (pe_days), so it cannot say"
    elif suspected is None:
        why = "suspected_pe is not recorded: the PE-now estimate is given only when PE is suspected"
    else:
        why = "PE is not suspected at this assessment (suspected_pe is false)"
    return {
        "question": QUESTIONS[PE_NOW],
        "outcome": OUTCOMES[PE_NOW],
        "probability": None,
        "risk_category": None,
        "horizon_days": 0,
        "not_estimated": why,
    }


def predict_records(
    model: PERiskModel,
    version: str,
    records: Sequence[Any],
    *,
    explain: bool = True,
    scores: bool = True,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """The full answer for each validated ``PatientRecord``, in order.

    ``top`` lists only each explanation's ``top`` largest contributions (by |φ|) and sums
    the others into ``explanation.rest``, so that base_value + Σ listed + rest is still the
    log-odds; None lists every feature."""
    if top is not None and (type(top) is not int or top < 1):
        raise ValueError(f"top={top!r}: a count of contributions is an integer >= 1, or None")
    columns = record_columns(records)
    names = model.feature_names
    x = model.features(columns)
    new = _Dressed(model.new_pe, x, explain, mixed=not timed(model), top=top)
    asked = np.flatnonzero(columns["suspected_pe"] == 1) if model.pe_now is not None else []
    now = _Dressed(model.pe_now, x[asked], explain, top=top) if len(asked) else None
    at_now = {int(r): k for k, r in enumerate(asked)}
    derived = _derived_rows(columns, len(records)) if scores else []
    table = score_table(columns) if scores else []
    ranges = model.info.get("training_ranges", {})
    outside_at: list[list[int]] = [[] for _ in records]  # row → features outside the range
    for i, j in zip(*np.nonzero(_outside_training_range(x, names, ranges)), strict=True):
        outside_at[i].append(int(j))
    block = model_block(model, version)
    if explain:
        specs = [BY_NAME[n] for n in names]
        fields, units, labels = ([getattr(s, a) for s in specs] for a in ("field", "unit", "label"))
        listed = set(new.listed) | (set(now.listed) if now is not None else set())
        shown_rows = _shown(records, fields, units, x, listed)
    out = []
    for i, record in enumerate(records):
        shown = shown_rows[i] if explain else ()
        lab = labels if explain else ()
        estimates = {NEW_PE: new.estimate(i, shown, names, lab)}
        k = at_now.get(i)
        estimates[PE_NOW] = (
            now.estimate(k, shown, names, lab)
            if now is not None and k is not None
            else _not_asked(model, record.suspected_pe)
        )
        question = PE_NOW if k is not None else NEW_PE
        headline = estimates[question]
        answer: dict[str, Any] = {
            "patient_id": record.patient_id,
            "question": question,
            "probability": headline["probability"],
            "risk_category": headline["risk_category"],
            "risk_bands": headline["risk_bands"],
            "horizon_days": headline["horizon_days"],
        }
        if explain:
            answer["explanation"] = headline["explanation"]
        answer["estimates"] = {PE_NOW: estimates[PE_NOW], NEW_PE: estimates[NEW_PE]}
        if scores:
            answer["clinical_scores"] = table[i]
            answer["recommendations"] = recommendations(
                derived[i],
                table[i],
                risk_category=estimates[NEW_PE]["risk_category"],
                suspected_pe=record.suspected_pe,
                anticoagulated=record.anticoagulated,
                brain_metastases=record.brain_metastases,
            )
        answer["warnings"] = _warnings(record, x[i], names, ranges, outside_at[i])
        answer["model"] = block
        out.append(answer)
    return out
