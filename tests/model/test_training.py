"""A real training run: quality, exactness, behaviour, MLflow contents and the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from scipy.special import logit

from features.build import record_columns
from features.records import parse_record
from models.artifact import PERiskModel
from models.treeshap import PathTable
from tests.conftest import base_record
from training.compare import take
from training.train import TrainConfig, fit

pytestmark = pytest.mark.model


def _test_rows(trained, head: str) -> np.ndarray:
    fitted = trained.fitted
    return fitted.heads[head].task.rows(fitted.splits.test)


def test_new_pe_by_180_days_against_the_generators_truth(trained, table) -> None:
    """Issue 18: on the test rows without PE now, the 180-day estimate's mean is within 8 % of
    the true mean cumulative incidence, no tenth of the rows (by estimate) is off by more
    than a quarter, and its time-dependent AUROC is at least 0.95 × the truth's."""
    rows = _test_rows(trained, "new_pe")
    model = trained.fitted.model
    p = model.new_pe.probability(trained.fitted.x[rows])
    truth = table.truth["new_pe_180d"].to_numpy()[rows]
    assert abs(p.mean() / truth.mean() - 1) <= 0.08, (p.mean(), truth.mean())
    for tenth in np.array_split(np.argsort(p, kind="stable"), 10):
        assert abs(p[tenth].mean() / truth[tenth].mean() - 1) <= 0.25
    m, ref = trained.evaluation.metrics, trained.evaluation.reference
    assert m["auroc"].value >= 0.95 * ref["oracle_auroc"]
    assert 0.85 <= m["calibration_slope"].value <= 1.15
    assert abs(m["calibration_intercept"].value) <= 0.1


def test_pe_now_against_the_generators_truth(trained, table) -> None:
    """Issue 18: among suspected test rows, the PE-now AUROC is at least 0.97 × the truth's
    with a calibration slope in 0.85–1.15; Wells and revised Geneva are compared on the same
    rows, and each rule-out strategy has its failure rate and efficiency."""
    now = trained.evaluation.pe_now
    rows = _test_rows(trained, "pe_now")
    assert now["rows"] == len(rows) and 0 < now["events"] < len(rows)
    truth = table.truth["pe_now_probability"].to_numpy()[rows]
    y = trained.fitted.outcomes.pe_now[rows]
    from training.evaluate import rank_metrics

    assert now["reference"]["oracle_auroc"] == pytest.approx(rank_metrics(y, truth)["auroc"])
    assert now["metrics"]["auroc"].value >= 0.97 * now["reference"]["oracle_auroc"]
    assert 0.85 <= now["metrics"]["calibration_slope"].value <= 1.15
    for key in ("wells", "revised_geneva"):
        assert now["baselines"][key]["metrics"]["auroc"].value < now["metrics"]["auroc"].value
    assert set(now["rule_outs"]) == {
        "Wells ≤4 and D-dimer <0.5 mg/L FEU",
        "Wells ≤4 and age-adjusted D-dimer",
        "revised Geneva ≤10 and age-adjusted D-dimer",
        "YEARS",
    }
    for r in now["rule_outs"].values():
        assert 0 < r["ruled_out"] < r["rows"]
        assert r["efficiency"].low <= r["efficiency"].value <= r["efficiency"].high
        assert r["failure_rate"].value < 0.05  # each rule misses few PEs in its ruled-out rows


def test_no_estimate_decreases_with_the_horizon(trained) -> None:
    x = trained.fitted.x
    p = trained.fitted.model.new_pe.probabilities(x)
    assert p.shape == (len(x), 3) and np.all(np.diff(p, axis=1) >= 0)
    for h, m in trained.evaluation.horizons.items():
        assert m["auroc"].value > m["khorana_auroc"].value, h
        assert m["auroc"].value > m["onkotev_auroc"].value, h


def test_model_beats_khorana_and_matches_logistic_regression(trained) -> None:
    b = trained.evaluation.baselines
    assert trained.evaluation.metrics["auroc"].low > b["khorana"]["metrics"]["auroc"].value
    assert (
        b["khorana"]["metrics"]["auroc"].value < 0.65
    )  # Khorana in lung cancer (clinical.md §2.1)
    assert (
        trained.evaluation.metrics["auroc"].value >= b["logistic"]["metrics"]["auroc"].value - 0.01
    )
    assert b["vienna_cats"]["rows"] < b["khorana"]["rows"]  # D-dimer and P-selectin rows only
    assert {"khorana", "vienna_cats", "onkotev", "logistic"} == set(b)


