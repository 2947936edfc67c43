"""The model artefact: one XGBoost booster and the JSON that makes it a PE-risk model.

A saved model is a folder of two files in safe formats, never a pickle:

``booster.ubj``  the XGBoost booster (Universal Binary JSON)
``model.json``   everything else the model needs to answer: feature names and order,
                 monotone constraints, the calibration map, the horizon, the risk bands,
                 the metrics, the training-data digest and what it was trained on

Calibration is a logistic map on the booster's margin, ``logit(p) = a·margin + b``
(Platt scaling; design.md, "Model"). Because the map is affine in log-odds, exact
TreeSHAP contributions of the booster scale exactly: ``logit(p) = (a·φ₀ + b) + Σ a·φᵢ``.
So the explanation served beside a probability is exact for that probability, not an
approximation of it (check: base + Σ contributions = logit p, to 1e-6).

This module imports ``features`` (to build the matrix by name) and never ``training``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from scipy.special import expit

from features import thresholds as th
from features.build import feature_matrix

BOOSTER_FILE = "booster.ubj"
META_FILE = "model.json"
FORMAT = "pe-risk-model/1"


@dataclass(frozen=True)
class Calibration:
    """``logit(p) = a·margin + b``, fitted on a calibration split the booster never saw."""

    a: float
    b: float
    method: str = "logistic recalibration of the booster margin (Platt)"
    n_rows: int = 0
    n_events: int = 0

    def log_odds(self, margin: np.ndarray) -> np.ndarray:
        return self.a * margin + self.b


@dataclass(frozen=True)
class RiskBands:
    """Risk categories on the calibrated probability: ``low < low_below ≤ intermediate < high_from ≤ high``.

    Anchored on the 6-month VTE risk of the established score's groups in cancer
    (Mulder FI et al., Haematologica 2019;104(6), 55 cohorts, n=34,555): Khorana 0 → 5.0 %;
    Khorana ≥2 → 8.9 %, the threshold at which trials and guidelines consider
    thromboprophylaxis (Khorana AA et al., Blood 2008;111:4902; clinical.md §1.1).
    """

    low_below: float = th.KHORANA_0_RISK.value
    high_from: float = th.KHORANA_2_RISK.value
    source: str = (
        "6-month VTE risk by Khorana group, Mulder FI et al. Haematologica 2019;104(6): "
        f"score 0 → {100 * th.KHORANA_0_RISK.value:.1f} %; score ≥2 (the usual "
        f"thromboprophylaxis threshold) → {100 * th.KHORANA_2_RISK.value:.1f} %"
    )

    def category(self, p: float) -> str:
        """The band of one probability (the one rule the API, batch path and report share)."""
        if p < self.low_below:
            return "low"
        return "high" if p >= self.high_from else "intermediate"


@dataclass(frozen=True)
class Explanation:
    """Exact contributions on the calibrated log-odds scale for a batch of rows."""

    base_value: np.ndarray  # (n,) calibrated log-odds with every feature at its expectation
    contributions: np.ndarray  # (n, n_features)
    feature_names: tuple[str, ...]
    scale: str = "log-odds"


@dataclass
class PERiskModel:
    """A calibrated, explainable PE-risk model: ``probability`` and ``explain`` of a feature matrix."""

    booster: xgb.Booster
    feature_names: tuple[str, ...]
    calibration: Calibration
    monotone: dict[str, int] = field(default_factory=dict)
    horizon_days: int = 180
    bands: RiskBands = field(default_factory=RiskBands)
    info: dict[str, Any] = field(default_factory=dict)  # metrics, digest, trained_on, ...

    # ------------------------------------------------------------------ prediction
    # Every method below takes the feature matrix ``x`` (rows × ``feature_names``, built by
    # ``features`` from canonical columns by name, never by position), so a caller that
    # needs the features too derives them once.
    def features(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The feature matrix of canonical columns, in ``feature_names`` order."""
        return feature_matrix(dict(columns), self.feature_names)

    def _dmatrix(self, x: np.ndarray) -> xgb.DMatrix:
        return xgb.DMatrix(x, feature_names=list(self.feature_names), missing=np.nan)

    def margin(self, x: np.ndarray) -> np.ndarray:
        """The booster's uncalibrated margin (float64)."""
        return self.booster.predict(self._dmatrix(x), output_margin=True).astype(np.float64)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Calibrated P(PE within ``horizon_days``) for every row."""
        return expit(self.calibration.log_odds(self.margin(x)))

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, Explanation]:
        """Probabilities and their exact TreeSHAP contributions on the calibrated log-odds scale.

        XGBoost's ``pred_contribs`` is exact TreeSHAP (path-dependent, as ``shap.TreeExplainer``
        without background data; stack.md §3); its last column is the bias. Scaling by the
        calibration slope ``a`` and shifting the bias by ``b`` keeps the sum exact.
        """
        contribs = self.booster.predict(self._dmatrix(x), pred_contribs=True).astype(np.float64)
        a, b = self.calibration.a, self.calibration.b
        phi = a * contribs[:, :-1]
        base = a * contribs[:, -1] + b
        p = expit(base + phi.sum(axis=1))
        return p, Explanation(base, phi, self.feature_names)

    def with_threads(self, nthread: int) -> PERiskModel:
        """A copy whose booster predicts with ``nthread`` threads (batches; loading gives 1)."""
        booster = self.booster.copy()
        booster.set_param({"nthread": nthread})
        return replace(self, booster=booster)

    def category(self, p: float) -> str:
        return self.bands.category(p)

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "feature_names": list(self.feature_names),
            "monotone_constraints": {n: int(self.monotone.get(n, 0)) for n in self.feature_names},
            "calibration": asdict(self.calibration),
            "horizon_days": self.horizon_days,
            "risk_bands": asdict(self.bands),
            **self.info,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``booster.ubj`` and ``model.json`` into ``folder`` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(folder / BOOSTER_FILE)
        (folder / META_FILE).write_text(
            json.dumps(self.metadata(), indent=2, default=_json_default), encoding="utf-8"
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> PERiskModel:
        """Load a saved model; refuses a folder whose metadata does not match its booster."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}: not a {FORMAT} model (format={meta.get('format')!r})")
        booster = xgb.Booster()
        booster.load_model(folder / BOOSTER_FILE)
        names = tuple(meta.pop("feature_names"))
        if booster.feature_names is not None and tuple(booster.feature_names) != names:
            raise ValueError(f"{folder}: the booster's features differ from {META_FILE}'s")
        booster.set_param({"nthread": 1})  # one row at a time is the serving case
        known = ("format", "monotone_constraints", "calibration", "horizon_days", "risk_bands")
        return cls(
            booster=booster,
            feature_names=names,
            calibration=Calibration(**meta["calibration"]),
            monotone=meta["monotone_constraints"],
            horizon_days=int(meta["horizon_days"]),
            bands=RiskBands(**meta["risk_bands"]),
            info={k: v for k, v in meta.items() if k not in known},
        )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
