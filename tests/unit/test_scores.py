"""Clinical scores: every cut-off on both sides, published worked vignettes, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.build import record_columns
from features.contract import FIELDS, Kind
from features.records import parse_record
from features.scores import ADDITIVE, score_points, score_results
from tests.conftest import base_record

KEYS = {
    "khorana",
    "vienna_cats",
    "compass_cat",
    "onkotev",
    "wells",
    "revised_geneva",
    "years",
    "age_adjusted_d_dimer",
    "perc",
    "spesi",
    "vte_bleed",
    "riete_bleeding",
    "protecht",
    "conko",
}


#: a patient on chemotherapy: every score's active-cancer item is met, so the tests of the
#: other items read the published totals (the active-cancer rules are tested below)
ON_TREATMENT = {"chemotherapy": True}


def scores(**fields: object) -> dict[str, dict]:
    return score_results(record_columns([parse_record(base_record(**{**ON_TREATMENT, **fields}))]))


def pts(key: str, **fields: object) -> float:
    return scores(**fields)[key]["points"]


def test_every_service_key_is_present_with_points_category_and_missing() -> None:
    out = scores()
    assert set(out) == KEYS
    for key, r in out.items():
        assert {"points", "category", "published_risk", "missing", "applicable", "source"} <= set(
            r
        ), key


# --- Khorana (Khorana 2008): lung = 1; platelets ≥350; Hb <100 or ESA; WBC >11; BMI ≥35 -------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 1),
        ({"platelets": 349}, 1),
        ({"platelets": 350}, 2),
        ({"leukocytes": 11.0}, 1),
        ({"leukocytes": 11.1}, 2),
        ({"bmi": 34.9}, 1),
        ({"bmi": 35}, 2),
        ({"hemoglobin": 100}, 1),
        ({"hemoglobin": 99}, 2),
        ({"esa_use": True, "hemoglobin": 120}, 2),
        ({"platelets": 400, "leukocytes": 12, "bmi": 36, "hemoglobin": 90}, 5),
    ],
)
def test_khorana_cutoffs(fields: dict, expected: int) -> None:
    assert pts("khorana", **fields) == expected


def test_khorana_categories_and_published_risk() -> None:
    assert scores()["khorana"]["category"] == "intermediate"
    r = scores(platelets=400, leukocytes=12)["khorana"]
    assert (r["points"], r["category"], r["published_risk"]) == (3, "high", 0.11)


def test_missing_items_are_listed_and_bound_the_score() -> None:
    r = scores()["khorana"]
    assert r["points"] == 1 and r["max_points"] == 5
    assert "Platelets ≥350 ×10⁹/L" in r["missing"] and not r["complete"]
    full = scores(platelets=200, hemoglobin=130, esa_use=False, leukocytes=7, bmi=24)["khorana"]
    assert full["missing"] == [] and full["complete"] and full["max_points"] == 1


def test_category_certain_when_missing_items_cannot_change_it() -> None:
    r = scores(platelets=400, leukocytes=12, hemoglobin=90)["khorana"]
    assert r["category"] == "high" and r["category_certain"] and not r["complete"]


# --- Vienna CATS (Ay 2010): Khorana + D-dimer ≥1.44 + sP-selectin ≥53.1 ---------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"d_dimer": 1.43}, 1),
        ({"d_dimer": 1.44}, 2),
        ({"soluble_p_selectin": 53.0}, 1),
        ({"soluble_p_selectin": 53.1}, 2),
        ({"d_dimer": {"value": 720, "unit": "ng/mL{DDU}"}}, 2),  # 1.44 mg/L FEU
    ],
)
def test_vienna_cats_cutoffs(fields: dict, expected: int) -> None:
    assert pts("vienna_cats", **fields) == expected


def test_vienna_cats_per_point_risk() -> None:
    r = scores(d_dimer=2.0, soluble_p_selectin=60, platelets=400, leukocytes=12)["vienna_cats"]
    assert (r["points"], r["published_risk"], r["category"]) == (5, 0.35, "≥5")
    assert r["horizon_days"] == 182


# --- Wells (Wells 2000) ----------------------------------------------------------------------


@pytest.mark.parametrize(("hr", "expected"), [(100, 1), (101, 2.5)])
def test_wells_heart_rate(hr: int, expected: float) -> None:
    assert pts("wells", heart_rate=hr) == expected


@pytest.mark.parametrize(("days", "expected"), [(28, 2.5), (29, 1)])
def test_wells_surgery_four_weeks(days: int, expected: float) -> None:
    assert pts("wells", days_since_surgery=days) == expected


def test_wells_worked_vignette_and_tiers() -> None:
    # DVT signs 3 + HR 110 1.5 + malignancy 1 = 5.5: moderate (2–6), PE likely (>4)
    r = scores(suspected_pe=True, dvt_signs=True, heart_rate=110)["wells"]
    assert r["points"] == 5.5 and r["category"] == "moderate"
    assert r["two_tier"]["category"] == "PE likely" and r["applicable"]
    low = scores(
        suspected_pe=True,
        heart_rate=80,
        dvt_signs=False,
        pe_most_likely=False,
        immobilized=False,
        prior_vte=False,
        hemoptysis=False,
    )["wells"]
    assert (
        low["points"] == 1
        and low["category"] == "low"
        and low["two_tier"]["category"] == "PE unlikely"
    )
    high = scores(dvt_signs=True, pe_most_likely=True, heart_rate=120)["wells"]
    assert high["points"] == 8.5 and high["category"] == "high"
    assert (
        pts("wells", dvt_signs=True) == 4
        and scores(dvt_signs=True)["wells"]["two_tier"]["category"] == "PE unlikely"
    )


def test_diagnostic_rules_apply_only_when_pe_is_suspected() -> None:
    for flag, applicable in ((True, True), (False, False), (None, False)):
        out = scores(suspected_pe=flag)
        for key in ("wells", "revised_geneva", "years", "age_adjusted_d_dimer", "perc"):
            assert out[key]["applicable"] is applicable, key
        assert out["khorana"]["applicable"]


# --- Revised Geneva (Le Gal 2006) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"heart_rate": 74}, 2),
        ({"heart_rate": 75}, 5),
        ({"heart_rate": 94}, 5),
        ({"heart_rate": 95}, 7),
        ({"age": 65}, 2),
        ({"age": 66}, 3),
        ({"days_since_surgery": 30}, 4),
        ({"days_since_surgery": 31}, 2),
    ],
)
def test_revised_geneva_cutoffs(fields: dict, expected: int) -> None:
    assert pts("revised_geneva", **fields) == expected


def test_revised_geneva_worked_vignette() -> None:
    # age 70 (1) + prior DVT (3) + malignancy (2) + haemoptysis (2) + HR 100 (5) = 13: high
    r = scores(age=70, prior_vte=True, hemoptysis=True, heart_rate=100)["revised_geneva"]
    assert r["points"] == 13 and r["category"] == "high" and r["published_risk"] == 0.74


# --- YEARS and age-adjusted D-dimer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "category"),
    [
        ({"d_dimer": 0.99}, "PE excluded"),
        ({"d_dimer": 1.0}, "CTPA indicated"),
        ({"d_dimer": 0.49, "hemoptysis": True}, "PE excluded"),
        ({"d_dimer": 0.5, "hemoptysis": True}, "CTPA indicated"),
        ({"d_dimer": 0.7, "hemoptysis": True}, "CTPA indicated"),
        ({}, "D-dimer needed"),
    ],
)
def test_years_thresholds_in_feu(fields: dict, category: str) -> None:
    base = {"dvt_signs": False, "hemoptysis": False, "pe_most_likely": False}
    assert scores(suspected_pe=True, **{**base, **fields})["years"]["category"] == category


def test_years_with_unknown_items_uses_the_stricter_threshold() -> None:
    r = scores(suspected_pe=True, d_dimer=0.7)["years"]
    assert r["category"] == "CTPA indicated" and r["d_dimer_cutoff_mg_l_feu"] == 0.5


@pytest.mark.parametrize(
    ("age", "dd", "category", "cutoff"),
    [
        (50, 0.49, "below the age-adjusted cut-off", 0.5),
        (50, 0.5, "above the age-adjusted cut-off", 0.5),
        (75, 0.74, "below the age-adjusted cut-off", 0.75),
        (75, 0.75, "above the age-adjusted cut-off", 0.75),
        (82, 0.81, "below the age-adjusted cut-off", 0.82),
    ],
)
def test_age_adjusted_d_dimer(age: int, dd: float, category: str, cutoff: float) -> None:
    r = scores(age=age, d_dimer=dd)["age_adjusted_d_dimer"]
    assert r["category"] == category and r["d_dimer_cutoff_mg_l_feu"] == cutoff


# --- PERC, sPESI, bleeding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"age": 49, "heart_rate": 99}, 0),
        ({"age": 50, "heart_rate": 99}, 1),
        ({"age": 49, "heart_rate": 100}, 1),
        ({"age": 49, "oxygen_saturation": 95}, 0),
        ({"age": 49, "oxygen_saturation": 94}, 1),
    ],
)
def test_perc_criteria(fields: dict, expected: int) -> None:
    assert pts("perc", **fields) == expected


def test_perc_cannot_be_certain_without_oestrogen() -> None:
    r = scores(
        age=45,
        heart_rate=80,
        oxygen_saturation=98,
        dvt_signs=False,
        hemoptysis=False,
        prior_vte=False,
        recent_surgery_or_trauma=False,
    )["perc"]
    assert r["points"] == 0 and r["category"] == "PERC negative"
    assert r["missing"] == ["Exogenous oestrogen"] and not r["category_certain"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"heart_rate": 109}, 1),
        ({"heart_rate": 110}, 2),
        ({"age": 80}, 1),
        ({"age": 81}, 2),
        ({"systolic_bp": 100}, 1),
        ({"systolic_bp": 99}, 2),
        ({"oxygen_saturation": 90}, 1),
        ({"oxygen_saturation": 89}, 2),
        ({"copd": True}, 2),
    ],
)
def test_spesi(fields: dict, expected: int) -> None:
    r = scores(**fields)["spesi"]
    assert r["points"] == expected and r["category"] == "high"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"age": 59}, 2),
        ({"age": 60}, 3.5),
        ({"sex": "male", "systolic_bp": 139}, 3.5),
        ({"sex": "male", "systolic_bp": 140}, 4.5),
        ({"sex": "female", "systolic_bp": 160}, 3.5),
        ({"sex": "male", "hemoglobin": 129}, 5),
        ({"sex": "male", "hemoglobin": 130}, 3.5),
        ({"sex": "female", "hemoglobin": 119}, 5),
        ({"sex": "female", "hemoglobin": 120}, 3.5),
        # Cockcroft–Gault, man of 64, 70 kg: (140 − 64) × 70 / (72 × Scr) < 60 ⇔ Scr > 1.2315
        # mg/dL (108.9 µmol/L); eGFR per 1.73 m² is not the item (Klok 2016, Table 1)
        ({"sex": "male", "body_weight": 70, "creatinine": 109}, 5),
        ({"sex": "male", "body_weight": 70, "creatinine": 108}, 3.5),
        ({"sex": "female", "body_weight": 70, "creatinine": 93}, 5),  # × 0.85: 59.9 mL/min
        ({"sex": "female", "body_weight": 70, "creatinine": 92}, 3.5),  # 60.6 mL/min
        ({"egfr_renal": 40}, 3.5),
    ],
)
def test_vte_bleed(fields: dict, expected: float) -> None:
    fields = {"age": 64, **fields}
    r = scores(**fields)["vte_bleed"]
    assert r["points"] == expected and r["category"] == "high"


def test_creatinine_clearance_is_cockcroft_gault() -> None:
    """Cockcroft DW, Gault MH, Nephron 1976: a man of 60, 72 kg, creatinine 1.0 mg/dL → 80."""
    from features.scores import creatinine_clearance

    c = record_columns(
        [parse_record(base_record(age=60, sex="male", body_weight=72, creatinine=88.4))]
    )
    assert creatinine_clearance(c)[0] == pytest.approx(80.0)
    c = record_columns([parse_record(base_record(age=60, sex="female", body_weight=72))])
    assert creatinine_clearance(c)[0] != creatinine_clearance(c)[0]  # NaN: creatinine unknown


def test_bleeding_scores_apply_on_anticoagulation() -> None:
    for flag, applicable in ((True, True), (False, False), (None, False)):
        out = scores(anticoagulated=flag)
        assert out["vte_bleed"]["applicable"] is applicable
        assert out["riete_bleeding"]["applicable"] is applicable


@pytest.mark.parametrize(
    ("fields", "expected", "category"),
    [
        ({"age": 75}, 1, "intermediate"),
        ({"age": 76}, 2, "intermediate"),
        ({"creatinine": 106}, 1, "intermediate"),
        ({"creatinine": {"value": 1.3, "unit": "mg/dL"}}, 2.5, "intermediate"),
        ({"age": 80, "creatinine": 150, "hemoglobin": 100}, 5, "high"),
    ],
)
def test_riete(fields: dict, expected: float, category: str) -> None:
    r = scores(**fields)["riete_bleeding"]
    assert (r["points"], r["category"]) == (expected, category)


# --- COMPASS-CAT, ONKOTEV, PROTECHT, CONKO ------------------------------------------------------


def test_compass_cat_items_the_record_has() -> None:
    r = scores(months_since_diagnosis=6, central_venous_catheter=True, stage="IV", platelets=350)[
        "compass_cat"
    ]
    assert r["points"] == 4 + 3 + 2 + 2 and r["category"] == "high"
    assert "Anthracycline or anti-hormonal therapy" in r["missing"]
    assert pts("compass_cat", months_since_diagnosis=6.5, stage="II") == 0


def test_onkotev() -> None:
    r = scores(stage="IV", vascular_compression=True, prior_vte=True, platelets=400, leukocytes=12)[
        "onkotev"
    ]
    assert r["points"] == 4 and r["category"] == ">2"
    r2 = scores(
        stage="III",
        platelets=200,
        leukocytes=7,
        hemoglobin=130,
        esa_use=False,
        bmi=25,
        vascular_compression=False,
        prior_vte=False,
    )["onkotev"]
    assert r2["points"] == 0 and r2["published_risk"] == 0.037 and r2["complete"]
    assert r2["horizon_days"] == 365  # 12-month cumulative incidence, not 6-month


def test_protecht_and_conko() -> None:
    assert pts("protecht", platinum_chemotherapy=True, gemcitabine=True) == 3
    assert pts("conko", ecog=1, bmi=40) == 1 and pts("conko", ecog=2) == 2


# --- properties ----------------------------------------------------------------------------------


def _field_strategy(spec):
    if spec.kind is Kind.BOOLEAN:
        return st.sampled_from([True, False, None])
    if spec.kind is Kind.CATEGORY:
        return (
            st.sampled_from(spec.choices)
            if spec.required
            else st.sampled_from([*spec.choices, None])
        )
    if spec.kind is Kind.INTEGER:
        lo, hi = spec.hard
        return st.one_of(st.none(), st.integers(int(lo), int(hi)))
    if spec.kind in (Kind.NUMBER, Kind.LAB):
        lo, hi = spec.hard
        s = st.floats(lo, hi, allow_nan=False)
        return s if spec.required else st.one_of(st.none(), s)
    return st.none()


records = st.fixed_dictionaries({f.name: _field_strategy(f) for f in FIELDS})


@settings(max_examples=150, deadline=None)
@given(records)
def test_score_bounds(raw: dict) -> None:
    cols = record_columns([parse_record(raw)])
    out = score_results(cols)
    for score in ADDITIVE:
        r = out[score.key]
        ceiling = sum(i.points for i in score.items)
        assert 0 <= r["points"] <= r["max_points"] <= ceiling
        if r["complete"]:
            assert r["points"] == r["max_points"] and r["category_certain"]
    assert out["khorana"]["points"] >= 1  # the lung site item
    two = out["wells"]["two_tier"]
    if two["category_certain"]:
        assert (out["wells"]["points"] <= 4) == (out["wells"]["max_points"] <= 4)


def test_vectorised_points_match_the_per_record_results() -> None:
    raws = [
        base_record(platelets=p, leukocytes=w, heart_rate=h, d_dimer=d)
        for p, w, h, d in [(349, 11.0, 94, 1.43), (350, 11.1, 95, 1.44), (500, 3, 120, 10)]
    ]
    cols = record_columns([parse_record(r) for r in raws])
    batch = score_points(cols)
    for row, raw in enumerate(raws):
        single = score_results(record_columns([parse_record(raw)]))
        for key, values in batch.items():
            assert values[row] == single[key]["points"]


def _cohort_with_unknowns(seed: int) -> dict:
    """400 synthetic rows as canonical columns, with a further third of every field
    (text fields included) removed at random on top of the generator's own unknowns."""
    import numpy as np

    from features.table import validate_table
    from training.cohort import generate

    columns = dict(validate_table(generate(400, seed).frame).columns)
    rng = np.random.default_rng(seed)
    for name, values in columns.items():
        drop = rng.random(len(values)) < 0.33
        if values.dtype == object:
            columns[name] = np.where(drop, None, values)
        elif values.dtype.kind == "f":
            columns[name] = np.where(drop, np.nan, values)
    return columns