def test_the_naive_censored_as_no_pe_model_is_biased_where_this_one_is_not() -> None:
    """Issue 18: with follow-up often cut short (60 % lost by 180 days), a model that counts
    the rows lost before 180 days as "no PE" (a pe_event table, complete follow-up assumed)
    under-estimates the 180-day cumulative incidence; the IPCW model stays within 8 %."""
    from features.contract import TIME_OUTCOMES
    from features.table import validate_table
    from training.cohort import generate, load_effects

    cohort = generate(20_000, 11, load_effects().with_values({("followup", "p_lost_by_180"): 0.6}))
    timed = validate_table(cohort.frame, require_outcome=True)
    pe = cohort.frame["pe_days"].to_numpy(dtype=float)
    naive_frame = cohort.frame.drop(columns=list(TIME_OUTCOMES))[pe != 0].assign(
        pe_event=(pe[pe != 0] <= 180).astype(int)
    )
    naive = validate_table(naive_frame, require_outcome=True)
    fitted = fit(timed, TrainConfig(seed=7))
    biased = fit(naive, TrainConfig(seed=7))
    truth = cohort.truth["new_pe_180d"].to_numpy()
    lost = (cohort.frame["followup_days"] < 180) & cohort.frame["death_days"].isna()
    assert lost.mean() > 0.3  # the censoring the naive model ignores
    mean = {
        "ipcw": fitted.model.new_pe.probability(fitted.x).mean(),
        "naive": biased.model.new_pe.probability(biased.x).mean(),
    }
    assert abs(mean["ipcw"] / truth.mean() - 1) <= 0.08, mean
    assert mean["naive"] / truth[pe != 0].mean() - 1 < -0.2, mean
    assert biased.model.pe_now is None and biased.model.new_pe.horizons == (180,)


def test_base_plus_contributions_is_logit_p(trained, table) -> None:
    model = trained.fitted.model
    x = model.features(take(table.report.columns, trained.fitted.splits.test[:500]))
    for head in model.heads.values():
        for horizon in head.horizons:
            p, expl = head.explain(x, horizon)
            total = expl.base_value + expl.contributions.sum(axis=1)
            assert np.max(np.abs(total - logit(p))) < 1e-6, (head.key, horizon)


def test_treeshap_table_equals_xgboost_on_the_trained_heads(trained, table) -> None:
    """``models.treeshap`` gives the trained boosters' margins and contributions (issue 22)."""
    model = trained.fitted.model
    x = model.features(take(table.report.columns, trained.fitted.splits.test[:2000]))
    for head in model.heads.values():
        lookup = PathTable.of(head.booster, model.feature_names)
        margin, contribs = lookup.margin_and_contributions(x)
        d = xgb.DMatrix(x, feature_names=list(model.feature_names), missing=np.nan)
        want_margin = head.booster.predict(d, output_margin=True)
        np.testing.assert_allclose(margin, want_margin, rtol=1e-5, atol=1e-6, err_msg=head.key)
        want = head.booster.predict(d, pred_contribs=True)
        np.testing.assert_allclose(contribs, want, rtol=1e-5, atol=1e-6, err_msg=head.key)


def _probability(model: PERiskModel, records: list[dict], head: str = "new_pe") -> np.ndarray:
    x = model.features(record_columns([parse_record(r) for r in records]))
    return model.heads[head].probability(x)


def test_higher_d_dimer_never_lowers_risk(trained) -> None:
    model = trained.fitted.model
    grid = [0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 40.0]
    for head in ("new_pe", "pe_now"):
        for patient in (
            base_record(),
            base_record(stage="I", histology="squamous_cell", suspected_pe=True),
            base_record(stage="IV", chemotherapy=True, platelets=420, heart_rate=112),
        ):
            p = _probability(model, [{**patient, "d_dimer": d} for d in grid], head)
            assert np.all(np.diff(p) >= 0), p
    assert p[-1] > p[0]  # PE now: D-dimer is the work-up's marker (the cohort gives it no
    # prognostic effect on a future PE, so the new-PE estimate may stay flat)


