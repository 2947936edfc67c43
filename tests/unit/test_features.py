"""The feature specification and the derived predictors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import derive, feature_frame, feature_matrix, frame_columns, record_columns
from features.records import parse_record
from features.spec import FEATURES, MODEL_FEATURE_NAMES, MONOTONE_CONSTRAINTS, spec_table
from features.table import validate_table
from tests.conftest import base_record


def feats(**fields: object) -> dict[str, float]:
    cols = record_columns([parse_record(base_record(**fields))])
    return {k: float(v[0]) for k, v in derive(cols).items()}


def test_spec_is_well_formed() -> None:
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    for f in FEATURES:
        assert f.monotone in (-1, 0, 1) and f.label and f.missing
        if f.monotone:
            assert f.source, f"{f.name} is constrained without a source"
    assert set(MONOTONE_CONSTRAINTS) == set(MODEL_FEATURE_NAMES)
    assert [r["name"] for r in spec_table()] == names


@pytest.mark.parametrize(
    ("fields", "name", "expected"),
    [
        ({"d_dimer": 0.49}, "d_dimer_elevated", 0),
        ({"d_dimer": 0.5}, "d_dimer_elevated", 1),
        ({"age": 80, "d_dimer": 0.79}, "d_dimer_above_age_adjusted", 0),
        ({"age": 80, "d_dimer": 0.8}, "d_dimer_above_age_adjusted", 1),
        ({"age": 40, "d_dimer": 0.5}, "d_dimer_above_age_adjusted", 1),
        ({"stage": "II"}, "advanced_stage", 0),
        ({"stage": "III"}, "advanced_stage", 1),
        ({"stage": "IV"}, "stage", 4),
        ({"platelets": 349}, "platelets_raised", 0),
        ({"platelets": 350}, "platelets_raised", 1),
        ({"hemoglobin": 150}, "hemoglobin_above_150", 0),
        ({"hemoglobin": 151}, "hemoglobin_above_150", 1),
        ({"pao2": 70}, "pao2_below_70", 0),
        ({"pao2": 69}, "pao2_below_70", 1),
        ({"pao2": {"value": 9, "unit": "kPa"}}, "pao2_below_70", 1),
        ({"days_since_surgery": 30}, "surgery_within_1m", 1),
        ({"days_since_surgery": 31}, "surgery_within_1m", 0),
        ({"days_since_surgery": 31}, "surgery_within_3m", 1),
        ({"days_since_surgery": 200}, "surgery_within_6m", 0),
        ({"days_since_surgery": 200}, "surgery_within_12m", 1),
        ({}, "surgery_within_12m", 0),
        ({"days_since_surgery": 10}, "surgery_recency", 4),
        ({"days_since_surgery": 60}, "surgery_recency", 3),
        ({"days_since_surgery": 150}, "surgery_recency", 2),
        ({"days_since_surgery": 300}, "surgery_recency", 1),
        ({"days_since_surgery": 400}, "surgery_recency", 0),
        ({}, "surgery_recency", 0),
        ({"rv_lv_ratio": 1.0}, "rv_lv_above_1", 0),
        ({"rv_lv_ratio": 1.01}, "rv_lv_above_1", 1),
        ({"troponin": 14, "nt_probnp": 599}, "cardiac_marker_raised", 0),
        ({"troponin": 15}, "cardiac_marker_raised", 1),
        ({"nt_probnp": 600}, "cardiac_marker_raised", 1),
        ({"contrast_allergy": True}, "ctpa_contraindicated", 1),
        ({"contrast_allergy": False, "egfr_renal": 29}, "ctpa_contraindicated", 1),
        ({"contrast_allergy": False, "egfr_renal": 30}, "ctpa_contraindicated", 0),
        ({"dvt_signs": True}, "wells_above_2", 1),
        (
            {
                "dvt_signs": False,
                "pe_most_likely": False,
                "heart_rate": 80,
                "immobilized": False,
                "recent_surgery_or_trauma": False,
                "prior_vte": False,
                "hemoptysis": False,
            },
            "wells_above_2",
            0,
        ),
        ({"ecg_abnormalities": 0}, "ecg_abnormal", 0),
        ({"ecg_abnormalities": 2}, "ecg_abnormal", 1),
        ({"histology": "adenocarcinoma"}, "adenocarcinoma", 1),
        ({"histology": "other"}, "adenocarcinoma", 0),
        ({"sex": "male"}, "sex_male", 1),
        ({"smoking_status": "current"}, "smoking", 2),
        ({"d_dimer": {"value": 850, "unit": "ng/mL{FEU}"}}, "d_dimer", 0.85),
    ],
)
def test_derived_predictor(fields: dict, name: str, expected: float) -> None:
    assert feats(**fields)[name] == pytest.approx(expected)


@pytest.mark.parametrize(
    "name",
    [
        "d_dimer_elevated",
        "platelets_raised",
        "pao2_below_70",
        "rv_lv_above_1",
        "cardiac_marker_raised",
        "ctpa_contraindicated",
        "wells_above_2",
        "egfr_mutation",
        "chemotherapy",
        "d_dimer",
    ],
)
def test_unknown_inputs_stay_missing(name: str) -> None:
    assert np.isnan(feats()[name])


def test_unknown_histology_is_missing_not_zero() -> None:
    f = feats(histology="unknown")
    assert np.isnan(f["adenocarcinoma"]) and np.isnan(f["squamous_cell"])


def test_matrix_follows_the_requested_names() -> None:
    cols = record_columns([parse_record(base_record(d_dimer=2.0, age=70))])
    m = feature_matrix(cols, ["d_dimer", "age"])
    assert m.tolist() == [[2.0, 70.0]]
    assert list(feature_frame(cols).columns) == list(MODEL_FEATURE_NAMES)
    with pytest.raises(KeyError, match="not_a_feature"):
        feature_matrix(cols, ["not_a_feature"])


def test_table_and_record_paths_give_the_same_features() -> None:
    raws = [
        base_record(d_dimer=1.5, platelets=400, chemotherapy=True, days_since_surgery=12),
        base_record(stage="I", histology="squamous_cell", hemoglobin=155, ecog=1, sex="male"),
    ]
    by_record = feature_frame(record_columns([parse_record(r) for r in raws]))
    report = validate_table(pd.DataFrame(raws))
    assert report.ok
    by_table = feature_frame(report.columns)
    by_frame = feature_frame(frame_columns(report.frame()))
    pd.testing.assert_frame_equal(by_record, by_table)
    pd.testing.assert_frame_equal(by_record, by_frame)


def test_record_columns_read_validated_records_and_plain_dicts_alike() -> None:
    """Validated records are read by one C getter per row and a transpose; plain dicts of
    canonical values (which may leave fields out) field by field: the columns are equal,
    NaN and None where a field is not known."""
    records = [
        parse_record(base_record(**fields))
        for fields in ({}, {"d_dimer": 1.2, "chemotherapy": True}, {"histology": "squamous_cell"})
    ]
    fast = record_columns(records)
    plain = record_columns([r.present() for r in records])
    assert set(fast) == set(plain)
    for name, col in fast.items():
        assert col.dtype == plain[name].dtype, name
        if col.dtype == object:
            assert col.tolist() == plain[name].tolist(), name
        else:
            np.testing.assert_array_equal(col, plain[name], err_msg=name)
    assert np.isnan(fast["d_dimer"][0]) and fast["d_dimer"][1] == 1.2
    assert fast["chemotherapy"][1] == 1.0
    assert record_columns([])["age"].shape == (0,)
    # validated records and partial dicts in one batch: the dicts' path, the same columns
    mixed = record_columns([records[0], records[1].present()])
    for name in ("d_dimer", "chemotherapy", "histology", "age"):
        assert mixed[name].tolist()[1] == fast[name].tolist()[1], name
    assert np.isnan(mixed["d_dimer"][0])