def test_one_record_scores_as_it_does_in_a_batch() -> None:
    """The one-record path (``one_record``: Python scalars through the same item tests,
    issue 22) gives every score's points, maximum points and items exactly as the batch
    path does, row by row, on a cohort with every kind of unknown: the generator's own,
    and a further third of every field removed at random (text fields included)."""
    import numpy as np

    from features.build import take
    from features.scores import one_record

    columns = _cohort_with_unknowns(5)
    for score in ADDITIVE:
        batch = score.evaluate(columns)
        for i in range(len(columns["age"])):
            one = score.evaluate(one_record(take(columns, np.array([i]))))
            assert type(one.points) is float and type(one.max_points) is float
            assert one.points == batch.points[i] and one.max_points == batch.max_points[i]
            for name in batch.positive:
                assert type(one.positive[name]) is bool and type(one.missing[name]) is bool
                assert one.positive[name] == batch.positive[name][i]
                assert one.missing[name] == batch.missing[name][i]


def test_derived_predictors_of_one_record_as_in_a_batch() -> None:
    """The review's derived predictors (``in_model=False``: what the flags read) on one
    record's Python scalars equal the batch arrays row by row, unknowns included (NaN
    where the batch has NaN), on the cohort with a third of every field removed."""
    import numpy as np

    from features.build import take
    from features.either import one_record
    from features.spec import FEATURES

    columns = _cohort_with_unknowns(6)
    derived = [f for f in FEATURES if not f.in_model]
    assert len(derived) >= 10
    for f in derived:
        batch = f.derive(columns)
        assert batch.dtype == np.float64
        for i in range(len(batch)):
            one = f.derive(one_record(take(columns, np.array([i]))))
            assert isinstance(one, float), (f.name, one)
            assert one == batch[i] or (one != one and batch[i] != batch[i]), (f.name, i)
