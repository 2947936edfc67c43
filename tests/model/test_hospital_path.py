"""The data scientist's path on a hospital's own export (issue 21), on a real SQLite MLflow
store: an export with its own column names, codes, unit spellings and columns pe-risk does
not read → column map → validate → train (the synthetic champion does not block the first
model trained on real data) → `models --all` (a refused run, and why) → `evaluate` on a
second site's export, whose PE rate is half (external validation: an MLflow evaluation run,
the registry untouched) → `recalibrate` on it (a new champion through the gate) → the
champion loaded with the README's own snippet → predictions on the raw export, lab cells as
unit dicts."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from training.cli import app
from training.cohort import generate, load_effects
from training.registry import champion_version, promote

pytestmark = pytest.mark.model

README = Path(__file__).resolve().parents[2] / "README.md"
STAGES = {"I": "IB", "II": "IIA", "III": "IIIA", "IV": "IVB"}
MAP = """\
columns:
  sex_code: sex
  tnm_stage: stage
  ddimer: d_dimer
  ddimer_units: d_dimer_unit
values:
  sex: {M: male, F: female}
  stage: {IA: I, IB: I, IIA: II, IIB: II, IIIA: III, IIIB: III, IVA: IV, IVB: IV}
units:
  d_dimer: {"ng/mL FEU": "ng/mL{FEU}"}
