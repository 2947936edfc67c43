"""Guideline flags from the review: pure functions of one record's derived values and scores.

A clinical rule set, beside the scores it reads: the HTTP API, the batch path, the report
and ``pe-risk scores`` call ``recommendations`` and nothing else. The flags inform, they
do not decide: each says what the guideline in the review suggests for a finding the
record shows, and cites it.

A flag that reads a score with unknown items relies on the score's certainty: a rule-out
holds only when it holds for every completion of the unknown items (the two-tier Wells
category), and otherwise the flag says which items to obtain. The suspected-PE work-up is
one pathway (``_diagnostic``), so that its flags never contradict each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from features import thresholds as th
from features.scores import VTE_BLEED

REVIEW = th.REVIEW
PIOPED_III = (
    "Stein PD et al. Ann Intern Med 2010;152:434 (PIOPED III): MR angiography technically "
    "inadequate in 25 % (11–52 % by centre) [V]"
)
ESC_2019_FIBRINOLYSIS = (
    "Konstantinides SV et al. 2019 ESC Guidelines on acute pulmonary embolism, Eur Heart J "
    "2020;41:543, table of contraindications to fibrinolysis (absolute: central nervous "
    "system neoplasm) [S]"
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
    """The suspected-PE work-up as one pathway, the review's: the two-tier Wells score with
    the age-adjusted D-dimer (D-dimer + Wells → CTPA). Exactly one of its flags applies, so
    that an exclusion never stands beside an instruction to image. YEARS and PERC are shown
    in the scores table with their certainty, not mixed into this pathway (the external
    validation of YEARS missed PEs where the two disagree: clinical.md §1.11)."""
    wells, two, adj = scores["wells"], scores["wells"]["two_tier"], scores["age_adjusted_d_dimer"]
    likely, certain = two["category"] == "PE likely", two["category_certain"]
    cut = adj["d_dimer_cutoff_mg_l_feu"]
    sources = f"Wells two-tier (ERR review table) [V]; ADJUST-PE (Righini 2014) [V]; {REVIEW}"
    unknown = _items(wells["missing"])
    limit = f"{th.WELLS_UNLIKELY_MAX.value:g}"
    out = []
    if likely:
        out.append(
            _flag(
                "pe_likely_image",
                "warning",
                "diagnostic",
                f"PE is likely by Wells (>{limit}): image (CTPA); a D-dimer does not exclude it.",
                sources,
            )
        )
    elif adj["category"] == "D-dimer needed":
        out.append(
            _flag(
                "measure_d_dimer",
                "warning",
                "diagnostic",
                f"PE is unlikely by Wells (≤{limit}): measure D-dimer (age-adjusted cut-off "
                f"{cut:g} mg/L FEU) before excluding PE or imaging."
                if certain
                else f"D-dimer is not recorded and Wells is {wells['points']:g} points, up to "
                f"{wells['max_points']:g} with the items not recorded ({unknown}): obtain "
                "them and a D-dimer.",
                sources,
            )
        )
    elif adj["category"] == "below the age-adjusted cut-off":
        out.append(
            _flag(
                "d_dimer_rule_out",
                "info",
                "diagnostic",
                f"D-dimer is below the age-adjusted cut-off ({cut:g} mg/L FEU) and PE is "
                f"unlikely by Wells (≤{limit}, whatever the unknown items): PE can be excluded "
                "without CTPA.",
                sources,
            )
            if certain
            else _flag(
                "rule_out_needs_items",
                "warning",
                "diagnostic",
                "D-dimer is below the age-adjusted cut-off, but PE cannot be called unlikely "
                f"by Wells: {wells['points']:g} points now, up to {wells['max_points']:g} "
                f"(>{limit}, PE likely) with the items not recorded: {unknown}. Obtain them "
                "before excluding PE this way.",
                sources,
            )
        )
    else:
        above = derived.get("wells_above_2") == 1.0
        out.append(
            _flag(
                "prioritise_ctpa" if above else "image_d_dimer_raised",
                "warning",
                "diagnostic",
                f"Wells score above {th.WELLS_CTPA_ABOVE.value:g} with a D-dimer at or above "
                f"the age-adjusted cut-off ({cut:g} mg/L FEU): prioritise CTPA."
                if above
                else f"D-dimer is at or above the age-adjusted cut-off ({cut:g} mg/L FEU): PE is "
                "not excluded; image (CTPA).",
                sources,
            )
        )
    if derived.get("ctpa_contraindicated") == 1.0:
        out.append(
            _flag(
                "ctpa_contraindicated",
                "warning",
                "diagnostic",
                f"CTPA is contraindicated (contrast allergy or eGFR below "
                f"{th.EGFR_CTPA.value:g}): a ventilation–perfusion scan is the usual "
                "alternative; MR pulmonary angiography only where it is validated locally "
                "(technically inadequate in a quarter of patients in PIOPED III).",
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
    high = VTE_BLEED.bands[-1].lo
    if points < high:
        return []
    return [
        _flag(
            "bleeding_risk_factors",
            "info",
            "bleeding",
            f"Bleeding risk factors beyond the cancer: {_items([i['item'] for i in other])} "
            f"(VTE-BLEED {points:g} points without the cancer item; ≥{high:g} is its high-risk "
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
    brain_metastases: bool | None = None,
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
        if brain_metastases:  # unknown or no: nothing said (an absent field is not a yes)
            out.append(
                _flag(
                    "brain_metastases",
                    "warning",
                    "bleeding",
                    "Brain metastases: an intracranial neoplasm is an absolute "
                    "contraindication to systemic thrombolysis, and intracranial bleeding "
                    "weighs on anticoagulation.",
                    ESC_2019_FIBRINOLYSIS,
                )
            )
    return out
