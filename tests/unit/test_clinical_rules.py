"""The clinical review's rules (issue 16), each pinned on both sides of its cut-off with its
source: active cancer per score, the rule-out with unknown items, troponin assays, bleeding
shown beyond the cancer, and what to do when CTPA is contraindicated."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    survivor = {
        "stage": "I",
        "months_since_diagnosis": 36,
        "days_since_surgery": 1000,
        "months_since_treatment": 1000 / th.DAYS_PER_MONTH,  # untreated since the operation
        **UNTREATED,
    }
    for key in CANCER_ITEMS:
        assert cancer_item(key, **survivor) == "not met", key


def test_an_unrecorded_treatment_leaves_the_cancer_item_unknown() -> None:
    for key in CANCER_ITEMS:
        assert cancer_item(key, stage="II", months_since_diagnosis=36) == "unknown", key
        assert cancer_item(key, stage="II", chemotherapy=True) == "met", key


def test_no_treatment_in_the_last_three_months_is_not_no_treatment_in_six() -> None:
    """The treatment fields cover the last 3 months (data contract): durvalumab stopped five
    months ago leaves them all false, so 'treated within 6 months' needs the time since the
    last treatment, or a diagnosis too recent for an older treatment."""
    old = {"stage": "III", "months_since_diagnosis": 20, **UNTREATED}
    assert cancer_item("wells", **old) == "unknown"
    assert cancer_item("wells", **old, months_since_treatment=5) == "met"
    recent = {"stage": "III", "months_since_diagnosis": 2, **UNTREATED}
    assert cancer_item("wells", **recent) == "not met"  # never treated since diagnosis


@pytest.mark.parametrize(
    ("fields", "expected"),
    [  # Wells 2000 [V]: treated within 6 months (182 days)
        ({"months_since_treatment": 5.9}, "met"),
        ({"months_since_treatment": 6.1}, "not met"),
        ({"months_since_treatment": 24, "days_since_surgery": 182}, "met"),
        ({"months_since_treatment": 24, "days_since_surgery": 183}, "met"),  # last: surgery
    ],
)
def test_wells_malignancy_treated_within_six_months(fields: dict, expected: str) -> None:
    if "days_since_surgery" in fields and fields["days_since_surgery"] > 182:
        fields = {**fields, "months_since_treatment": 183 / th.DAYS_PER_MONTH}
        expected = "not met"
    assert cancer_item("wells", stage="II", **UNTREATED, **fields) == expected


def test_wells_counts_stage_iv_as_palliative() -> None:
    assert cancer_item("wells", stage="IV", months_since_diagnosis=40, **UNTREATED) == "met"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [  # Le Gal 2006 [V]: active, or considered cured less than 1 year ago
        ({"months_since_diagnosis": 12, "months_since_treatment": 13}, "met"),
        ({"months_since_diagnosis": 12.1, "months_since_treatment": 13}, "not met"),
        ({"months_since_diagnosis": 30, "months_since_treatment": 11.9}, "met"),
        ({"months_since_diagnosis": 30, "months_since_treatment": 12.1}, "not met"),
        (
            {"months_since_diagnosis": 30, "days_since_surgery": 365, "months_since_treatment": 13},
            "met",
        ),
    ],
)
def test_revised_geneva_active_or_cured_within_a_year(fields: dict, expected: str) -> None:
    assert cancer_item("revised_geneva", stage="III", **UNTREATED, **fields) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [  # Klok 2016 Table 1 [V]: diagnosed ≤6 months, recurrent/progressive, treated ≤6 months
        ({"months_since_diagnosis": 6, "months_since_treatment": 7}, "met"),
        ({"months_since_diagnosis": 6.1, "months_since_treatment": 7}, "not met"),
        ({"months_since_diagnosis": 20, "months_since_treatment": 5.9}, "met"),
        ({"months_since_diagnosis": 20, "months_since_treatment": 6.1}, "not met"),
        ({"months_since_diagnosis": 20, "days_since_surgery": 182}, "met"),
        ({"months_since_diagnosis": 20, "months_since_treatment": 9, "stage": "IV"}, "unknown"),
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

WELLS_KNOWN_NO = {
    "pe_most_likely": False,
    "immobilized": False,
    "recent_surgery_or_trauma": False,
    "prior_vte": False,
}
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
        brain_metastases=rec.brain_metastases,
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


def test_other_surgery_not_recorded_leaves_the_wells_item_unknown() -> None:
    """The record holds thoracic surgery only: any other surgery or trauma in the last 4 weeks
    must be known to be absent before the Wells item (1.5) can be called absent."""
    known = {k: v for k, v in SUSPECTED.items() if k != "recent_surgery_or_trauma"}
    f = flags(**known, hemoptysis=False, dvt_signs=False)  # 2.5 now, up to 4: still ≤4
    assert "d_dimer_rule_out" in f
    f = flags(**{**known, "prior_vte": True}, hemoptysis=False, dvt_signs=False)  # 4, up to 5.5
    assert "rule_out_needs_items" in f
    assert "immobilisation" in f["rule_out_needs_items"]["text"]


def test_the_rule_out_at_exactly_four_and_at_four_and_a_half() -> None:
    """Two-tier Wells, ≤4 unlikely (ERR review table [V]): known 2.5 with the unknown
    immobilisation/surgery item (1.5) reaches 4 and the rule-out holds; known 3 (a survivor
    without the malignancy item: heart rate 1.5 + prior VTE 1.5) reaches 4.5 and it does not."""
    base = {**SUSPECTED, "hemoptysis": False, "dvt_signs": False, "immobilized": None}
    base["recent_surgery_or_trauma"] = None
    at_four = flags(**base)  # heart rate 1.5 + malignancy 1 = 2.5, up to 4
    assert "d_dimer_rule_out" in at_four
    survivor = {**base, **UNTREATED, "chemotherapy": False, "stage": "II"}
    survivor |= {"months_since_diagnosis": 40, "months_since_treatment": 30, "prior_vte": True}
    at_four_and_a_half = flags(**survivor)  # heart rate 1.5 + prior VTE 1.5 = 3, up to 4.5
    assert "rule_out_needs_items" in at_four_and_a_half


def test_a_raised_d_dimer_means_imaging_and_no_pathway_flag_contradicts_another() -> None:
    """One pathway (Wells two-tier + age-adjusted D-dimer): never an exclusion beside an
    instruction to image, whatever the record."""
    raised = flags(**{**SUSPECTED, "d_dimer": 2.0}, hemoptysis=False, dvt_signs=False)
    assert "image_d_dimer_raised" in raised or "prioritise_ctpa" in raised
    age70 = {**SUSPECTED, "age": 70, "d_dimer": 0.6, "hemoptysis": False, "dvt_signs": False}
    f = flags(**age70)  # 0.6 is below 70's cut-off 0.7: excluded, and nothing says image
    assert "d_dimer_rule_out" in f and "prioritise_ctpa" not in f
    unknown_d_dimer = {k: v for k, v in SUSPECTED.items() if k != "d_dimer"}
    assert "measure_d_dimer" in flags(**unknown_d_dimer, hemoptysis=False, dvt_signs=False)


PATHWAY = {
    "d_dimer_rule_out",
    "rule_out_needs_items",
    "pe_likely_image",
    "measure_d_dimer",
    "image_d_dimer_raised",
    "prioritise_ctpa",
}


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "age": st.integers(18, 95),
            "heart_rate": st.one_of(st.none(), st.integers(50, 150)),
            "d_dimer": st.one_of(st.none(), st.floats(0.1, 5.0)),
            **{
                k: st.sampled_from([True, False, None])
                for k in (
                    "dvt_signs",
                    "pe_most_likely",
                    "immobilized",
                    "recent_surgery_or_trauma",
                    "prior_vte",
                    "hemoptysis",
                    "chemotherapy",
                )
            },
        }
    )
)
def test_exactly_one_pathway_flag_for_a_suspected_pe(raw: dict) -> None:
    f = flags(suspected_pe=True, **{k: v for k, v in raw.items() if v is not None})
    assert len(PATHWAY & set(f)) == 1, sorted(f)


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


@pytest.mark.parametrize(
    ("fields", "flagged"),
    [
        ({"age": 64, "sex": "male", "systolic_bp": 139}, False),  # age 1.5 < 2
        ({"age": 64, "sex": "male", "systolic_bp": 140}, True),  # + hypertension 1 = 2.5 ≥ 2
    ],
)
def test_bleeding_flag_at_the_threshold(fields: dict, flagged: bool) -> None:
    f = flags(suspected_pe=True, chemotherapy=True, **fields)
    assert ("bleeding_risk_factors" in f) is flagged


def test_bleeding_flag_only_for_factors_beyond_the_cancer() -> None:
    """VTE-BLEED ≥2 is 'high' for any active cancer (Klok 2016): the flag counts the other items."""
    cancer_and_age = flags(age=64, suspected_pe=True, chemotherapy=True)  # 2 + 1.5
    assert "bleeding_risk_factors" not in cancer_and_age
    anaemic = flags(age=64, sex="female", hemoglobin=115, suspected_pe=True, chemotherapy=True)
    flag = anaemic["bleeding_risk_factors"]  # 1.5 + 1.5 = 3 without the cancer item
    assert flag["severity"] == "info" and flag["kind"] == "bleeding"
    assert "stable anticoagulation" in flag["text"]


def test_thresholds_are_declared_once_with_a_source() -> None:
    """Each shared cut-off has a source, and the modules that read it write no copy of it."""
    import ast
    from pathlib import Path

    cuts = [v for v in vars(th).values() if isinstance(v, th.Cut)]
    assert len(cuts) > 20 and all(c.source.strip() for c in cuts)
    shared = {350, 1.44, 53.1, 600, 88.4, 182, 365, 0.089, 150}  # distinctive values only
    root = Path(__file__).resolve().parents[2]
    readers = [
        "features/spec.py",
        "features/scores.py",
        "features/recommend.py",
        "training/cohort.py",
        "models/artifact.py",
    ]
    rules = ("compare", "threshold", "between", "surgery_within")

    def operands(node: ast.AST) -> list[ast.AST]:  # what a comparison or a rule is given
        if isinstance(node, ast.Compare):
            return [node.left, *node.comparators]
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in rules:
            return list(node.args)
        return []

    for name in readers:
        tree = ast.parse((root / name).read_text())
        copies = [
            (o.lineno, o.value)
            for n in ast.walk(tree)
            for o in operands(n)
            if isinstance(o, ast.Constant) and o.value in shared and not isinstance(o.value, bool)
        ]
        assert copies == [], f"{name} compares with a shared cut-off written again: {copies}"


def test_brain_metastases_flag_thrombolysis_only_when_recorded() -> None:
    """Brain metastases contraindicate systemic thrombolysis (ESC 2019): said when PE is
    suspected and they are recorded; nothing is said when they are unknown or absent."""
    assert "brain_metastases" in flags(**SUSPECTED, brain_metastases=True)
    assert "thrombolysis" in flags(**SUSPECTED, brain_metastases=True)["brain_metastases"]["text"]
    assert "brain_metastases" not in flags(**SUSPECTED)
    assert "brain_metastases" not in flags(**SUSPECTED, brain_metastases=False)
