"""Words shared by every place that shows an answer: the report, the CDS Hooks card and the
FHIR RiskAssessment say a probability, a horizon, a factor and a missing input the same way."""

from __future__ import annotations

from typing import Any

from features.contract import BY_NAME as FIELD
from features.contract import Kind
from features.spec import BY_NAME as SPEC
from features.spec import FEATURES
from serving.answer.predict import KEY_INPUTS

#: main factors a card or a RiskAssessment lists
FACTORS = 5
_FEATURE_LABEL = {f.field: f.label for f in reversed(FEATURES) if f.field is not None}


def label(name: str) -> str:
    """A short plain-words name for a record field (feature label, else its description)."""
    spec = FIELD[name]
    if spec.kind is Kind.CATEGORY or name not in _FEATURE_LABEL:
        if spec.kind is Kind.CATEGORY:
            return name.replace("_", " ").capitalize()
        return spec.description.split(" (")[0].split(";")[0].rstrip(".")
    return _FEATURE_LABEL[name].split(" (")[0]


def feature_label(feature: str) -> str:
    """A category's one-hot features are named by their field ("Histology: adenocarcinoma")."""
    spec = SPEC[feature]
    if spec.field is not None and FIELD[spec.field].kind is Kind.CATEGORY:
        return label(spec.field)
    return spec.label.split(" (")[0]


def percent(p: float | None) -> str:
    """A probability as people read it: 0.1234 → '12.3 %', 0.004 → '0.4 %'."""
    if p is None:
        return "—"
    return f"{100 * p:.1f} %" if p >= 0.001 else "< 0.1 %"


def main_factors(explanation: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """The ``top`` largest non-zero contributions in plain words ("D-dimer: 3.2 mg/L FEU"),
    as the report's waterfall, the FHIR RiskAssessment and the CDS Hooks card show them."""
    shown = [c for c in explanation["contributions"] if c["contribution"] != 0][:top]
    return [
        {
            "text": f"{feature_label(c['feature'])}: {c['value'] or 'not recorded'}",
            "delta": c["contribution"],
            "direction": c["direction"],
        }
        for c in shown
    ]


def contributors_text(answer: dict[str, Any], top: int = FACTORS) -> list[str]:
    """The main factors as short lines: "D-dimer: 3.2 mg/L FEU (raises, +0.84)"."""
    return [
        f"{f['text']} ({f['direction']}, {f['delta']:+.2f})"
        for f in main_factors(answer["explanation"], top)
    ]


def not_recorded(answer: dict[str, Any]) -> list[str]:
    """The key inputs the answer's record lacks (its "not recorded" warnings), in order."""
    return [
        w["field"] for w in answer["warnings"] if w["value"] is None and w["field"] in KEY_INPUTS
    ]
