"""Guideline flags from the review: pure functions of one record's derived values and scores.

A clinical rule set, beside the scores it reads: the HTTP API, the batch path, the report
and ``pe-risk scores`` call ``recommendations`` and nothing else. The flags inform, they
do not decide: each says what the guideline in the review suggests for a finding the
record shows, and cites it.

A flag that reads a score with unknown items relies on the score's certainty: a rule-out
holds only when it holds for every completion of the unknown items (the two-tier Wells
category, YEARS, PERC), and otherwise the flag says which items to obtain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from features import thresholds as th

REVIEW = th.REVIEW
PIOPED_III = (
    "Stein PD et al. Ann Intern Med 2010;152:434 (PIOPED III): MR angiography technically "
    "inadequate in 25 % (11–52 % by centre) [V]"
)
THROMBOPROPHYLAXIS = (
    "Mulder FI et al. Haematologica 2019;104(6); Khorana AA et al. Blood 2008;111:4902"
)


def _flag(code: str, severity: str, kind: str, text: str, source: str) -> dict[str, str]:
    """``kind`` groups the flags for the reader: diagnostic (is there a PE now),
    prognostic (a PE in the coming months), outcome (if PE is confirmed), bleeding."""
    return {"code": code, "severity": severity, "kind": kind, "text": text, "source": source}


def _items(names: list[str]) -> str:
    return "; ".join(n[0].lower() + n[1:] for n in names)


def _diagnostic(
    derived: Mapping[str, float], scores: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The suspected-PE work-up (review; Wells, YEARS, age-adjusted D-dimer, PERC)."""
    out = []
    wells, two = scores["wells"], scores["wells"]["two_tier"]
    adj, years, perc = scores["age_adjusted_d_dimer"], scores["years"], scores["perc"]
    d_dimer_low = adj["category"] == "below the age-adjusted cut-off"
    unlikely = two["category"].startswith("PE unlikely")
    if d_dimer_low and unlikely and two["category_certain"]:
        out.append(
            _flag(
                "d_dimer_rule_out",
                "info",
                "diagnostic",
                "D-dimer is below the age-adjusted cut-off and PE is unlikely by Wells (≤4, "
                "whatever the unknown items): PE can be excluded without CTPA.",
                f"{adj['source']}; {two['source']}; {REVIEW}",
            )
        )
    elif d_dimer_low and unlikely:
        out.append(
            _flag(
                "rule_out_needs_items",
                "warning",
                "diagnostic",
                "D-dimer is below the age-adjusted cut-off, but PE cannot be called unlikely "
                f"by Wells: {wells['points']:g} points now, up to {wells['max_points']:g} "
                f"(>4, PE likely) with the items not recorded: {_items(wells['missing'])}. "
                "Obtain them before excluding PE this way.",
                f"{two['source']}; {adj['source']}",
            )
        )
    if not unlikely:
        out.append(
            _flag(
                "pe_likely_image",
                "warning",
                "diagnostic",
                "PE is likely by Wells (>4): a D-dimer below the cut-off does not exclude it; "
                "image (CTPA).",
                f"{two['source']}; {REVIEW}",
            )
        )
    if years["category"] == "PE excluded":
        cut = years["d_dimer_cutoff_mg_l_feu"]
        which = (
            "with no YEARS item present"
            if cut == th.YEARS_NO_ITEM.value
            else "the cut-off for one or more YEARS items, which holds whatever the items "
            "not recorded"
        )
        out.append(
            _flag(
                "years_rule_out",
                "info",
                "diagnostic",
                f"YEARS: D-dimer below {cut:g} mg/L FEU ({which}): PE excluded without CTPA.",
                years["source"],
            )
        )
    if perc["points"] == 0:
        text = (
            "PERC negative: PE excluded without D-dimer, if the gestalt probability is ≤15 %."
            if perc["category_certain"]
            else "No recorded PERC criterion is present, but PERC cannot exclude PE until "
            f"these are known: {_items(perc['missing'])}."
        )
        out.append(_flag("perc", "info", "diagnostic", text, perc["source"]))
    if derived.get("wells_above_2") == 1.0 and derived.get("d_dimer_elevated") == 1.0:
        out.append(
            _flag(
                "prioritise_ctpa",
                "warning",
                "diagnostic",
                "Wells score above 2 with a raised D-dimer: prioritise CTPA.",
                REVIEW,
            )
        )
    if derived.get("ctpa_contraindicated") == 1.0:
        out.append(
            _flag(
                "ctpa_contraindicated",
                "warning",
                "diagnostic",
                "CTPA is contraindicated (contrast allergy or eGFR below 30): a "
                "ventilation–perfusion scan is the usual alternative; MR pulmonary angiography "
                "only where it is validated locally (technically inadequate in a quarter of "
                "patients in PIOPED III).",
                f"{REVIEW}; {PIOPED_III}",
            )
        )
    return out


def _bleeding(scores: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """Bleeding risk beyond the cancer itself: VTE-BLEED's items other than active cancer
    reaching its high-risk threshold (≥2). Information for weighing anticoagulation."""
    vte = scores.get("vte_bleed")
    if vte is None:
        return []
    other = [i for i in vte["items"] if i["met"] and not i["item"].startswith("Active cancer")]
    points = sum(i["points"] for i in other)
    if points < 2:
        return []
    return [
        _flag(
            "bleeding_risk_factors",
            "info",
            "bleeding",
            f"Bleeding risk factors beyond the cancer: {_items([i['item'] for i in other])} "
            f"(VTE-BLEED {points:g} points without the cancer item; ≥2 is its high-risk "
            "threshold). Weigh them when anticoagulation is considered; the score was "
            "validated during stable anticoagulation.",
            vte["source"],
        )
    ]


def recommendations(
    derived: Mapping[str, float],
    scores: Mapping[str, Mapping[str, Any]],
    *,
    risk_category: str | None,
    suspected_pe: bool | None,
    anticoagulated: bool | None,
) -> list[dict[str, str]]:
    """The flags that apply to one record.

    ``derived`` holds the derived predictors of ``features.spec`` for this record (1.0, 0.0
    or NaN); ``scores`` is ``features.scores.score_table`` for it; ``risk_category`` is the
    model's band (None without a model, e.g. ``pe-risk scores``).
    """
    out = _diagnostic(derived, scores) if suspected_pe else []
    if derived.get("rv_lv_above_1") == 1.0 or derived.get("cardiac_marker_raised") == 1.0:
        out.append(
            _flag(
                "adverse_outcome_risk",
                "critical" if suspected_pe else "warning",
                "outcome",
                "RV/LV ratio above 1 or raised troponin / NT-proBNP: higher risk of an adverse "
                "outcome if PE is confirmed.",
                REVIEW,
            )
        )
    prophylaxis = risk_category == "high" and not suspected_pe and anticoagulated is not True
    if prophylaxis:
        out.append(
            _flag(
                "discuss_thromboprophylaxis",
                "info",
                "prognostic",
                "Estimated risk is in the high band (at or above the 6-month risk of Khorana ≥2, "
                "where trials and guidelines consider thromboprophylaxis): discuss it, weighing "
                "bleeding risk.",
                THROMBOPROPHYLAXIS,
            )
        )
    if prophylaxis or suspected_pe or anticoagulated:
        out += _bleeding(scores)
    return out
