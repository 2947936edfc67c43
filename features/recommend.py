"""Guideline flags from the review: pure functions of one record's derived values and scores.

Each flag cites where it comes from; the HTTP API, the batch path and the report call
``recommendations`` and nothing else. The flags inform, they do not decide: each says
what the guideline in the review suggests for a finding the record shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REVIEW = "review (shared/seed/lung-cancer-pe-review.txt)"


def _flag(code: str, severity: str, text: str, source: str) -> dict[str, str]:
    return {"code": code, "severity": severity, "text": text, "source": source}


def recommendations(
    derived: Mapping[str, float],
    scores: Mapping[str, Mapping[str, Any]],
    *,
    risk_category: str,
    suspected_pe: bool | None,
    anticoagulated: bool | None,
) -> list[dict[str, str]]:
    """The flags that apply to one record.

    ``derived`` holds the derived predictors of ``features.spec`` for this record (1.0, 0.0
    or NaN); ``scores`` is ``features.scores.score_results`` for it.
    """

    def yes(name: str) -> bool:
        return derived.get(name) == 1.0

    out = []
    if suspected_pe:
        adj = scores["age_adjusted_d_dimer"]
        wells_unlikely = scores["wells"]["points"] <= 4 and scores["wells"]["category_certain"]
        if adj["category"] == "below the age-adjusted cut-off" and wells_unlikely:
            out.append(
                _flag(
                    "d_dimer_rule_out",
                    "info",
                    "D-dimer is below the age-adjusted cut-off and PE is unlikely by Wells (≤4): "
                    "PE can be excluded without CTPA.",
                    adj["source"] + "; " + REVIEW,
                )
            )
        if yes("wells_above_2") and yes("d_dimer_elevated"):
            out.append(
                _flag(
                    "prioritise_ctpa",
                    "warning",
                    "Wells score above 2 with a raised D-dimer: prioritise CTPA.",
                    REVIEW,
                )
            )
        if yes("ctpa_contraindicated"):
            out.append(
                _flag(
                    "consider_mr_angiography",
                    "warning",
                    "CTPA is contraindicated (contrast allergy or eGFR below 30): consider MR "
                    "pulmonary angiography.",
                    REVIEW,
                )
            )
    if yes("rv_lv_above_1") or yes("cardiac_marker_raised"):
        out.append(
            _flag(
                "adverse_outcome_risk",
                "critical" if suspected_pe else "warning",
                "RV/LV ratio above 1 or raised troponin / NT-proBNP: higher risk of an adverse "
                "outcome if PE is confirmed.",
                REVIEW,
            )
        )
    bleed = [scores[k] for k in ("vte_bleed", "riete_bleeding") if k in scores]
    if any(s["category"].startswith("high") for s in bleed):
        out.append(
            _flag(
                "bleeding_risk",
                "warning",
                "High bleeding risk by "
                + " / ".join(s["title"] for s in bleed if s["category"].startswith("high"))
                + ": weigh it before starting anticoagulation.",
                "; ".join(s["source"] for s in bleed),
            )
        )
    if risk_category == "high" and not suspected_pe and anticoagulated is not True:
        out.append(
            _flag(
                "discuss_thromboprophylaxis",
                "info",
                "Estimated risk is in the high band (at or above the 6-month risk of Khorana ≥2, "
                "where trials and guidelines consider thromboprophylaxis): discuss it, weighing "
                "bleeding risk.",
                "Mulder FI et al. Haematologica 2019;104(6); Khorana AA et al. Blood 2008;111:4902",
            )
        )
    return out
