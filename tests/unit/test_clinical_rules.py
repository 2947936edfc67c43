"""The clinical review's rules (issue 16), each pinned on both sides of its cut-off with its
source: active cancer per score, the rule-out with unknown items, troponin assays, bleeding
shown beyond the cancer, and what to do when CTPA is contraindicated."""

from __future__ import annotations

import math

import pytest

from features import thresholds as th
from features.build import derive, record_columns
from features.recommend import recommendations
from features.records import parse_record
from features.scores import score_results
from tests.conftest import base_record

UNTREATED = {
    "chemotherapy": False,
    "egfr_tki": False,
    "anti_angiogenic": False,
    "immunotherapy": False,
    "radiotherapy": False,
}
CANCER_ITEMS = {
    "wells": "Malignancy (on treatment, treated in the last 6 months, or palliative)",
    "revised_geneva": "Active malignancy, or considered cured less than 1 year ago",
    "vte_bleed": "Active cancer (diagnosed ≤6 months, recurrent or progressive, or treated "
    "≤6 months)",
    "spesi": "Cancer (active: diagnosed ≤12 months, under treatment, or metastatic)",
    "riete_bleeding": "Cancer (active: diagnosed ≤12 months, under treatment, or metastatic)",
}


def _record(**fields: object):
    return parse_record(base_record(**fields))


def cancer_item(key: str, **fields: object) -> str:
    """'met', 'not met' or 'unknown' for one score's active-cancer item."""
    r = score_results(record_columns([_record(**fields)]))[key]
    (item,) = [i for i in r["items"] if i["item"] == CANCER_ITEMS[key]]
    return "unknown" if not item["known"] else "met" if item["met"] else "not met"


# --- active cancer is not "always" -------------------------------------------------------------


def test_a_long_term_survivor_scores_zero_on_every_cancer_item() -> None:
    """Issue 16: stage I, diagnosed 36 months ago, operated on 1,000 days ago, untreated since."""
    survivor = {"stage": "I", "months_since_diagnosis": 36, "days_since_surgery": 1000, **UNTREATED}
    for key in CANCER_ITEMS:
        assert cancer_item(key, **survivor) == "not met", key


def test_an_unrecorded_treatment_leaves_the_cancer_item_unknown() -> None:
    for key in CANCER_ITEMS:
        assert cancer_item(key, stage="II", months_since_diagnosis=36) == "unknown", key
        assert cancer_item(key, stage="II", chemotherapy=True) == "met", key


@pytest.mark.parametrize(
    ("days", "expected"),
    [(182, "met"), (183, "not met")],  # Wells 2000 [V]: treated within 6 months
)
def test_wells_malignancy_treated_within_six_months(days: int, expected: str) -> None:
    assert cancer_item("wells", stage="II", days_since_surgery=days, **UNTREATED) == expected


def test_wells_counts_stage_iv_as_palliative() -> None:
    assert cancer_item("wells", stage="IV", months_since_diagnosis=40, **UNTREATED) == "met"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [  # Le Gal 2006 [V]: active, or considered cured less than 1 year ago
        ({"months_since_diagnosis": 12}, "met"),
        ({"months_since_diagnosis": 12.1}, "not met"),
        ({"months_since_diagnosis": 30, "days_since_surgery": 365}, "met"),
        ({"months_since_diagnosis": 30, "days_since_surgery": 366}, "not met"),
    ],
)
def test_revised_geneva_active_or_cured_within_a_year(fields: dict, expected: str) -> None:
    assert cancer_item("revised_geneva", stage="III", **UNTREATED, **fields) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [  # Klok 2016 Table 1 [V]: diagnosed ≤6 months, recurrent/progressive, treated ≤6 months
        ({"months_since_diagnosis": 6}, "met"),
        ({"months_since_diagnosis": 6.1}, "not met"),
        ({"months_since_diagnosis": 20, "days_since_surgery": 182}, "met"),
        ({"months_since_diagnosis": 20, "days_since_surgery": 183}, "not met"),
        ({"months_since_diagnosis": 20, "stage": "IV"}, "unknown"),  # may be progressive
    ],
)
def test_vte_bleed_active_cancer(fields: dict, expected: str) -> None:
    assert cancer_item("vte_bleed", **{"stage": "II", **UNTREATED, **fields}) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"months_since_diagnosis": 12}, "met"),
        ({"months_since_diagnosis": 12.1}, "not met"),
        ({"months_since_diagnosis": 40, "stage": "IV"}, "met"),
    ],
)
def test_spesi_active_cancer(fields: dict, expected: str) -> None:
    assert cancer_item("spesi", **{"stage": "II", **UNTREATED, **fields}) == expected


# --- the rule-out with unknown items -------------------------------------------------------------

WELLS_KNOWN_NO = {"pe_most_likely": False, "immobilized": False, "prior_vte": False}
#: the issue's patient: PE suspected, heart rate 105 (1.5) and on chemotherapy (1), D-dimer
#: below the age-adjusted cut-off; the tests set the items they leave known or unknown
SUSPECTED = {
    "age": 45,
    "suspected_pe": True,
    "heart_rate": 105,
    "chemotherapy": True,
    "d_dimer": 0.3,
    **WELLS_KNOWN_NO,
}


def flags(**fields: object) -> dict[str, dict]:
    rec = _record(**fields)
    cols = record_columns([rec])
    out = recommendations(
        {k: float(v[0]) for k, v in derive(cols).items()},
        score_results(cols),
        risk_category=None,
        suspected_pe=rec.suspected_pe,
        anticoagulated=rec.anticoagulated,
    )
    return {f["code"]: f for f in out}


