"""The registered MLflow model: raw records in, the two questions' calibrated estimates out.

Logged as MLflow "models from code" (this file is the model's code; the boosters and
their JSON are artefacts), so loading a registered model never unpickles anything.

A data scientist calls::

    model = mlflow.pyfunc.load_model("models:/pe-risk@champion")
    p = model.predict(pd.read_parquet("patients.parquet"))

and gets one row per record with the columns

``pe_now``       P(PE found by the work-up at this assessment); NaN where PE is not
                 suspected (``suspected_pe`` not true) or the model has no PE-now head
``new_pe_30d``   cumulative incidence of a new PE by 30 days (death competing), and
``new_pe_90d``   likewise by 90 and 180 days; never decreasing with the horizon
``new_pe_180d``  (a model trained on ``pe_event`` only has ``new_pe_180d`` alone)

The input is a table in the data contract as read from CSV or Parquet (no outcome
column needed; outcome columns, ``site`` and ``index_date`` are ignored), or the
hospital's own export when the model was trained with a column map (``--map``): the
model keeps the map and reads the export the same way. A lab cell may hold the record's
``{"value": 1800, "unit": "ng/mL{FEU}"}``, or a ``<lab>_unit`` column give its unit;
columns the contract does not name are not read. Every row is validated first; a bad
row raises ``ValueError`` naming the row, the field, the value and what is accepted, and
nothing is predicted.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from features.contract import OUTCOME, TABLE_META, TIME_OUTCOMES
from features.mapping import ColumnMap
from features.table import issue_lines, validate_table
from models.artifact import PERiskModel

ARTIFACT_KEY = "model"
MAX_ISSUES_SHOWN = 20


class PERiskPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame of records) -> DataFrame of pe_now, new_pe_<h>d``."""

    def load_context(self, context: Any) -> None:
        self.model = PERiskModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        cmap = self.model.info.get("column_map")  # the export read as in training
        frame = ColumnMap.from_dict(cmap).apply(model_input) if cmap else model_input
        frame = frame.drop(columns=[OUTCOME, *TIME_OUTCOMES, *TABLE_META], errors="ignore")
        report = validate_table(frame)
        if report.issues:
            shown = issue_lines(
                report.issues, MAX_ISSUES_SHOWN, " (run `pe-risk validate` for all)"
            )
            raise ValueError(
                f"{report.n_bad} of {report.n_rows} rows fail the data contract; "
                "nothing was predicted:\n" + "\n".join(shown)
            )
        x = self.model.features(report.columns)
        out = self.model.predict_frame(x, report.columns["suspected_pe"])
        return pd.DataFrame(out, index=model_input.index, columns=self.model.columns())


mlflow.models.set_model(PERiskPyfunc())