def test_textbook_high_risk_vignette_above_low_risk(trained) -> None:
    high = base_record(
        stage="IV",
        histology="adenocarcinoma",
        alk_rearrangement=True,
        chemotherapy=True,
        anti_angiogenic=True,
        days_since_surgery=12,
        prior_vte=True,
        pleural_effusion=True,
        d_dimer=4.2,
        platelets=430,
        hemoglobin=156,
        pao2=62,
        suspected_pe=True,
        heart_rate=112,
        dyspnea=True,
    )
    low = base_record(
        stage="I",
        histology="squamous_cell",
        d_dimer=0.3,
        platelets=240,
        hemoglobin=132,
        chemotherapy=False,
        prior_vte=False,
        suspected_pe=False,
    )
    p_high, p_low = _probability(trained.fitted.model, [high, low])
    assert p_high > 0.2 and p_low < 0.05 and p_high > 5 * p_low
    (now,) = _probability(trained.fitted.model, [high], "pe_now")
    assert now > 0.5  # suspected, with raised D-dimer, tachycardia and hypoxaemia


def test_same_data_and_seed_give_the_same_model(table, trained) -> None:
    again = fit(table.report, TrainConfig(seed=7))
    rows = _test_rows(trained, "new_pe")
    x = again.model.features(take(table.report.columns, rows))
    assert np.array_equal(again.model.new_pe.probability(x), trained.evaluation.p)


def test_run_logs_everything_a_data_scientist_needs(trained, tracking) -> None:
    client = MlflowClient()
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["synthetic"] == "true"
    assert run.data.metrics["test_auroc"] == pytest.approx(
        trained.evaluation.metrics["auroc"].value
    )
    assert {
        "test_auroc_ci_low",
        "test_ici",
        "test_e90",
        "khorana_auroc",
        "onkotev_auroc",
        "logistic_auroc",
        "isotonic_auroc",
        "new_pe_30d_auroc",
        "new_pe_90d_brier",
        "new_pe_180d_khorana_auroc",
        "pe_now_auroc",
        "pe_now_wells_auroc",
        "pe_now_ruleout_years_failure_rate",
    } <= set(run.data.metrics)
    assert run.data.params["seed"] == "7"
    files = {
        a.path
        for folder in ("plots", "evaluation")
        for a in client.list_artifacts(trained.run_id, folder)
    }
    assert {
        "plots/roc.png",
        "plots/calibration.png",
        "plots/decision_curve.png",
        "plots/shap_summary.png",
    } <= files
    assert {
        "evaluation/subgroups.csv",
        "evaluation/decision_curve.csv",
        "evaluation/cumulative_incidence_by_group.csv",
        "evaluation/metrics.json",
    } <= files
    card = client.download_artifacts(trained.run_id, "model_card.md")
    text = Path(card).read_text(encoding="utf-8")
    assert "SYNTHETIC" in text and "TRIPOD" in text and "Khorana" in text
    for words in ("## Outcomes", "competing risk", "inverse probability of censoring", "PE now"):
        assert words in text, words
    assert "Aalen–Johansen" in text and "YEARS" in text and "ONKOTEV" in text
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == trained.fitted.model.info["data_digest"]


def test_registered_champion_predicts_raw_records(trained, table, tracking) -> None:
    import mlflow

    client = MlflowClient()
    mv = client.get_model_version_by_alias("pe-risk", "champion")
    assert str(mv.version) == trained.version and mv.tags["gate_passed"] == "true"
    model = mlflow.pyfunc.load_model("models:/pe-risk@champion")
    rows = trained.fitted.splits.test[:200]
    raw = table.frame.iloc[rows]  # the outcome columns are accepted and ignored
    out = model.predict(raw)
    assert list(out.columns) == ["pe_now", "new_pe_30d", "new_pe_90d", "new_pe_180d"]
    fitted = trained.fitted
    expected = fitted.model.predict_frame(
        fitted.x[rows], table.report.columns["suspected_pe"][rows]
    )
    for name, values in expected.items():
        assert np.allclose(out[name], values, atol=1e-12, equal_nan=True), name
    suspected = table.report.columns["suspected_pe"][rows] == 1
    assert out["pe_now"][~suspected].isna().all() and out["pe_now"][suspected].notna().all()
    bad = raw.head(2).copy()
    bad["stage"] = ["IV", "5"]
    with pytest.raises(Exception, match='row 2: stage="5"'):
        model.predict(bad)


