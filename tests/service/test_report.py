"""The clinician's report: POST /report, `pe-risk report`, and what the page must say."""

from __future__ import annotations

import math
import re

import pytest
from typer.testing import CliRunner

from features.records import parse_record
from models.settings import get_settings
from models.store import load_imported
from serving.answer.report import missing_input_effects, percent, waterfall
from tests.conftest import base_record

pytestmark = pytest.mark.service

RECORD = base_record(
    patient_id="MRN-0042",
    age=67,
    sex="male",
    stage="IV",
    d_dimer={"value": 3200, "unit": "ng/mL{FEU}"},
    platelets=410,
    chemotherapy=True,
    suspected_pe=True,
    heart_rate=112,
    rv_lv_ratio=1.3,
)
EXTERNAL = re.compile(r"(?i)(<script|<link|<img|<iframe|@import|url\(|\b(?:src|href)\s*=)")


def test_report_is_self_contained_and_says_what_predict_says(client) -> None:
    r = client.post("/report", json=RECORD)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    answer = client.post("/predict", json=RECORD).json()
    assert f'id="risk-value">{percent(answer["probability"])}<' in html
    assert f'id="risk-category">{answer["risk_category"]}<' in html
    assert "SYNTHETIC" in html and "Decision support, not a diagnosis" in html
    assert "D-dimer: 3200 ng/mL{FEU}" in html  # the value as given, with its unit
    for score in ("Khorana score", "Vienna CATS score", "Wells score for PE", "VTE-BLEED"):
        assert score in html
    for flag in answer["recommendations"]:
        assert flag["text"] in html
    assert 'role="img"' in html and "<desc" in html and 'id="drivers-table"' in html
    assert r.headers["x-model-version"] == answer["model"]["version"]


def test_report_refuses_a_bad_record_with_the_error_body(client) -> None:
    r = client.post("/report", json=base_record(stage="V"))
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "stage"


def test_cli_writes_the_same_page_without_a_server(client, served_state, tmp_path) -> None:
    from training.cli import app

    path = tmp_path / "record.json"
    path.write_text(__import__("json").dumps(RECORD))
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == client.post("/report", json=RECORD).text


def test_waterfall_ends_at_the_patients_log_odds(client) -> None:
    answer = client.post("/predict", json=RECORD).json()
    fall = waterfall(answer["explanation"], answer["probability"])
    total = answer["explanation"]["base_value"] + sum(r["delta"] for r in fall["rows"])
    p = answer["probability"]
    assert total == pytest.approx(math.log(p / (1 - p)), abs=1e-6)
    assert fall["rows"][-1]["after"] == percent(p)
    assert all(("▲" if r["delta"] > 0 else "▼") for r in fall["rows"])


def test_missing_inputs_are_ranked_by_how_far_they_move_the_estimate(served_state) -> None:
    model, _ = load_imported(get_settings())
    sparse = parse_record(base_record(suspected_pe=True))
    effects = missing_input_effects(model, sparse, top=10)
    assert effects, "a record with only the required fields must have missing inputs that matter"
    spreads = [e.spread for e in effects]
    assert spreads == sorted(spreads, reverse=True) and all(e.low < e.high for e in effects)
    assert "d_dimer" in {e.field for e in effects}  # the review's strongest marker
    p_dd = {e.field: e for e in effects}["d_dimer"]
    assert p_dd.low_value.endswith("mg/L FEU") and p_dd.high_value.endswith("mg/L FEU")
    complete = parse_record(base_record(d_dimer=1.0))
    assert "d_dimer" not in {e.field for e in missing_input_effects(model, complete, top=50)}


def test_one_average_a_legend_and_bleeding_apart(client) -> None:
    """Issue 16: one average on the page, the "(≤ n)" and [V]/[S]/[U] marks explained, and a
    bleeding line never listed with the diagnostic flags."""
    html = client.post(
        "/report",
        json={**RECORD, "age": 64, "hemoglobin": 11.2 * 10, "sex": "female"},
    ).text
    assert html.count("average patient") == 0 and html.count("training-data average") == 1
    legend = html[html.index('id="score-legend"') :]
    assert "(≤ n)" in legend and "[V]" in legend and "[S]" in legend and "[U]" in legend
    flags = html[html.index('id="flags-h"') : html.index('id="what-if"')]
    assert 'id="bleeding-info"' in flags
    listed = flags[: flags.index('id="bleeding-info"')]
    assert "Bleeding risk factors" not in listed  # not at the level of "prioritise CTPA"


def test_the_estimate_reads_against_the_bands_anchors() -> None:
    """9 % and 82 % must not read the same: each is placed against the published anchors."""
    from serving.answer.report import anchor_text

    bands = {"low_below": 0.05, "high_from": 0.089}
    assert anchor_text(0.09, bands).startswith("1.0 ×")
    assert anchor_text(0.82, bands).startswith("9.2 ×")
    assert "between" in anchor_text(0.07, bands) and "below" in anchor_text(0.03, bands)


def test_published_risks_carry_their_horizon(client) -> None:
    html = client.post("/report", json=RECORD).text
    scores = html[html.index('id="scores-h"') :]
    assert "at 6 months" in scores  # Khorana (Mulder 2019), Vienna CATS (Ay 2010)
    assert "at the work-up (prevalence)" in scores  # Wells, revised Geneva


def test_suspected_pe_reads_pe_now_first_then_the_new_pe_risk_if_excluded(client) -> None:
    answer = client.post("/predict", json=RECORD).json()
    html = client.post("/report", json=RECORD).text
    assert answer["question"] == "pe_now" and "Is there a PE now?" in html
    assert html.index('id="risk-value"') < html.index('id="new-pe"')
    later = html[html.index('id="new-pe"') :]
    later = later[: later.index("</figcaption>")]
    assert "If PE is excluded" in later
    for at in answer["estimates"]["new_pe"]["by_horizon"]:
        assert f"{percent(at['probability'])}</strong> by {at['horizon_days']} d" in later
    assert "What drives the PE-now estimate" in html


def test_a_routine_visit_shows_the_new_pe_curve_with_bleeding_beside_it(client) -> None:
    record = base_record(patient_id="MRN-0107", stage="II", suspected_pe=False)
    answer = client.post("/predict", json=record).json()
    html = client.post("/report", json=record).text
    assert answer["question"] == "new_pe"
    assert "Risk of a new PE within 180 days (death competing)" in html
    curve = html[
        html.index('id="new-pe-curve"') : html.index("</svg>", html.index('id="new-pe-curve"'))
    ]
    for at in answer["estimates"]["new_pe"]["by_horizon"]:
        assert f"{percent(at['probability'])} by {at['horizon_days']} days" in curve
    beside = html[html.index('id="bleeding-beside"') :]
    assert "VTE-BLEED" in beside[: beside.index("</p>")]
    assert "PE now: not estimated (PE is not suspected" in html
    assert "What drives the new-PE estimate" in html
