"""The synthetic cohort reproduces the review within sampling error (data tier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from features.table import read_table, validate_table
from training.cli import app
from training.cohort import generate, load_effects, read_meta, read_truth, write
from training.cohort_checks import describe

pytestmark = pytest.mark.data

N, SEED = 50_000, 7


@pytest.fixture(scope="module")
def cohort():
    return generate(N, SEED)


@pytest.fixture(scope="module")
def checks(cohort):
    return {c.name: c for c in describe(cohort.frame, cohort.truth)}


def test_every_published_figure_is_reproduced(checks) -> None:
    failed = [f"{c.name}: {c.value:.3f} vs {c.published}" for c in checks.values() if not c.ok]
    assert not failed


def test_stage_odds_ratio_within_sampling_error(checks) -> None:
    c = checks["OR stage III–IV vs I–II"]
    assert c.low <= 2.97 <= c.high


def test_incidence_and_truth_agree(cohort) -> None:
    y = cohort.frame["pe_event"].to_numpy()
    p = cohort.truth["true_probability"].to_numpy()
    assert 0.05 <= y.mean() <= 0.12
    assert abs(p.mean() - y.mean()) < 3 * np.sqrt(y.mean() * (1 - y.mean()) / len(y))
    # calibration against truth: observed rate in deciles of p_true matches mean p_true
    deciles = pd.qcut(p, 10, labels=False)
    for d in range(10):
        m = deciles == d
        se = np.sqrt(p[m].mean() * (1 - p[m].mean()) / m.sum())
        assert abs(y[m].mean() - p[m].mean()) < 4 * se + 1e-3


def test_oracle_beats_every_clinical_score(cohort, checks) -> None:
    oracle = checks["oracle AUROC (true probability)"].value
    assert oracle > checks["Khorana AUROC"].value + 0.15
    base = roc_auc_score(cohort.frame["pe_event"], cohort.truth["base_probability"])
    assert base < oracle  # findings at the index date add information


def test_structure_not_coin_flips(cohort) -> None:
    f = cohort.frame
    never = f["smoking_status"] == "never"
    adeno_never = (f.loc[never, "histology"] == "adenocarcinoma").mean()
    adeno_smoker = (f.loc[f["smoking_status"] == "current", "histology"] == "adenocarcinoma").mean()
    assert adeno_never > adeno_smoker + 0.2
    tested = f["egfr_mutation"].notna()
    assert tested[f["histology"] == "adenocarcinoma"].mean() > 0.8
    assert tested[f["histology"] == "small_cell"].mean() < 0.1
    assert (f.loc[f["egfr_tki"] == True, "egfr_mutation"] == True).all()  # noqa: E712
    surg = f["days_since_surgery"].notna()
    assert surg[f["stage"].isin(["I", "II"])].mean() > 0.5 > surg[f["stage"] == "IV"].mean()
    assert f.loc[f["anti_angiogenic"] == True, "histology"].ne("squamous_cell").all()  # noqa: E712
    chemo = f["chemotherapy"] == True  # noqa: E712
    assert chemo[f["stage"].isin(["III", "IV"])].mean() > chemo[f["stage"] == "I"].mean() + 0.3


def test_missingness_like_real_records(cohort) -> None:
    f = cohort.frame
    susp = f["suspected_pe"] == True  # noqa: E712
    for name in ("d_dimer", "troponin", "nt_probnp", "rv_lv_ratio"):
        measured = f[name].notna()
        assert measured[susp].mean() > measured[~susp].mean() + 0.3, name
    dd = np.log(f["d_dimer"])
    adv = f["stage"].isin(["III", "IV"])
    assert dd[adv].median() > dd[~adv].median()
    assert dd[f["pe_event"] == 1].median() > dd[f["pe_event"] == 0].median()


def test_signs_more_frequent_with_pe_among_suspected(cohort) -> None:
    f = cohort.frame[cohort.frame["suspected_pe"] == True]  # noqa: E712
    for name in ("dvt_signs", "pe_most_likely"):
        rate = f.groupby("pe_event")[name].mean()
        assert rate[1] > rate[0], name


def test_deterministic_for_a_seed() -> None:
    a, b, c = generate(3000, 11), generate(3000, 11), generate(3000, 12)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.frame["pe_event"].equals(c.frame["pe_event"])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_written_cohort_validates_and_is_labelled_synthetic(tmp_path: Path, suffix: str) -> None:
    c = generate(5000, 3)
    path = tmp_path / f"cohort{suffix}"
    write(c, path)
    report = validate_table(read_table(path), require_outcome=True)
    assert report.ok, report.issues[:5]
    assert report.n_rows == 5000
    assert read_meta(path)["synthetic"] is True
    assert read_meta(path)["effects_digest"] == load_effects().digest
    truth = read_truth(path)
    assert (
        "true_probability" in truth.columns and "true_probability" not in read_table(path).columns
    )


def test_cli_generates_describes_and_validates(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "c.parquet"
    res = runner.invoke(
        app, ["cohort", "--n", "20000", "--seed", "7", "--out", str(out), "--describe"]
    )
    assert res.exit_code == 0, res.output
    assert "OR stage III–IV vs I–II" in res.output and "Khorana AUROC" in res.output
    assert runner.invoke(app, ["validate", str(out), "--require-outcome"]).exit_code == 0
    res = runner.invoke(app, ["cohort", "--describe-only", str(out)])
    assert res.exit_code == 0 and "oracle AUROC" in res.output


def test_effects_table_is_the_single_source() -> None:
    fx = load_effects()
    for (factor, parameter), (value, source) in fx.rows.items():
        assert source.strip(), f"{factor}/{parameter} has no source"
        assert value > 0 or parameter.startswith("shift"), (factor, parameter)
    assert fx("stage_iii_iv", "target_marginal_or") == 2.97
