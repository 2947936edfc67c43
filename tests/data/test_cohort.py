"""The synthetic cohort reproduces the review within sampling error (data tier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from features import thresholds as th
from features.contract import DEATH_DAYS, FOLLOWUP_DAYS, HORIZONS_DAYS, OUTCOME, PE_DAYS
from features.table import read_table, validate_table
from training.cli import app
from training.cohort import (
    generate,
    load_effects,
    read_meta,
    read_truth,
    write,
)
from training.cohort_checks import cumulative_incidence, describe, pe_outcome
from training.cohort_times import draw_pe_day, hazard_pieces, incidence_all

pytestmark = pytest.mark.data

N, SEED = 50_000, 7
NEW = [f"new_pe_{h}d" for h in HORIZONS_DAYS]


@pytest.fixture(scope="module")
def cohort():
    return generate(N, SEED)


@pytest.fixture(scope="module")
def checks(cohort):
    return {c.name: c for c in describe(cohort.frame, cohort.truth)}


def _new_pe_incidence(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aalen–Johansen incidence of a new PE among rows without PE now, and those rows."""
    later = frame[PE_DAYS].to_numpy() != 0
    est, se = cumulative_incidence(*(a[later] for a in pe_outcome(frame)))
    return est, se, later


def test_every_published_figure_is_reproduced(checks) -> None:
    failed = [f"{c.name}: {c.value:.3f} vs {c.published}" for c in checks.values() if not c.ok]
    assert not failed


def test_stage_odds_ratio_within_sampling_error(checks) -> None:
    c = checks["OR stage III–IV vs I–II"]
    assert c.low <= 2.97 <= c.high


def test_frame_has_times_not_pe_event(cohort) -> None:
    f, t = cohort.frame, cohort.truth
    assert OUTCOME not in f.columns
    assert {PE_DAYS, DEATH_DAYS, FOLLOWUP_DAYS, "site", "index_date"} <= set(f.columns)
    assert list(t.columns) == [
        "row",
        "pe_at_index",
        "pe_now_probability",
        "pe_now_observable",
        *NEW,
        "base_probability",
    ]
    for name in (PE_DAYS, DEATH_DAYS, FOLLOWUP_DAYS):
        v = f[name].dropna().to_numpy()
        assert (v == np.round(v)).all(), name  # whole days


def test_times_are_consistent(cohort) -> None:
    f, t = cohort.frame, cohort.truth
    pe, death, follow = (f[c].to_numpy() for c in (PE_DAYS, DEATH_DAYS, FOLLOWUP_DAYS))
    assert (follow >= 1).all() and (follow <= 365).all()
    has_pe, dead = ~np.isnan(pe), ~np.isnan(death)
    assert (pe[has_pe] <= follow[has_pe]).all()
    assert (death[dead] == follow[dead]).all()  # follow-up ends at death
    assert not (pe[has_pe & dead] > death[has_pe & dead]).any()  # no PE after death
    assert np.array_equal(pe == 0, t["pe_at_index"].to_numpy())
    # the data cut-off: follow-up never runs past it
    cutoff = np.datetime64(cohort.meta["data_cutoff"])
    days_left = (cutoff - f["index_date"].to_numpy(dtype="datetime64[D]")).astype(float)
    assert (follow <= days_left).all()
    assert 0.01 < (days_left < 180).mean() < 0.08  # a few % with under 180 days


def test_true_incidence_is_a_cumulative_incidence(cohort) -> None:
    t = cohort.truth
    f30, f90, f180 = (t[c].to_numpy() for c in NEW)
    assert (f30 >= 0).all() and (f30 <= f90).all() and (f90 <= f180).all() and (f180 < 1).all()
    p_now = t["pe_now_probability"].to_numpy()
    assert ((p_now >= 0) & (p_now <= 1)).all()
    base = t["base_probability"].to_numpy()
    assert abs(base.mean() - load_effects()("incidence", "target")) < 1e-6  # calibrated in sample


def test_new_pe_truth_agrees_with_aalen_johansen(cohort) -> None:
    """The observed cumulative incidence of a new PE (death competing, censoring handled)
    matches the truth's mean at every horizon, and within deciles of the truth."""
    f, t = cohort.frame, cohort.truth
    est, se, later = _new_pe_incidence(f)
    for i, name in enumerate(NEW):
        assert abs(est[i] - t.loc[later, name].mean()) < 3.5 * se[i], name
    deciles = pd.qcut(t["new_pe_180d"], 10, labels=False).to_numpy()
    for d in range(10):
        rows = later & (deciles == d)
        e, s = cumulative_incidence(*(a[rows] for a in pe_outcome(f)), (180,))
        assert abs(e[0] - t.loc[rows, "new_pe_180d"].mean()) < 4 * s[0] + 2e-3, d


