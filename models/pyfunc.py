"""The registered MLflow model: raw records in, calibrated PE probability out.

Logged as MLflow "models from code" (this file is the model's code; the booster and
its JSON are artefacts), so loading a registered model never unpickles anything.

A data scientist calls::

    model = mlflow.pyfunc.load_model("models:/pe-risk@champion")
    p = model.predict(pd.read_parquet("patients.parquet"))

The input is a table in the data contract as read from CSV or Parquet (no outcome
column needed; an outcome column, ``site`` and ``index_date`` are ignored). Every row
is validated first; a bad row raises ``ValueError`` naming the row, the field, the
value and what is accepted, and nothing is predicted.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.contract import OUTCOME, TABLE_META
from features.table import issue_lines, validate_table
from models.artifact import PERiskModel

ARTIFACT_KEY = "model"
MAX_ISSUES_SHOWN = 20


class PERiskPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame of records) -> ndarray of calibrated probabilities``."""

    def load_context(self, context: Any) -> None:
        self.model = PERiskModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        frame = model_input.drop(columns=[OUTCOME, *TABLE_META], errors="ignore")
        report = validate_table(frame)
        if report.issues:
            shown = issue_lines(
                report.issues, MAX_ISSUES_SHOWN, " (run `pe-risk validate` for all)"
            )
            raise ValueError(
                f"{report.n_bad} of {report.n_rows} rows fail the data contract; "
                "nothing was predicted:\n" + "\n".join(shown)
            )
        return self.model.probability(self.model.features(report.columns))


mlflow.models.set_model(PERiskPyfunc())
