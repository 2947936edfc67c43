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
from features.scores import score_results
from features.spec import BY_NAME, FEATURES
from models.artifact import PERiskModel
from serving.recommend import recommendations

#: inputs whose absence the review says weakens the estimate (a warning, never a refusal)
KEY_INPUTS = ("d_dimer", "platelets", "hemoglobin", "leukocytes", "bmi")
_DERIVED = tuple(f for f in FEATURES if not f.in_model)


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


def _shown(record: Any, feature: str, value: float) -> str | None:
    spec = BY_NAME[feature]
    if spec.field is not None:
        given = record.given(spec.field)
        if given is not None:
            return given
    if np.isnan(value):
        return None
    return f"{value:g} {spec.unit}".strip()


def _contributions(record: Any, names: Sequence[str], x: np.ndarray, phi: np.ndarray) -> list[dict]:
    order = np.argsort(-np.abs(phi), kind="stable")
    out = []
    for j in order:
        c = float(phi[j])
        out.append(
            {
                "feature": names[j],
                "label": BY_NAME[names[j]].label,
                "value": _shown(record, names[j], float(x[j])),
                "contribution": c,
                "direction": "raises" if c > 0 else "lowers" if c < 0 else "none",
            }
        )
    return out


def _warnings(record: Any, x: np.ndarray, names: Sequence[str], ranges: dict) -> list[dict]:
    out = [{"field": w.field, "value": w.value, "message": w.message} for w in record.warnings]
    for name in KEY_INPUTS:
        if getattr(record, name) is None:
            out.append(
                {
                    "field": name,
                    "value": None,
                    "message": f"{name} was not given: the estimate is less certain; "
                    "add it if it was measured",
                }
            )
    for j, name in enumerate(names):
        lo_hi = ranges.get(name)
        v = float(x[j])
        if lo_hi and not np.isnan(v) and not (lo_hi[0] <= v <= lo_hi[1]):
            out.append(
                {
                    "field": BY_NAME[name].field or name,
                    "value": v,
                    "message": f"{name}={v:g} is outside the training range "
                    f"[{lo_hi[0]:g}, {lo_hi[1]:g}]: the estimate is an extrapolation",
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
    ranges = model.info.get("training_ranges", {})
    block = model_block(model, version)
    out = []
    for i, record in enumerate(records):
        prob = float(p[i])
        category = model.category(prob)
        answer: dict[str, Any] = {
            "patient_id": record.patient_id,
            "probability": prob,
            "risk_category": category,
            "risk_bands": {"low_below": model.bands.low_below, "high_from": model.bands.high_from},
            "horizon_days": model.horizon_days,
        }
        if expl is not None:
            answer["explanation"] = {
                "scale": expl.scale,
                "base_value": float(expl.base_value[i]),
                "contributions": _contributions(record, names, x[i], expl.contributions[i]),
            }
        if scores:
            results = score_results({k: v[i : i + 1] for k, v in columns.items()}, 0)
            answer["clinical_scores"] = results
            answer["recommendations"] = recommendations(
                {k: float(v[i]) for k, v in derived.items()},
                results,
                risk_category=category,
                suspected_pe=record.suspected_pe,
                anticoagulated=record.anticoagulated,
            )
        answer["warnings"] = _warnings(record, x[i], names, ranges)
        answer["model"] = block
        out.append(answer)
    return out
