"""Unknown means unknown, on the trained model: never outside the known values, calibrated on
incomplete records, and a model that over-predicts on them is refused by the gate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import record_columns, take
from features.contract import BY_NAME, FIELDS, UNKNOWABLE, Kind, unknown_value
from features.records import parse_record
from features.spec import BY_NAME as SPEC
from features.table import validate_table
from training.cohort import generate, load_effects
from training.compare import evaluate_fit
from training.registry import Gate
from training.train import TrainConfig, fit
from training.unknowns import REMOVED, remove_at_random

pytestmark = pytest.mark.model

MODEL_FIELDS = {SPEC[n].field for n in SPEC if SPEC[n].in_model}
YES_NO = [f.name for f in FIELDS if f.kind is Kind.BOOLEAN and f.name in UNKNOWABLE]
LABS = [f.name for f in FIELDS if f.kind is Kind.LAB and f.name in UNKNOWABLE]
#: the other fields a record may leave unknown: numbers, counts and ordered categories
OTHERS = [
    f.name
    for f in FIELDS
    if f.name in UNKNOWABLE and f.name not in YES_NO + LABS and f.name != "histology"
]


def _values(name: str) -> list[object]:
    """Every value of a yes/no field or a category; for a number, a grid over its hard range
    (geometric and linear) and its usual range."""
    spec = BY_NAME[name]
    if spec.kind is Kind.BOOLEAN:
        return [0.0, 1.0]
    if spec.kind is Kind.CATEGORY:
        return [c for c in spec.choices if c != "unknown"]
    lo, hi = spec.hard
    grid = [*np.geomspace(max(lo, 0.001), hi, 40), *np.linspace(lo, hi, 40)]
    if spec.usual:
        grid += list(np.linspace(*spec.usual, 15))
    return grid


def _log_odds_absent_and_set(model, columns: dict[str, np.ndarray], name: str, head: str):
    """For each row: one head's calibrated log-odds with ``name`` absent, and with it set to
    each value."""
    n = len(columns["age"])
    values = _values(name)
    blocks = []
    textual = columns[name].dtype == object
    for v in [unknown_value(name), *values]:
        c = dict(columns)
        if textual:
            c[name] = np.full(n, v, dtype=object)
        else:
            c[name] = np.full(n, np.nan if v is None else float(v))
        blocks.append(c)
    stacked = {k: np.concatenate([b[k] for b in blocks]) for k in columns}
    h = model.heads[head]
    z = h.calibration.log_odds(h.margin(model.features(stacked))).reshape(len(blocks), n)
    return z[0], z[1:]


def test_the_fields_under_test_are_the_ones_the_model_reads() -> None:
    assert {"chemotherapy", "anti_angiogenic", "gemcitabine", "suspected_pe"} <= set(YES_NO)
    assert {"d_dimer", "platelets", "hemoglobin", "leukocytes", "troponin"} <= set(LABS)
    assert {"smoking_status", "bmi", "ecog", "heart_rate", "months_since_diagnosis"} <= set(OTHERS)
    assert set(YES_NO + LABS) & MODEL_FIELDS == set(YES_NO + LABS) - {
        "troponin_i",
        "recent_surgery_or_trauma",
        "brain_metastases",
        "creatinine",
        "egfr_renal",
        "contrast_allergy",
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.integers(0, 9_000),
    rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    head=st.sampled_from(["pe_now", "new_pe"]),
)
def test_an_absent_field_is_never_outside_its_known_values(trained, table, start, rate, seed, head):
    """For every yes/no field, every lab and every other optional field, and both estimates:
    with the field absent, the estimate lies between the estimates with it set to its values
    (no ≤ unknown ≤ yes), for 200 records at a time taken from the test split with other
    fields removed at random."""
    model = trained.fitted.model
    rows = trained.fitted.splits.test[start : start + 200]
    columns = remove_at_random(take(table.report.columns, rows), rate, np.random.default_rng(seed))
    for name in YES_NO + LABS + OTHERS:
        absent, known = _log_odds_absent_and_set(model, columns, name, head)
        assert (absent >= known.min(axis=0) - 1e-6).all(), name  # float32 sums in XGBoost
        assert (absent <= known.max(axis=0) + 1e-6).all(), name


def test_the_issues_record_is_scored_between_no_and_yes(trained) -> None:
    """The record of the issue (age 67, male, adenocarcinoma, stage IV, nothing else)."""
    model = trained.fitted.model
    base = {"age": 67, "sex": "male", "histology": "adenocarcinoma", "stage": "IV"}
    four = ("suspected_pe", "chemotherapy", "anti_angiogenic", "gemcitabine")
    records = [base, {**base, **dict.fromkeys(four, True)}, {**base, **dict.fromkeys(four, False)}]
    absent, yes, no = model.new_pe.probability(
        model.features(record_columns([parse_record(r) for r in records]))
    )
    assert no < absent < yes
    assert absent < 0.5 * (no + yes) + 0.05  # closer to the usual answer than to "all yes"


def test_calibrated_on_incomplete_records_and_gated(trained) -> None:
    """Issue 15: with 30 % of each optional field removed at random, intercept within ±0.1 and
    slope within 0.8–1.2 (the gate's); the figures are in the run and the gate checks them."""
    m = trained.evaluation.missing_metrics
    assert abs(m["calibration_intercept"].value) <= 0.1
    assert 0.8 <= m["calibration_slope"].value <= 1.2
    checks = {c["check"]: c for c in trained.gate.checks}
    assert checks[f"calibration slope, {REMOVED}"]["passed"]
    assert checks[f"calibration intercept, {REMOVED}"]["passed"]


def test_the_run_logs_calibration_under_missingness(trained, tracking) -> None:
    from mlflow import MlflowClient

    run = MlflowClient().get_run(trained.run_id)
    for k in ("missing30_calibration_intercept", "missing30_calibration_slope", "missing30_auroc"):
        assert k in run.data.metrics, k
    assert run.data.metrics["missing30_calibration_slope"] == pytest.approx(
        trained.evaluation.missing_metrics["calibration_slope"].value
    )


def test_a_model_that_overpredicts_on_incomplete_records_is_refused() -> None:
    """Trained on a complete table without masked copies, the booster never learns what
    unknown means: the gate refuses it; the same table with masked copies passes."""
    report = validate_table(
        generate(20_000, 7, load_effects().always_recorded()).frame, require_outcome=True
    )
    gate = Gate(champion_tolerance=None)
    verdicts = {}
    for copies in (0, 1):
        fitted = fit(report, TrainConfig(seed=7, masked_copies=copies))
        evaluation = evaluate_fit(fitted, report.columns, n_boot=20)
        verdicts[copies] = {c["check"]: c["passed"] for c in gate.check(evaluation).checks}
    missing = "calibration intercept, 30 % of optional fields removed"
    assert not verdicts[0][missing]
    assert (
        verdicts[1][missing] and verdicts[1]["calibration slope, 30 % of optional fields removed"]
    )


def test_an_unknown_histology_lies_between_the_known_types(trained, table) -> None:
    """Histology is a category in four columns, so no monotone direction bounds it: masked
    copies teach "unknown" and each tree scores it as one real type. Measured, not proven:
    on the whole test split with 30 % of the other fields removed, "unknown" stays between
    the estimates for the five known types, on all but a tenth of a percent of the rows and
    within 0.02 on the log-odds scale."""
    model = trained.fitted.model
    columns = remove_at_random(
        take(table.report.columns, trained.fitted.splits.test), 0.3, np.random.default_rng(3)
    )
    for head in model.heads:
        absent, known = _log_odds_absent_and_set(model, columns, "histology", head)
        outside = np.maximum(known.min(axis=0) - absent, absent - known.max(axis=0))
        # each tree scores "unknown" as one type, not always the same one: the sum can leave
        # the types' range. Measured at seed 7: 2 of 10,000 rows, by 0.015 on the log-odds
        # scale (new PE); none for PE now. A model that scored unknown as a type of its own
        # would be outside on many rows and by far more.
        assert (outside > 1e-6).mean() <= 0.001, head
        assert outside.max() <= 0.02, head
