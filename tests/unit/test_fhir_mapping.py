"""FHIR R4 bundle → record mapping: the table, the choice of values, and what is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.records import parse_record
from serving.interop.fhir import BundleError, validate_bundle
from serving.interop.fhir_map import MapTableError, load_table
from serving.interop.fhir_record import map_bundle
from tests import bundles as b

INDEX = b.INDEX  # the assessment date every test here chooses; the bundles are dated for it


def mapped(resources, **kw):
    doc = b.bundle(resources)
    validate_bundle(doc)
    patients, loose = map_bundle(doc, load_table(), INDEX, **kw)
    return patients, loose


def only(resources, **kw):
    patients, loose = mapped(resources, **kw)
    assert len(patients) == 1
    return patients[0], loose


def texts(issues) -> str:
    return "\n".join(i.diagnostics for i in issues)


def test_a_typical_bundle_becomes_the_record_a_clinician_would_write():
    p, _loose = only(b.typical_patient())
    assert p.ok, texts(p.issues)
    r = p.record
    assert r["patient_id"] == "p1"
    assert (r["sex"], r["age"]) == ("male", 68)  # born 1958-03-14, assessed 2026-11-24
    assert (r["histology"], r["stage"]) == ("adenocarcinoma", "IV")  # ICD-O-3 8140/3; AJCC 4A
    assert r["months_since_diagnosis"] == pytest.approx(175 / 30.4375, abs=0.05)
    assert r["d_dimer"] == {"value": 1800, "unit": "ng/mL{FEU}"}  # LOINC 48065-7 is FEU
    assert r["platelets"] == {"value": 412, "unit": "10*3/uL"}  # the newer count
    assert r["hemoglobin"] == {"value": 11.8, "unit": "g/dL"}
    assert r["systolic_bp"] == 128  # a component of the blood-pressure panel
    assert r["heart_rate"] == 104
    assert r["copd"] is True
    assert r["chemotherapy"] is True and r["platinum_chemotherapy"] is True
    assert "gemcitabine" not in r and "anticoagulated" not in r  # absent, never false
    record = parse_record(r)
    assert record.d_dimer == pytest.approx(1.8)
    assert record.hemoglobin == pytest.approx(118)


def test_every_resource_not_used_is_reported_with_its_reason():
    p, loose = only(b.typical_patient())
    assert "Encounter/" in texts(loose) and "does not read" in texts(loose)
    report = texts(p.issues)
    assert "2345-7" in report  # glucose has no mapping
    assert "platelets from 2026-09-01 is 84 days old" in report
    for issue in p.issues + loose:
        assert issue.expression and issue.expression.startswith("Bundle.entry[")


def test_ddu_d_dimer_is_annotated_and_converted_to_feu():
    res = b.typical_patient()
    res[4] = b.lab("p1", "48066-5", 400, "ng/mL", "2026-11-23", "Fibrin D-dimer DDU")
    p, _ = only(res)
    assert p.record["d_dimer"] == {"value": 400, "unit": "ng/mL{DDU}"}
    record = parse_record(p.record)
    assert record.d_dimer == pytest.approx(0.8)  # DDU × 2 = FEU, in mg/L
    assert any("DDU" in w.message for w in record.warnings)


def test_a_d_dimer_in_mg_per_l_with_its_own_annotation_is_kept():
    res = b.typical_patient()
    res[4] = b.lab("p1", "48065-7", 0.42, "mg/L{FEU}", "2026-11-23", "Fibrin D-dimer FEU")
    p, _ = only(res)
    assert parse_record(p.record).d_dimer == pytest.approx(0.42)


def test_the_most_recent_value_before_the_index_date_wins_and_the_others_are_named():
    res = b.typical_patient()
    older = b.lab("p1", "718-7", 13.9, "g/dL", "2026-11-10", "Hemoglobin", id="hb-old")
    later = b.lab("p1", "718-7", 9.0, "g/dL", "2026-11-30", "Hemoglobin", id="hb-future")
    p, _ = only([*res, older, later])
    assert p.record["hemoglobin"] == {"value": 11.8, "unit": "g/dL"}
    report = texts(p.issues)
    assert "Observation/hb-old" in report and "superseded" in report
    assert "Observation/hb-future" in report and "after the index date" in report
    assert "Observation/hb-old" not in p.basis


def test_missing_observations_stay_missing():
    res = [r for r in b.typical_patient() if r.get("code", {}).get("text") != "Fibrin D-dimer FEU"]
    p, _ = only(res)
    assert "d_dimer" not in p.record
    assert parse_record(p.record).d_dimer is None


def test_a_lab_without_a_unit_is_not_guessed():
    res = b.typical_patient()
    del res[4]["valueQuantity"]["code"], res[4]["valueQuantity"]["unit"]
    p, _ = only(res)
    assert "d_dimer" not in p.record
    assert "without a unit" in texts(p.issues)


def test_a_vital_sign_in_an_unaccepted_unit_is_an_error():
    res = b.typical_patient()
    res.append(b.lab("p1", "8867-4", 1.7, "Hz", "2026-11-24", "Heart rate", id="hr-hz"))
    p, _ = only(res)
    assert not p.ok
    assert "Observation/hr-hz" in texts(p.issues) and "'Hz'" in texts(p.issues)


def test_several_patients_keep_their_own_resources():
    one, two = b.typical_patient("p1"), b.typical_patient("p2")
    two[6]["valueQuantity"]["value"] = 150  # p2's newer platelet count
    patients, _loose = mapped([*one, *two])
    by_id = {p.record["patient_id"]: p for p in patients}
    assert by_id["p1"].record["platelets"]["value"] == 412
    assert by_id["p2"].record["platelets"]["value"] == 150
    assert not set(by_id["p1"].basis) & set(by_id["p2"].basis)


def test_a_resource_of_a_patient_not_in_the_bundle_is_reported():
    res = b.typical_patient()
    res.append(b.lab("someone-else", "777-3", 500, "10*3/uL", "2026-11-22", id="stray"))
    p, loose = only(res)
    assert "Observation/stray" in texts(loose) and "not a Patient in this bundle" in texts(loose)
    assert p.record["platelets"]["value"] == 412


def test_pe_conditions_prior_provisional_and_refuted():
    res = b.typical_patient()
    prior = b.condition("p1", b.ICD10, "I26.99", "Other pulmonary embolism", "2024-02-01")
    p, _ = only([*res, prior])
    assert p.record["prior_vte"] is True and "suspected_pe" not in p.record

    suspected = b.condition(
        "p1", b.SCT, "59282003", "Pulmonary embolism", "2026-11-24", verification="provisional"
    )
    p, _ = only([*res, suspected])
    assert p.record["suspected_pe"] is True and "prior_vte" not in p.record

    refuted = b.condition(
        "p1", b.ICD10, "I26.99", "PE", "2025-01-01", verification="refuted", id="pe-refuted"
    )
    p, _ = only([*res, refuted])
    assert "prior_vte" not in p.record
    assert "Condition/pe-refuted" in texts(p.issues)


def test_histology_from_the_condition_code_and_stage_from_the_condition():
    res = [r for r in b.typical_patient() if r.get("resourceType") != "Observation"]
    res[1] = b.condition("p1", b.SCT, "254632001", "Small cell carcinoma of lung", "2026-01-05")
    res[1]["stage"] = [{"summary": b.concept(b.SCT, "258224005", "Stage 3")}]
    p, _ = only(res)
    assert (p.record["histology"], p.record["stage"]) == ("small_cell", "III")


def test_what_the_record_needs_and_the_bundle_lacks_is_an_error():
    res = b.typical_patient()
    res[0]["gender"] = "unknown"
    no_cancer = [r for r in res if r.get("id") != res[1]["id"]]
    p, _ = only(no_cancer)
    assert not p.ok
    report = texts(p.issues)
    assert "Patient.gender 'unknown'" in report and "no lung cancer Condition" in report

    no_stage = [r for r in b.typical_patient() if "21908-9" not in str(r.get("code"))]
    p, _ = only(no_stage)
    assert not p.ok and "no stage group found" in texts(p.issues)


def test_no_histology_is_sent_as_unknown_with_a_warning():
    res = b.typical_patient()
    res[1] = b.lung_cancer("p1", "2026-06-02", morphology=None)
    p, _ = only(res)
    assert p.ok and p.record["histology"] == "unknown"
    assert "sent as 'unknown'" in texts(p.issues)


def test_treatments_count_within_their_window_and_through_medication_references():
    res = b.typical_patient()[:-5]  # no carboplatin / pemetrexed
    med = {
        "resourceType": "Medication",
        "id": "osi",
        "code": b.concept(b.RXNORM, "1721560", "osimertinib"),
    }
    ongoing = b.medication("p1", b.RXNORM, "0", "x", "2025-03-01")
    del ongoing["medicationCodeableConcept"]
    ongoing["medicationReference"] = {"reference": "Medication/osi"}
    old = b.medication("p1", b.ATC, "L01FG01", "bevacizumab", "2026-01-10", status="completed")
    old["id"] = "bev-old"
    p, _ = only([*res, med, ongoing, old])
    assert p.record["egfr_tki"] is True  # still active: counts however long ago it started
    assert "anti_angiogenic" not in p.record
    assert "MedicationRequest/bev-old" in texts(p.issues)


def test_thoracic_surgery_gives_days_since_surgery():
    res = b.typical_patient()
    res.append(b.procedure("p1", b.SCT, "173171007", "Lobectomy of lung", "2026-11-04"))
    p, _ = only(res)
    assert p.record["days_since_surgery"] == 20


def test_suspected_pe_can_be_stated_by_the_caller():
    p, _ = only(b.typical_patient(), suspected_pe=True)
    assert p.record["suspected_pe"] is True


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(type="history"), "Bundle.type 'history'"),
        (lambda d: d.update(resourceType="Patient"), "send a FHIR Bundle"),
        (
            lambda d: d["entry"][4]["resource"]["valueQuantity"].update(value="lots"),
            "entry[4].resource",
        ),
        (lambda d: d["entry"][0]["resource"].update(gender=7), "entry[0].resource"),
        (lambda d: d["entry"][2]["resource"].update(favourite="blue"), "entry[2].resource"),
    ],
)
def test_an_invalid_bundle_is_refused_naming_where(change, expected):
    doc = b.bundle(b.typical_patient())
    change(doc)
    with pytest.raises(BundleError) as err:
        validate_bundle(doc)
    assert expected in texts(err.value.issues)


def test_a_hospital_extends_the_table_without_code(tmp_path: Path):
    local = tmp_path / "local.csv"
    shipped = (
        (Path(__file__).parents[2] / "serving" / "interop" / "fhir_map.csv")
        .read_text()
        .splitlines()[0]
    )
    local.write_text(
        shipped
        + "\nObservation,urn:oid:1.2.3.4.5,DDIM,d_dimer,,,FEU,7,Local D-dimer,our lab catalogue\n"
    )
    table = load_table(local)
    res = b.typical_patient()
    res[4]["code"] = b.concept("urn:oid:1.2.3.4.5", "DDIM", "D-Dimer (local)")
    doc = b.bundle(res)
    (p,), _ = map_bundle(doc, table, INDEX)
    assert p.record["d_dimer"] == {"value": 1800, "unit": "ng/mL{FEU}"}
    (p,), _ = map_bundle(doc, load_table(), INDEX)
    assert "d_dimer" not in p.record  # without the hospital's row the code is unknown


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "Observation,http://loinc.org,1-1,d_dimmer,,,,,,",
            "'d_dimmer' is not in the data contract",
        ),
        ("Observation,http://loinc.org,1-1,d_dimer,,furlongs,,,,", "unit 'furlongs'"),
        ("Answer,http://x,1,stage,V,,,,,", "stage takes one of"),
        ("Observation,http://loinc.org,1-1,d_dimer,,,,a week,,", "max_age_days 'a week'"),
    ],
)
def test_a_bad_hospital_row_is_refused_naming_file_and_line(tmp_path: Path, row, message):
    local = tmp_path / "bad.csv"
    header = "resource,system,code,field,value,unit,annotation,max_age_days,display,source"
    local.write_text(f"{header}\n{row}\n")
    with pytest.raises(MapTableError, match=f"{local}:2: .*") as err:
        load_table(local)
    assert message in str(err.value)


def test_icd_codes_match_with_or_without_dots_and_by_prefix():
    table = load_table()
    for code in ("C34.11", "C3411", "c34.9"):
        rows = table.lookup("Condition", b.ICD10, code)
        assert [r.field for r in rows] == ["lung_cancer"], code
    assert table.lookup("Condition", b.ICD10, "C18.9") == []
    fields = {r.field for r in table.lookup("Medication", b.ATC, "L01XA01")}
    assert fields == {"chemotherapy", "platinum_chemotherapy"}  # cisplatin is both


def test_the_fhir_map_command_shows_records_and_issues(tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from training.cli import app

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(b.bundle(b.typical_patient())))
    res = CliRunner().invoke(app, ["fhir-map", str(path), "--index-date", str(INDEX)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["records"][0]["record"]["stage"] == "IV"
    assert any("2345-7" in i["diagnostics"] for i in out["outcome"]["issue"])

    no_cancer = [r for r in b.typical_patient() if r.get("resourceType") != "Condition"]
    path.write_text(json.dumps(b.bundle(no_cancer)))
    assert CliRunner().invoke(app, ["fhir-map", str(path)]).exit_code == 1

    bad_map = tmp_path / "bad.csv"
    bad_map.write_text("resource,system\n")
    res = CliRunner().invoke(app, ["fhir-map", str(path), "--map", str(bad_map)])
    assert res.exit_code == 2 and "the header must be" in res.output


TYPICAL = b.typical_patient()


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(len(TYPICAL))))
def test_the_record_does_not_depend_on_the_order_of_entries(order):
    p, _ = only([TYPICAL[i] for i in order])
    reference, _ = only(TYPICAL)
    assert p.record == reference.record
    assert sorted(p.basis) == sorted(reference.basis)


# -- exports as EHRs and Synthea write them (issue 19) ---------------------------------------


@pytest.mark.parametrize("stage", ["I", "II", "III", "IV"])
@pytest.mark.parametrize("small_cell", [False, True])
def test_a_synthea_transaction_export_maps_with_the_stage_of_its_condition(stage, small_cell):
    from tests.synthea import lung_cancer_export

    doc = lung_cancer_export(b.INDEX, stage=stage, small_cell=small_cell, visits=3)
    validate_bundle(doc)  # a transaction Bundle is accepted as exported
    (p,), loose = map_bundle(doc, load_table(), b.INDEX)
    assert p.ok, texts(p.issues)
    rec = p.record
    assert rec["stage"] == stage
    assert rec["histology"] == ("small_cell" if small_cell else "unknown")  # NSCLC, no subtype
    assert rec["chemotherapy"] is True and rec["platinum_chemotherapy"] is True  # RxNorm SCD
    assert rec["radiotherapy"] is True  # 703423002, combined chemo-radiotherapy
    assert rec["creatinine"] == {"value": 1.0, "unit": "mg/dL"}  # LOINC 38483-4, in blood
    # the 85354-9 panel's systolic component is read (and too old a month later)
    assert "systolic_bp: more than 1 days old" in texts(p.issues)
    parse_record(rec)
    assert "Bundle.entry.request" in texts(loose) and "nothing was created" in texts(loose)


def test_a_synthea_export_is_summarised_by_type_and_reason():
    from tests.synthea import lung_cancer_export

    doc = lung_cancer_export(b.INDEX, visits=60)
    assert 900 <= len(doc["entry"]) <= 1_100
    (p,), loose = map_bundle(doc, load_table(), b.INDEX)
    said = texts(loose)
    for kind in ("Claim", "ExplanationOfBenefit", "Encounter"):
        assert f"{kind} ×" in said and "pe-risk does not read this resource type" in said
    mine = texts(p.issues)
    assert mine.count("http://loinc.org|2339-0") == 1  # 60 glucose results: one issue
    assert "Observation ×60: no mapping for http://loinc.org|2339-0" in mine
    assert "heart_rate: more than 1 days old" in mine  # a mapped value too old, counted
    assert len(p.issues) + len(loose) < 40


def test_the_mcode_lung_cancer_example_codes_map():
    """The codes of mCODE's lung-cancer examples (primary-cancer-condition-nsclc and its
    brain metastasis, lobectomy, gefitinib and cisplatin requests, ECOG, stage group)."""
    pid = "john-anyperson"
    nsclc = b.condition(pid, b.SCT, "254637007", "Non-small cell lung cancer", "2026-04-01")
    nsclc["extension"] = [
        {
            "url": b.HISTOLOGY_EXT,
            "valueCodeableConcept": b.concept(b.SCT, "1187332001", "Adenocarcinoma"),
        }
    ]
    nsclc["stage"] = [{"summary": b.concept("http://cancerstaging.org", "3C", "IIIC")}]
    resources = [
        b.patient(pid, birth="1951-01-20"),
        nsclc,
        b.condition(pid, b.SCT, "94225005", "Secondary malignant neoplasm of brain", "2026-05-01"),
        b.procedure(pid, b.SCT, "359615001", "Partial lobectomy of lung", "2026-10-25"),
        b.medication(pid, b.RXNORM, "349472", "gefitinib 250 MG Oral Tablet", "2026-10-01"),
        b.medication(
            pid, b.RXNORM, "309311", "CISplatin 50 MG per 50 ML Injectable Solution", "2026-10-01"
        ),
    ]
    p, _ = only(resources)
    assert p.ok, texts(p.issues)
    assert p.record["histology"] == "adenocarcinoma" and p.record["stage"] == "III"
    assert p.record["brain_metastases"] is True
    assert p.record["days_since_surgery"] == 30
    assert p.record["egfr_tki"] is True and p.record["platinum_chemotherapy"] is True


@pytest.mark.parametrize(
    ("deceased", "said"),
    [
        ({"deceasedDateTime": "2012-06-01T10:00:00Z"}, "Patient.deceasedDateTime 2012-06-01"),
        ({"deceasedBoolean": True}, "Patient.deceasedBoolean true"),
    ],
)
def test_a_patient_who_died_before_the_index_date_is_not_assessed(deceased, said):
    res = b.typical_patient()
    res[0].update(deceased)
    p, _ = only(res)
    assert not p.ok
    assert said in texts(p.issues)


def test_a_death_after_the_index_date_still_lets_one_look_back():
    res = b.typical_patient()
    res[0]["deceasedDateTime"] = "2027-06-01"
    p, _ = only(res)
    assert p.ok, texts(p.issues)
