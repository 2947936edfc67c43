"""The patient record: required fields, hard/usual ranges, units, strictness, messages."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.contract import FIELDS, REQUIRED, Kind
from features.records import PatientRecord, RecordError, parse_record
from features.units import LAB_UNITS, UnitError, factor, from_canonical, to_canonical
from tests.conftest import base_record

RANGED = [f for f in FIELDS if f.hard is not None]


def issues(raw: object) -> dict[str, tuple[str, str]]:
    with pytest.raises(RecordError) as exc:
        parse_record(raw)
    return {i.field: (i.rule, i.message) for i in exc.value.issues}


def test_model_has_every_contract_field_and_nothing_else() -> None:
    assert list(PatientRecord.model_fields) == [f.name for f in FIELDS]
    assert {n for n, f in PatientRecord.model_fields.items() if f.is_required()} == set(REQUIRED)


def test_minimal_record_is_valid_and_unknowns_stay_missing() -> None:
    rec = parse_record(base_record())
    assert rec.d_dimer is None and rec.chemotherapy is None
    assert rec.present() == base_record()


@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_field_missing_is_named(name: str) -> None:
    raw = base_record()
    del raw[name]
    rule, message = issues(raw)[name]
    assert rule == "required" and message.startswith(f"{name} is required")


@pytest.mark.parametrize("spec", RANGED, ids=lambda s: s.name)
def test_hard_range_edges_accepted_and_beyond_rejected(spec) -> None:
    lo, hi = spec.hard
    step = 1 if spec.kind is Kind.INTEGER else 0.01 * max(1.0, hi - lo) / 100
    lo_v, hi_v = (int(lo), int(hi)) if spec.kind is Kind.INTEGER else (lo, hi)
    for ok in (lo_v, hi_v):
        rec = parse_record(base_record(**{spec.name: ok}))
        assert getattr(rec, spec.name) == pytest.approx(ok)
    for bad in (lo_v - step, hi_v + step):
        if spec.name == "age" or bad >= 0 or spec.kind is not Kind.LAB:
            bad = int(bad) if spec.kind is Kind.INTEGER else bad
            rule, message = issues(base_record(**{spec.name: bad}))[spec.name]
            assert rule == "range"
            assert f"{spec.name}=" in message and "accepted" in message
            assert spec.range_text() in message


def test_error_echoes_value_rule_and_suggests_the_unit() -> None:
    rule, message = issues(base_record(d_dimer=850))["d_dimer"]
    assert rule == "range"
    assert message == (
        "d_dimer=850 is above the accepted maximum 100 mg/L FEU (accepted 0–100 mg/L FEU); "
        'was it sent in ng/mL{FEU}? give {"value": 850, "unit": "ng/mL{FEU}"}'
    )
    assert "g/dL" in issues(base_record(hemoglobin=12.5))["hemoglobin"][1]


LAB_CASES = [
    ("d_dimer", 850, "ng/mL{FEU}", 0.85),
    ("d_dimer", 850, "ug/L{FEU}", 0.85),
    ("d_dimer", 0.85, "ug/mL{FEU}", 0.85),
    ("d_dimer", 0.85, "mg/L{FEU}", 0.85),
    ("d_dimer", 425, "ng/mL{DDU}", 0.85),
    ("d_dimer", 425, "ug/L{DDU}", 0.85),
    ("d_dimer", 0.425, "mg/L{DDU}", 0.85),
    ("d_dimer", 0.425, "ug/mL{DDU}", 0.85),
    ("d_dimer", 850, "ng/mL{FEU}".replace("u", "µ"), 0.85),
    ("d_dimer", 0.85, "µg/mL{FEU}", 0.85),
    ("hemoglobin", 13.2, "g/dL", 132.0),
    ("hemoglobin", 8.2, "mmol/L", 8.2 * 16.11),
    ("hemoglobin", 132, "g/L", 132.0),
    ("platelets", 350, "10*3/uL", 350.0),
    ("platelets", 350, "10*9/L", 350.0),
    ("leukocytes", 11.1, "10*3/µL", 11.1),
    ("leukocytes", 11.1, "10*9/L", 11.1),
    ("pao2", 9.0, "kPa", 9.0 * 7.50062),
    ("pao2", 68, "mm[Hg]", 68.0),
    ("troponin", 0.05, "ug/L", 50.0),
    ("troponin", 50, "ng/L", 50.0),
    ("nt_probnp", 900, "ng/L", 900.0),
    ("nt_probnp", 900, "pg/mL", 900.0),
    ("creatinine", 1.2, "mg/dL", 1.2 * 88.4),
    ("creatinine", 106, "umol/L", 106.0),
]


@pytest.mark.parametrize(("name", "value", "unit", "canonical"), LAB_CASES)
def test_lab_units_convert_to_canonical(
    name: str, value: float, unit: str, canonical: float
) -> None:
    rec = parse_record(base_record(**{name: {"value": value, "unit": unit}}))
    assert getattr(rec, name) == pytest.approx(canonical)
    assert rec.given(name) == f"{value:g} {unit.replace('µ', 'u')}"


@pytest.mark.parametrize(
    ("name", "unit", "hint"),
    [
        ("d_dimer", "mg/L", "FEU or DDU"),
        ("d_dimer", "ng/ml{FEU}", "did you mean 'ng/mL{FEU}'"),
        ("hemoglobin", "mg/dL", "accepted units are"),
        ("platelets", "/uL", "accepted units are"),
        ("pao2", "mmHg", "accepted units are"),
        ("creatinine", "µmol/l", "did you mean 'umol/L'"),
    ],
)
def test_unknown_units_are_rejected_with_the_accepted_list(name: str, unit: str, hint: str) -> None:
    rule, message = issues(base_record(**{name: {"value": 1, "unit": unit}}))[name]
    assert rule == "unit" and hint in message and repr(unit).strip("'") in message


def test_lab_range_is_checked_after_conversion() -> None:
    rule, message = issues(base_record(d_dimer={"value": 150, "unit": "mg/L{DDU}"}))["d_dimer"]
    assert rule == "range" and "300 mg/L FEU" in message


def test_ddu_conversion_and_unusual_values_warn() -> None:
    rec = parse_record(
        base_record(d_dimer={"value": 250, "unit": "ng/mL{DDU}"}, heart_rate=130, platelets=500)
    )
    fields = [w.field for w in rec.warnings]
    assert fields.count("d_dimer") == 1
    assert "DDU" in next(w.message for w in rec.warnings if w.field == "d_dimer")
    assert "heart_rate" in fields and "platelets" in fields
    assert not parse_record(base_record(platelets=300)).warnings


@pytest.mark.parametrize("bad", ["maybe", "yes", "true", 1, 0, "1", None.__class__.__name__])
def test_booleans_are_json_true_false_only(bad: object) -> None:
    rule, message = issues(base_record(chemotherapy=bad))["chemotherapy"]
    assert rule == "type" and "true or false" in message


def test_booleans_accept_true_false_and_null() -> None:
    assert parse_record(base_record(chemotherapy=True)).chemotherapy is True
    assert parse_record(base_record(chemotherapy=False)).chemotherapy is False
    assert parse_record(base_record(chemotherapy=None)).chemotherapy is None


@pytest.mark.parametrize(
    ("name", "bad", "suggest"),
    [
        ("stage", "3", "'III'"),
        ("stage", "IIIA", "'III'"),
        ("stage", "iv", "'IV'"),
        ("histology", "Adenocarcinoma", "'adenocarcinoma'"),
        ("histology", "squamous", "'squamous_cell'"),
        ("sex", "M", None),
        ("smoking_status", "Current", "'current'"),
    ],
)
def test_categories_are_exact(name: str, bad: str, suggest: str | None) -> None:
    rule, message = issues(base_record(**{name: bad}))[name]
    assert rule == "choice" and "accepted values are" in message
    if suggest:
        assert f"did you mean {suggest}" in message


def test_unknown_field_is_rejected_with_a_suggestion() -> None:
    rule, message = issues(base_record(d_dimmer=1.2))["d_dimmer"]
    assert rule == "unknown_field" and "did you mean 'd_dimer'" in message


@pytest.mark.parametrize("bad", ["70", "seventy", [70], {"value": 70}, True])
def test_numbers_must_be_json_numbers(bad: object) -> None:
    assert issues(base_record(age=bad))["age"][0] in ("type", "range")


def test_nan_and_infinity_are_rejected() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        assert issues(base_record(heart_rate=bad))["heart_rate"][0] == "type"
        assert issues(base_record(d_dimer=bad))["d_dimer"][0] == "type"
    raw = json.loads('{"age": 60, "sex": "male", "histology": "other", "stage": "I", "pao2": NaN}')
    assert issues(raw)["pao2"][0] == "type"


def test_integer_fields_reject_fractions() -> None:
    assert issues(base_record(ecog=2.5))["ecog"][0] == "type"
    assert parse_record(base_record(ecog=2)).ecog == 2


def test_every_problem_is_reported_at_once() -> None:
    found = issues({"age": 5, "sex": "x", "stage": "V", "d_dimer": 850, "foo": 1})
    assert set(found) == {"age", "sex", "stage", "d_dimer", "foo", "histology"}


def test_not_an_object() -> None:
    assert issues([1, 2])["(record)"][0] == "type"


def test_patient_id_length() -> None:
    assert issues(base_record(patient_id="x" * 65))["patient_id"][0] == "length"
    assert parse_record(base_record(patient_id="x" * 64)).patient_id == "x" * 64


def test_lab_quantity_rejects_extra_keys_and_missing_unit() -> None:
    for bad in ({"value": 1, "unit": "mg/L{FEU}", "x": 1}, {"value": 1}):
        rule, message = issues(base_record(d_dimer=bad))["d_dimer"]
        assert rule == "type" and '"unit": <one of' in message


@given(field=st.sampled_from(sorted(LAB_UNITS)), data=st.data())
def test_unit_round_trip(field: str, data: st.DataObject) -> None:
    unit = data.draw(st.sampled_from(sorted(LAB_UNITS[field].factors)))
    value = data.draw(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
    assert from_canonical(field, to_canonical(field, value, unit), unit) == pytest.approx(
        value, rel=1e-12
    )
    assert to_canonical(field, value, None) == value


@given(st.text(max_size=12))
def test_unit_lookup_never_guesses(unit: str) -> None:
    accepted = set(LAB_UNITS["d_dimer"].factors)
    if unit.strip().replace("µ", "u").replace("μ", "u") in accepted:
        assert factor("d_dimer", unit) > 0
    else:
        with pytest.raises(UnitError, match=r"accepted|did you mean|FEU or DDU"):
            factor("d_dimer", unit)


def test_required_field_sent_as_null_is_missing_not_accepted() -> None:
    with pytest.raises(RecordError) as err:
        parse_record(base_record(age=None, stage="V"))
    by_field = {i.field: i for i in err.value.issues}
    assert by_field["age"].rule == "required"
    assert by_field["stage"].rule == "choice"  # the other problems are still reported