def test_pe_now_truth_is_calibrated(cohort) -> None:
    now = cohort.frame[PE_DAYS].to_numpy() == 0
    p = cohort.truth["pe_now_probability"].to_numpy()
    assert abs(p.mean() - now.mean()) < 3 * np.sqrt(now.mean() * (1 - now.mean()) / len(p))
    deciles = pd.qcut(p, 10, labels=False)
    for d in range(10):
        m = deciles == d
        se = np.sqrt(p[m].mean() * (1 - p[m].mean()) / m.sum())
        assert abs(now[m].mean() - p[m].mean()) < 4 * se + 1e-3, d


def test_a_third_of_stage_iv_dead_by_180_days(cohort) -> None:
    f = cohort.frame
    death, follow = f[DEATH_DAYS].to_numpy(), f[FOLLOWUP_DAYS].to_numpy()
    dead = ~np.isnan(death)
    by_stage = {}
    for stage in ("I", "II", "III", "IV"):
        rows = (f["stage"] == stage).to_numpy()
        est, se = cumulative_incidence(
            np.where(dead, death, follow)[rows], dead[rows].astype(int), (180,)
        )
        by_stage[stage] = est[0]
        target = load_effects()("death", f"p_by_180d_stage_{stage}")
        assert abs(est[0] - target) < 3.5 * se[0], stage
    assert by_stage["IV"] > by_stage["III"] > by_stage["II"] > by_stage["I"]
    assert 0.28 <= by_stage["IV"] <= 0.38


def test_month_one_peak_after_surgery(cohort) -> None:
    """The hazard of a new PE is highest in the first month after an operation: among rows
    operated in the week before the index date, month one holds more new PEs per day than
    months 2–3, and those more than months 4–6; without surgery the rate is even."""
    f, t = cohort.frame, cohort.truth
    days = f["days_since_surgery"].to_numpy(dtype=float, na_value=np.nan)
    for rows, peak in ((days <= 7, True), (np.isnan(days) & f["stage"].eq("I").to_numpy(), False)):
        f30, f90, f180 = (t.loc[rows, c].mean() for c in NEW)
        rates = np.array([f30 / 30, (f90 - f30) / 60, (f180 - f90) / 90])
        if peak:
            assert rates[0] > 1.5 * rates[1] and rates[1] > rates[2]
        else:
            assert rates.max() < 1.2 * rates.min()  # only death thins the rate


def test_daily_grid_sums_are_exact() -> None:
    """The geometric sums over each constant piece equal the plain sum over days 1..365."""
    rng = np.random.default_rng(0)
    ors = load_effects().odds_ratios()
    n = 400
    d = np.where(rng.random(n) < 0.7, rng.integers(0, 240, n), np.nan).astype(float)
    rate = np.exp(rng.normal(-8, 1.5, n))
    death = np.exp(rng.normal(-6, 1.5, n))
    timeline = hazard_pieces(d, ors)
    fast = incidence_all(rate, death, timeline, HORIZONS_DAYS)

    alive = np.ones(n)  # alive without PE at the start of the day
    plain = np.zeros(n)
    out = {}
    for day in range(1, 181):
        s = d + day
        factor = np.select(
            [s <= th.MONTH_1.value, s <= th.MONTHS_3.value, s <= th.MONTHS_6.value],
            [ors["surgery_0_30d"], ors["surgery_31_91d"], ors["surgery_92_182d"]],
            1.0,
        )
        c = rate * factor
        plain += alive * -np.expm1(-c)
        alive *= np.exp(-c - death)
        out[day] = plain.copy()
    for i, h in enumerate(HORIZONS_DAYS):
        np.testing.assert_allclose(fast[:, i], out[h], rtol=1e-9, atol=1e-13)


def test_latent_times_follow_the_hazards() -> None:
    """Drawing the latent PE and death days by inversion reproduces the true cumulative
    incidence (first event wins, a PE on the day of death counts) for an operated person."""
    ors = load_effects().odds_ratios()
    m = 200_000
    d = np.full(m, 3.0)
    rate, death = np.full(m, 4e-4), np.full(m, 2e-3)
    timeline = hazard_pieces(d, ors)
    truth = incidence_all(rate[:1], death[:1], hazard_pieces(d[:1], ors), HORIZONS_DAYS)[0]
    rng = np.random.default_rng(1)
    pe_day = draw_pe_day(rate, rng.standard_exponential(m), timeline)
    death_day = np.maximum(np.ceil(rng.standard_exponential(m) / death), 1)
    for i, h in enumerate(HORIZONS_DAYS):
        seen = ((pe_day <= h) & (pe_day <= death_day)).mean()
        assert abs(seen - truth[i]) < 4 * np.sqrt(truth[i] * (1 - truth[i]) / m), h