def test_the_issues_unsafe_rule_out_no_longer_fires() -> None:
    """Suspected PE, heart rate 105, on chemotherapy (2.5 points), DVT signs unknown: Wells
    could be 5.5 (PE likely), so a low D-dimer must not exclude PE; the flag names the item."""
    f = flags(**SUSPECTED, hemoptysis=False)
    assert "d_dimer_rule_out" not in f
    assert "clinical signs of DVT" in f["rule_out_needs_items"]["text"]
    assert f["rule_out_needs_items"]["severity"] == "warning"
    known = flags(**SUSPECTED, hemoptysis=False, dvt_signs=False)
    assert "d_dimer_rule_out" in known and "rule_out_needs_items" not in known


@pytest.mark.parametrize(
    ("unknown", "fires"),
    [
        ({"hemoptysis": None, "dvt_signs": False}, True),  # at most 2.5 + 1 = 3.5 ≤ 4
        ({"hemoptysis": False, "dvt_signs": None}, False),  # could be 2.5 + 3 = 5.5 > 4
    ],
)
def test_rule_out_holds_only_for_every_completion(unknown: dict, fires: bool) -> None:
    f = flags(**SUSPECTED, **unknown)
    assert ("d_dimer_rule_out" in f) is fires
    assert th.WELLS_UNLIKELY_MAX.value == 4  # two-tier ≤4 (ERR review table [V])


def test_pe_likely_by_wells_is_imaged_whatever_the_d_dimer() -> None:
    f = flags(**SUSPECTED, dvt_signs=True, hemoptysis=False)
    assert "pe_likely_image" in f and "d_dimer_rule_out" not in f


def test_years_rule_out_holds_for_unknown_items() -> None:
    """van der Hulle 2017: ≥1 item → <0.5 mg/L; unknown items use that stricter cut-off."""
    assert "years_rule_out" in flags(suspected_pe=True, d_dimer=0.49)
    assert "years_rule_out" not in flags(suspected_pe=True, d_dimer=0.7)
    no_items = {"dvt_signs": False, "hemoptysis": False, "pe_most_likely": False}
    assert "years_rule_out" in flags(suspected_pe=True, d_dimer=0.99, **no_items)
    assert "years_rule_out" not in flags(suspected_pe=True, d_dimer=1.0, **no_items)


def test_perc_never_excludes_pe_while_an_item_is_unknown() -> None:
    f = flags(
        age=45, suspected_pe=True, heart_rate=80, oxygen_saturation=98, dvt_signs=False,
        hemoptysis=False, prior_vte=False,
    )  # fmt: skip
    assert "cannot exclude PE" in f["perc"]["text"] and "exogenous oestrogen" in f["perc"]["text"]


def test_ctpa_contraindicated_offers_a_vq_scan_first() -> None:
    text = flags(suspected_pe=True, contrast_allergy=True)["ctpa_contraindicated"]["text"]
    assert "ventilation–perfusion" in text and "validated locally" in text
    assert "PIOPED III" in flags(suspected_pe=True, egfr_renal=29)["ctpa_contraindicated"]["source"]
    assert "ctpa_contraindicated" not in flags(suspected_pe=True, egfr_renal=30)


# --- troponin assays -------------------------------------------------------------------------


def _cardiac(**fields: object) -> float:
    """Raised cardiac marker, with NT-proBNP normal unless the test sets it."""
    fields = {"nt_probnp": 100, **fields}
    return float(derive(record_columns([_record(**fields)]))["cardiac_marker_raised"][0])


@pytest.mark.parametrize(
    ("fields", "raised"),
    [
        ({"age": 74, "troponin": 14}, 0.0),  # hs-cTnT 99th percentile 14 ng/L
        ({"age": 74, "troponin": 15}, 1.0),
        ({"age": 75, "troponin": 44}, 0.0),  # ≥75 years: ≥45 ng/L [S]
        ({"age": 75, "troponin": 45}, 1.0),
        ({"sex": "female", "troponin_i": 16}, 0.0),  # hs-cTnI: 16 ng/L women
        ({"sex": "female", "troponin_i": 17}, 1.0),
        ({"sex": "male", "troponin_i": 34}, 0.0),  # 34 ng/L men
        ({"sex": "male", "troponin_i": 35}, 1.0),
        ({"nt_probnp": 599}, math.nan),  # no troponin: a normal NT-proBNP leaves it unknown
        ({"nt_probnp": 600}, 1.0),  # ESC 2019 [U]
        ({"troponin": 10, "nt_probnp": None}, math.nan),
    ],
)
def test_troponin_t_and_i_have_their_own_cut_offs(fields: dict, raised: float) -> None:
    value = _cardiac(**fields)
    assert value == raised or (math.isnan(raised) and math.isnan(value))


# --- bleeding: information, beyond the cancer ----------------------------------------------------


def test_bleeding_flag_only_for_factors_beyond_the_cancer() -> None:
    """VTE-BLEED ≥2 is 'high' for any active cancer (Klok 2016): the flag counts the other items."""
    cancer_and_age = flags(age=64, suspected_pe=True, chemotherapy=True)  # 2 + 1.5
    assert "bleeding_risk_factors" not in cancer_and_age
    anaemic = flags(age=64, sex="female", hemoglobin=115, suspected_pe=True, chemotherapy=True)
    flag = anaemic["bleeding_risk_factors"]  # 1.5 + 1.5 = 3 without the cancer item
    assert flag["severity"] == "info" and flag["kind"] == "bleeding"
    assert "stable anticoagulation" in flag["text"]


def test_thresholds_are_declared_once_with_a_source() -> None:
    cuts = [v for v in vars(th).values() if isinstance(v, th.Cut)]
    assert len(cuts) > 15
    for c in cuts:
        assert c.source.strip(), c