ignore: [mrn_hash]
"""


def _export(frame: pd.DataFrame) -> pd.DataFrame:
    """The cohort as a hospital exports it: its own names, codes and units, and extras."""
    out = frame.drop(columns=["patient_id"]).rename(
        columns={"sex": "sex_code", "stage": "tnm_stage", "d_dimer": "ddimer"}
    )
    out["sex_code"] = out["sex_code"].map({"male": "M", "female": "F"})
    out["tnm_stage"] = out["tnm_stage"].map(STAGES)
    out["ddimer"] = out["ddimer"] * 1000  # mg/L FEU → ng/mL FEU
    out["ddimer_units"] = np.where(out["ddimer"].notna(), "ng/mL FEU", None)
    out.insert(0, "mrn_hash", [f"h{i:06d}" for i in range(len(out))])
    out["discharge_ward"] = "ward 7"
    return out


def _readme_snippet() -> str:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block, "the README's pyfunc snippet"
    return block.group(1)


def test_a_hospital_export_from_map_to_predictions(
    table, trained, state, tracking, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("PE_RISK_STATE_DIR", str(state.state_dir))
    runner = CliRunner()
    export = _export(table.frame)
    path = tmp_path / "export.csv"
    export.to_csv(path, index=False)
    cmap = tmp_path / "export-map.yaml"
    cmap.write_text(MAP)

    # without the map: the export's own names are named, not 50,000 row errors each
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 1
    assert "'ddimer' is not a column of the data contract; did you mean 'd_dimer'?" in res.output
    assert "required column 'sex' is missing" in res.output
    # with it: every row valid; the column it does not name is a notice, not an error
    res = runner.invoke(app, ["validate", str(path), "--map", str(cmap)])
    assert res.exit_code == 0, res.output
    assert f"{len(export)} valid, 0 invalid" in res.output
    assert "1 column not in the data contract is not read: discharge_ward" in res.output

    client = MlflowClient()
    synthetic = champion_version(client, "pe-risk")
    assert synthetic.tags["synthetic"] == "true"
    try:
        res = runner.invoke(
            app, ["train", "--data", str(path), "--map", str(cmap), "--bootstrap", "20"]
        )
        assert res.exit_code == 0, res.output
        assert "trained on synthetic data: a model trained on real data is not required" in (
            res.output
        )
        champion = champion_version(client, "pe-risk")
        assert champion.version != synthetic.version and champion.tags["synthetic"] == "false"
        run = client.get_run(champion.run_id)
        checks = (
            run.data.tags["gate_passed"],
            mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/column_map.json"),
        )
        assert checks[0] == "true" and checks[1]["columns"]["tnm_stage"] == "stage"

        # a gate that cannot be met: the run is refused, and `models --all` says why
        res = runner.invoke(
            app,
            ["train", "--data", str(path), "--map", str(cmap), "--bootstrap", "20",
             "--min-slope", "3", "--max-slope", "4"],
        )  # fmt: skip
        assert res.exit_code == 3, res.output
        listing = runner.invoke(app, ["models", "--all"]).output
        assert (
            "refused" in listing and "calibration slope" in listing and "in [3.0, 4.0]" in listing
        )
        assert "models --all" in runner.invoke(app, ["models"]).output

        _second_site(runner, client, tmp_path, champion)
        champion = champion_version(client, "pe-risk")  # the recalibrated model

        # the README's snippet, verbatim, loads the champion from pe-risk's store and
        # scores the raw export (read through the model's own map), lab cells as dicts
        monkeypatch.chdir(tmp_path)
        raw = export.head(200).copy()
        raw["ddimer"] = [
            {"value": v, "unit": "ng/mL FEU"} if v == v else None for v in raw["ddimer"]
        ]
        raw.drop(columns=["ddimer_units"]).to_parquet(tmp_path / "patients.parquet")
        namespace: dict = {}
        exec(_readme_snippet(), namespace)  # the README.s own code
        got = namespace["p"]
        assert not (tmp_path / "mlflow.db").exists()  # no stray store
        model = mlflow.pyfunc.load_model(f"models:/pe-risk/{champion.version}")
        want = model.predict(export.head(200))
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
        assert got["new_pe_180d"].between(0, 1).all()
        # the same rows as the contract's table: the map-trained model reads them alike
        canonical = model.predict(table.frame.head(200))
        pd.testing.assert_frame_equal(canonical.reset_index(drop=True), want.reset_index(drop=True))
        # no schema drops a misspelt predictor before the model sees it
        with pytest.raises(Exception, match="did you mean 'd_dimer'"):
            model.predict(table.frame.head(5).rename(columns={"d_dimer": "D_Dimer"}))
    finally:
        promote(client, "pe-risk", str(synthetic.version))  # the session's champion again


def _second_site(runner: CliRunner, client: MlflowClient, tmp_path: Path, champion) -> None:
    """`evaluate`, then `recalibrate`, on another site's export in the same format, where PE
    is half as common (the generator's incidence 8 % → 4 %): the model ranks as well and
    over-predicts, which recalibration corrects without touching the trees."""
    fx = load_effects().with_values({("incidence", "target"): 0.04})
    site_b = tmp_path / "site_b.csv"
    _export(generate(20_000, 11, fx).frame).to_csv(site_b, index=False)
    before = {v.version for v in client.search_model_versions("name = 'pe-risk'")}

    # evaluation: no --map, the model reads the export through its own column map
    res = runner.invoke(app, ["evaluate", "--data", str(site_b), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert f"pe-risk/{champion.version}'s own column map" in res.output
    assert "FAIL  calibration intercept: -" in res.output  # over-predicts: negative intercept
    assert f"pe-risk recalibrate --model pe-risk/{champion.version}" in res.output
    assert {v.version for v in client.search_model_versions("name = 'pe-risk'")} == before
    assert champion_version(client, "pe-risk").version == champion.version
    run_id = re.search(r"evaluation run ([0-9a-f]{32})", res.output).group(1)
    run = client.get_run(run_id)
    assert run.data.tags["pe_risk.kind"] == "evaluation"
    assert run.data.tags["pe_risk.model"] == f"pe-risk/{champion.version}"
    assert "gate_passed" not in run.data.tags  # not a refused training run
    assert run.data.metrics["test_calibration_intercept"] < -0.3
    assert run.data.metrics["test_auroc"] > 0.65
    assert run.inputs.dataset_inputs[0].tags[0].value == "evaluation"
    logged = {a.path for a in client.list_artifacts(run_id)}
    assert {"evaluation_report.md", "plots", "evaluation"} <= logged
    page = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation_report.md")
    assert f"pe-risk/{champion.version}" in page and "### Clinical utility" in page
    assert "### Subgroups" in page and "## PE now" in page
    listing = runner.invoke(app, ["models", "--all", "--json"]).output
    assert run_id not in listing

    # recalibration (intercept and slope) on 70 % of the rows, tested on the other 30 %
    res = runner.invoke(
        app,
        ["recalibrate", "--data", str(site_b), "--method", "slope", "--bootstrap", "20"],
    )
    assert res.exit_code == 0, res.output
    new = champion_version(client, "pe-risk")
    assert new.version != champion.version
    assert new.tags["synthetic"] == "false"
    run = client.get_run(new.run_id)
    assert run.data.tags["recalibrated_from"] == str(champion.version)
    held_out = run.data.metrics["test_calibration_intercept"]
    assert abs(held_out) <= 0.1, held_out
    change = mlflow.artifacts.load_dict(f"runs:/{new.run_id}/recalibration.json")
    assert change["method"] == "slope" and change["from_version"] == str(champion.version)
    assert change["heads"]["new_pe"]["before"]["calibration_intercept"] < -0.3
    assert change["heads"]["new_pe"]["after"]["calibration_intercept"] == pytest.approx(
        held_out, abs=1e-6
    )
    card = mlflow.artifacts.load_text(f"runs:/{new.run_id}/model_card.md")
    assert f"**Recalibrated** from version {champion.version}" in card