def test_gate_refuses_a_deliberately_bad_model_and_leaves_the_registry(
    tmp_path, table, state, tracking
) -> None:
    from training.track import TrainingData, train_and_track

    client = MlflowClient()
    before = [(v.version, v.aliases) for v in client.search_model_versions("name='pe-risk'")]
    shuffled = table.frame.head(20_000).copy()
    order = np.random.default_rng(1).permutation(len(shuffled))
    for col in ("pe_days", "death_days", "followup_days"):  # the outcomes, kept together
        shuffled[col] = shuffled[col].to_numpy()[order]
    from features.table import validate_table

    noise = TrainingData(
        validate_table(shuffled, require_outcome=True), shuffled, "shuffled", "shuffled labels"
    )
    out = train_and_track(noise, TrainConfig(seed=3), state, n_boot=30)
    assert not out.gate.passed and out.version is None
    failed = [c["check"] for c in out.gate.checks if not c["passed"]]
    assert any("chance" in c for c in failed)  # no better than chance, whatever Khorana does
    after = [(v.version, v.aliases) for v in client.search_model_versions("name='pe-risk'")]
    assert after == before
    assert client.get_run(out.run_id).data.tags["gate_passed"] == "false"


def test_models_and_promote_commands(trained, state, monkeypatch) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    monkeypatch.setenv("PE_RISK_STATE_DIR", str(state.state_dir))
    runner = CliRunner()
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith(str(trained.version)))
    assert "champion" in line and "passed" in line and "synthetic" in line
    res = runner.invoke(app, ["promote", trained.version, "--alias", "staging"])
    assert res.exit_code == 0 and f"pe-risk@staging → version {trained.version}" in res.output
    res = runner.invoke(app, ["promote", "99"])
    assert res.exit_code == 1 and "error:" in res.output


def test_registration_that_fails_midway_is_rolled_back(trained, tracking) -> None:
    from mlflow.exceptions import MlflowException

    from training.registry import register

    client = MlflowClient()
    before = [(v.version, v.aliases) for v in client.search_model_versions("name='pe-risk'")]
    with pytest.raises(MlflowException):  # an invalid tag key fails after the version exists
        register(
            client,
            "pe-risk",
            trained.model_uri,
            trained.run_id,
            trained.fitted.model.info.get("model_id"),
            trained.gate,
            tags={"../not a tag": "x"},
            description="must not survive",
            compared_with=trained.version,
        )
    after = [(v.version, v.aliases) for v in client.search_model_versions("name='pe-risk'")]
    assert after == before


def test_training_prints_no_library_warnings() -> None:
    """Issue 21: training printed MLflow's integer-schema hint (logging the dataset) and numpy's
    "All-NaN slice encountered" (the SHAP plot, for a lab unknown in every test row: here the
    held-out site exported no blood counts)."""
    import warnings

    from features.table import validate_table
    from models.settings import get_settings
    from training.cohort import generate
    from training.track import TrainingData, train_and_track

    df = generate(3000, 5).frame
    labs = ["platelets", "hemoglobin", "leukocytes", "creatinine", "egfr_renal"]
    df.loc[df["site"] == "site-A", labs] = np.nan
    data = TrainingData(validate_table(df, require_outcome=True), df, "test", "test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_and_track(data, TrainConfig(holdout_site="site-A"), get_settings(), n_boot=20)
    said = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not [s for s in said if "integer column" in s], said
    assert not [s for s in said if "All-NaN" in s], said


def test_trees_stay_under_the_cap_and_the_run_logs_it(trained, tracking) -> None:
    """Issue 22: at 50,000 rows both heads stop early, under ``max_trees``."""
    cap = TrainConfig().max_trees
    params = MlflowClient().get_run(trained.run_id).data.params
    assert params["max_trees"] == str(cap)
    for key, head in trained.fitted.heads.items():
        assert head.head.booster.num_boosted_rounds() == head.best_iteration <= cap, key
        assert not head.capped and params[f"{key}_trees_capped"] == "False"
        assert trained.fitted.model.info["trees"][key] == {
            "trees": head.best_iteration,
            "max_trees": cap,
            "capped": False,
        }


def test_the_cap_stops_a_head_and_says_so() -> None:
    """A cap below what early stopping would choose is honoured, and the training output, the
    model's info and the model card say that the cap, not early stopping, stopped it."""
    from dataclasses import replace

    from features.table import validate_table
    from training.card import _tree_cap
    from training.cohort import generate

    said: list[str] = []
    report = validate_table(generate(12_000, 3).frame, require_outcome=True)
    fitted = fit(report, replace(TrainConfig(seed=3), max_trees=15), progress=said.append)
    for key, head in fitted.heads.items():
        assert head.head.booster.num_boosted_rounds() <= 15 and head.capped, key
        assert fitted.model.info["trees"][key]["capped"]
    assert sum("stopped by the cap of 15 (max_trees)" in line for line in said) == len(fitted.heads)
    card = _tree_cap(fitted.model)
    for key in fitted.heads:
        assert f"The {key} booster stopped at the cap of 15 trees" in card
