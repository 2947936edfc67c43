"""Validated records → the response the design promises (design.md, "Prediction response").

One function builds every answer, so ``/predict``, ``/predict_batch`` and the report say
the same thing: the batch is vectorised (one booster call and one contributions call),
then each row is dressed with its explanation, scores, flags and warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from features.build import derive, record_columns
from features.contract import FIELDS, Kind
from features.recommend import recommendations
from features.records import PatientRecord
from features.scores import score_table
from features.spec import BY_NAME, FEATURES
from models.artifact import PERiskModel

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


def model_block(model: PERiskModel, version: str) -> dict[str, Any]:
    info = model.info
    synthetic = bool(info.get("synthetic"))
    return {
        "name": info.get("model_name", "pe-risk"),
        "version": version,
        "trained_on": info.get("trained_on", "unknown"),
        "synthetic_data": synthetic,
        "trained_at": info.get("trained_at"),
        "calibration": model.calibration.method,
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
    """All features, largest |contribution| first (``order`` from one argsort per batch);
    ``shown`` is each feature's value as the client gave it (see ``_shown``)."""
    return [
        {
            "feature": names[j],
            "label": labels[j],
            "value": shown[j],
            "contribution": phi[j],
            "direction": _DIRECTION[sign[j]],
        }
        for j in order
    ]


def _shown(
    records: Sequence[Any], fields: Sequence[str | None], units: Sequence[str], x: np.ndarray
) -> list[tuple[str | None, ...]]:
    """Each row's feature values as the client gave them (with their unit), else as derived;
    built column by column, then one tuple per row."""
    cols = PatientRecord.given_columns(records, fields)
    known = ~np.isnan(x)
    for j, col in enumerate(cols):
        if None in col and known[:, j].any():  # not given: the derived value, if there is one
            unit = f" {units[j]}" if units[j] else ""
            cols[j] = [
                g if g is not None else None if v != v else f"{v:g}{unit}"
                for g, v in zip(col, x[:, j].tolist(), strict=True)
            ]
    return list(zip(*cols, strict=True))


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


def predict_records(
    model: PERiskModel,
    version: str,
    records: Sequence[Any],
    *,
    explain: bool = True,
    scores: bool = True,
) -> list[dict[str, Any]]:
    """The full answer for each validated ``PatientRecord``, in order."""
    columns = record_columns(records)
    names = model.feature_names
    x = model.features(columns)
    p, expl = model.explain(x) if explain else (model.probability(x), None)
    derived = derive(columns, _DERIVED) if scores else {}
    table = score_table(columns) if scores else []
    ranges = model.info.get("training_ranges", {})
    outside_at: list[list[int]] = [[] for _ in records]  # row → features outside the range
    for i, j in zip(*np.nonzero(_outside_training_range(x, names, ranges)), strict=True):
        outside_at[i].append(int(j))
    block = model_block(model, version)
    bands = {"low_below": model.bands.low_below, "high_from": model.bands.high_from}
    if expl is not None:  # lists, not arrays, in the per-row loop: float(a[i, j]) is slow
        order = np.argsort(-np.abs(expl.contributions), axis=1, kind="stable").tolist()
        phi, base = expl.contributions.tolist(), expl.base_value.tolist()
        sign = np.sign(expl.contributions).astype(np.int8).tolist()
        specs = [BY_NAME[n] for n in names]
        fields, units, labels = ([getattr(s, a) for s in specs] for a in ("field", "unit", "label"))
        shown_rows = _shown(records, fields, units, x)
    out = []
    for i, (record, prob) in enumerate(zip(records, p.tolist(), strict=True)):
        category = model.category(prob)
        answer: dict[str, Any] = {
            "patient_id": record.patient_id,
            "probability": prob,
            "risk_category": category,
            "risk_bands": bands,
            "horizon_days": model.horizon_days,
        }
        if expl is not None:
            shown = shown_rows[i]
            answer["explanation"] = {
                "scale": expl.scale,
                "base_value": base[i],
                "contributions": _contributions(shown, names, labels, phi[i], sign[i], order[i]),
            }
        if scores:
            answer["clinical_scores"] = table[i]
            answer["recommendations"] = recommendations(
                {k: float(v[i]) for k, v in derived.items()},
                table[i],
                risk_category=category,
                suspected_pe=record.suspected_pe,
                anticoagulated=record.anticoagulated,
                brain_metastases=record.brain_metastases,
            )
        answer["warnings"] = _warnings(record, x[i], names, ranges, outside_at[i])
        answer["model"] = block
        out.append(answer)
    return out