def test_heavier_censoring_through_the_effect_table() -> None:
    """Only follow-up changes with the loss to follow-up; the truth, the clinical values and
    the latent times do not, and Aalen–Johansen still recovers the truth."""
    n, seed = 20_000, 5
    fx = load_effects()
    heavy_fx = fx.with_values({("followup", "p_lost_by_180"): 0.6})
    base, heavy = generate(n, seed), generate(n, seed, heavy_fx)
    assert heavy.meta["effects_digest"] != base.meta["effects_digest"]
    pd.testing.assert_frame_equal(base.truth, heavy.truth)
    clinical = [c for c in base.frame.columns if c not in (PE_DAYS, DEATH_DAYS, FOLLOWUP_DAYS)]
    pd.testing.assert_frame_equal(base.frame[clinical], heavy.frame[clinical])
    b, h = base.frame, heavy.frame
    assert (h[FOLLOWUP_DAYS] <= b[FOLLOWUP_DAYS]).all()
    kept = h[PE_DAYS].notna()
    assert (h.loc[kept, PE_DAYS] == b.loc[kept, PE_DAYS]).all() and kept.sum() < b[
        PE_DAYS
    ].notna().sum()
    short = ((h[FOLLOWUP_DAYS] < 180) & ~(h[DEATH_DAYS] < 180)).mean()
    assert short > 0.45
    est, se, later = _new_pe_incidence(h)
    true_180 = heavy.truth.loc[later, "new_pe_180d"].mean()
    assert abs(est[2] - true_180) < 3.5 * se[2]
    naive = ((h[PE_DAYS] > 0) & (h[PE_DAYS] <= 180))[later].mean()
    assert naive < true_180 - 4 * se[2]  # ignoring censoring would underestimate
    with pytest.raises(KeyError, match="not rows of the effect table"):
        fx.with_values({("followup", "p_lost"): 0.1})


def test_oracle_beats_every_clinical_score(cohort, checks) -> None:
    oracle = checks["oracle AUROC, new PE by 180 days"].value
    assert oracle > checks["Khorana AUROC, new PE by 180 days"].value + 0.15
    f, t = cohort.frame, cohort.truth
    suspected = f["suspected_pe"].to_numpy(dtype=bool, na_value=False)
    now = f[PE_DAYS].to_numpy()[suspected] == 0
    base = roc_auc_score(now, t["base_probability"][suspected])
    assert base < checks["oracle AUROC, PE now (suspected)"].value  # findings add information


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
    now = f[PE_DAYS] == 0
    assert dd[now].median() > dd[~now].median()
    # a PE that has not happened yet shifts nothing (stage for stage)
    for stage in (adv, ~adv):
        later, none = dd[stage & (f[PE_DAYS] > 0)].dropna(), dd[stage & f[PE_DAYS].isna()].dropna()
        se = np.sqrt(later.var() / len(later) + none.var() / len(none))
        assert abs(later.mean() - none.mean()) < 4 * se


def test_signs_more_frequent_with_pe_among_suspected(cohort) -> None:
    f = cohort.frame[cohort.frame["suspected_pe"] == True]  # noqa: E712
    now = f[PE_DAYS] == 0
    for name in ("dvt_signs", "pe_most_likely"):
        assert f.loc[now, name].mean() > f.loc[~now, name].mean(), name


def test_deterministic_for_a_seed() -> None:
    a, b, c = generate(3000, 11), generate(3000, 11), generate(3000, 12)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.frame[FOLLOWUP_DAYS].equals(c.frame[FOLLOWUP_DAYS])


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
    assert read_meta(path)["horizons_days"] == list(HORIZONS_DAYS)
    truth = read_truth(path)
    table = read_table(path)
    assert "pe_now_probability" in truth.columns and "pe_now_probability" not in table.columns
    np.testing.assert_array_equal(
        pd.to_numeric(table[FOLLOWUP_DAYS]).to_numpy(), c.frame[FOLLOWUP_DAYS].to_numpy()
    )


def test_cli_generates_describes_and_validates(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "c.parquet"
    res = runner.invoke(
        app, ["cohort", "--n", "20000", "--seed", "7", "--out", str(out), "--describe"]
    )
    assert res.exit_code == 0, res.output
    assert "OR stage III–IV vs I–II" in res.output and "Khorana AUROC" in res.output
    assert "PE now" in res.output
    assert runner.invoke(app, ["validate", str(out), "--require-outcome"]).exit_code == 0
    res = runner.invoke(app, ["cohort", "--describe-only", str(out)])
    assert res.exit_code == 0 and "oracle AUROC" in res.output, res.output


def test_effects_table_is_the_single_source() -> None:
    fx = load_effects()
    for (factor, parameter), (value, source) in fx.rows.items():
        assert source.strip(), f"{factor}/{parameter} has no source"
        assert value > 0 or parameter.startswith("shift"), (factor, parameter)
    assert fx("stage_iii_iv", "target_marginal_or") == 2.97
    for stage in ("I", "II", "III", "IV"):
        assert 0 < fx("death", f"p_by_180d_stage_{stage}") < 1
    assert 0 <= fx("followup", "p_lost_by_180") < 1
