"""The model artefact: two XGBoost boosters and the JSON that makes them a PE-risk model.

The model answers two questions that lead to different actions (design.md, "What it is"),
each with its own booster and calibration, a *head*:

``pe_now``  only when PE is suspected: P(the work-up at this assessment finds a PE)
``new_pe``  the cumulative incidence of a new PE by 30, 90 and 180 days among those without
            PE now, death competing and censored follow-up weighted (``training.survival``)

A saved model is a folder of safe files, never a pickle: one booster per head
(``<head>.ubj``, XGBoost Universal Binary JSON) and ``model.json`` with everything else the
model needs to answer: feature names and order, per head its monotone constraints,
calibration map, horizons and risk bands, and the metrics, the training-data digest and
what it was trained on. A table with only ``pe_event`` (no times) trains ``new_pe`` at 180
days alone and no ``pe_now`` (the two cannot be told apart without ``pe_days``).

Calibration is a logistic map on a head's margin, ``logit(p_h) = a·margin + b_h`` (Platt
scaling on out-of-fold margins; design.md, "Model"), with one slope ``a`` and one intercept
per horizon
``b_30 ≤ b_90 ≤ b_180``: so no estimate ever decreases with the horizon. Because the map is
affine in log-odds, exact TreeSHAP contributions of the booster scale exactly:
``logit(p_h) = (a·φ₀ + b_h) + Σ a·φᵢ``. So the explanation served beside each probability
is exact for that probability (check: base + Σ contributions = logit p, to 1e-6); at every
horizon the contributions are the same and only the base differs.

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
from features.contract import new_pe_column
from models.treeshap import PathTable

META_FILE = "model.json"
FORMAT = "pe-risk-model/2"
PE_NOW, NEW_PE = "pe_now", "new_pe"
HEADS = (PE_NOW, NEW_PE)


def booster_file(head: str) -> str:
    return f"{head}.ubj"


@dataclass(frozen=True)
class Calibration:
    """``logit(p_h) = a·margin + b_h``, fitted on out-of-fold margins (``training.train.
    cross_fitted``): one slope, one intercept per horizon (non-decreasing with it)."""

    a: float
    intercepts: tuple[float, ...]
    method: str = "logistic recalibration of the booster margin (Platt, out-of-fold)"
    n_rows: int = 0
    n_events: int = 0

    def log_odds(self, margin: np.ndarray, at: int = -1) -> np.ndarray:
        return self.a * margin + self.intercepts[at]


@dataclass(frozen=True)
class RiskBands:
    """Risk categories on the calibrated probability: ``low < low_below ≤ intermediate < high_from ≤ high``.

    By default (the new-PE question) anchored on the 6-month VTE risk of the established
    score's groups in cancer (Mulder FI et al., Haematologica 2019;104(6), 55 cohorts,
    n=34,555): Khorana 0 → 5.0 %; Khorana ≥2 → 8.9 %, the threshold at which trials and
    guidelines consider thromboprophylaxis (Khorana AA et al., Blood 2008;111:4902;
    clinical.md §1.1). The PE-now question has its own (``diagnostic_bands``).
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


def diagnostic_bands() -> RiskBands:
    """Bands of P(PE now), anchored on the PE prevalence of the revised Geneva groups
    (Le Gal G et al., Ann Intern Med 2006;144:165 [V]; clinical.md §1.9): low group 8 %,
    intermediate group 28 %. Below the low group's prevalence is "low", from the
    intermediate group's is "high"."""
    from features.scores import REVISED_GENEVA

    low, mid = REVISED_GENEVA.bands[0], REVISED_GENEVA.bands[1]
    assert low.risk is not None and mid.risk is not None
    return RiskBands(
        low_below=low.risk,
        high_from=mid.risk,
        source=f"PE prevalence by revised Geneva group, Le Gal G et al. Ann Intern Med "
        f"2006;144:165: low group {100 * low.risk:.0f} %, intermediate group "
        f"{100 * mid.risk:.0f} %",
    )


@dataclass
class Head:
    """One question's calibrated, explainable booster: ``probability`` and ``explain`` of a
    feature matrix at each of its horizons (``(0,)`` for PE now: prevalence at the work-up)."""

    key: str
    booster: xgb.Booster
    feature_names: tuple[str, ...]
    calibration: Calibration
    horizons: tuple[int, ...]
    monotone: dict[str, int] = field(default_factory=dict)
    bands: RiskBands = field(default_factory=RiskBands)
    #: the booster's margin and exact TreeSHAP by table lookup (``models.treeshap``): the
    #: same numbers as XGBoost's, 10× faster for one record (issue 22); None for a booster
    #: the table does not model (deeper trees), which XGBoost then answers
    table: PathTable | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.table is None:
            try:
                self.table = PathTable.of(self.booster, self.feature_names)
            except ValueError:
                self.table = None

    # Every method below takes the feature matrix ``x`` (rows × ``feature_names``, built by
    # ``features`` from canonical columns by name, never by position), so a caller that
    # needs the features too derives them once.
    def _dmatrix(self, x: np.ndarray) -> xgb.DMatrix:
        # one thread builds it: OpenMP's start-up costs more than a batch's copy
        return xgb.DMatrix(x, feature_names=list(self.feature_names), missing=np.nan, nthread=1)

    def _at(self, horizon: int | None) -> int:
        if horizon is None:
            return len(self.horizons) - 1
        if horizon not in self.horizons:
            raise ValueError(f"{self.key} answers at {self.horizons} days, not {horizon}")
        return self.horizons.index(horizon)

    @property
    def horizon_days(self) -> int:
        return self.horizons[-1]

    def margin(self, x: np.ndarray) -> np.ndarray:
        """The booster's uncalibrated margin (float64)."""
        if self.table is not None:  # the same sum as ``explain``'s, so p is the same either way
            return self.table.margin(x)
        return self.booster.predict(self._dmatrix(x), output_margin=True).astype(np.float64)

    def probability(self, x: np.ndarray, horizon: int | None = None) -> np.ndarray:
        """Calibrated probability at ``horizon`` (default the longest) for every row."""
        return expit(self.calibration.log_odds(self.margin(x), self._at(horizon)))

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """rows × horizons: the calibrated probability at each horizon (non-decreasing)."""
        m = self.calibration.a * self.margin(x)
        return expit(m[:, None] + np.asarray(self.calibration.intercepts)[None, :])

    def explain(self, x: np.ndarray, horizon: int | None = None) -> tuple[np.ndarray, Explanation]:
        """Probabilities and their exact TreeSHAP contributions on the calibrated log-odds scale.

        XGBoost's ``pred_contribs`` is exact TreeSHAP (path-dependent, as ``shap.TreeExplainer``
        without background data; stack.md §3); its last column is the bias. Scaling by the
        calibration slope ``a`` and shifting the bias by ``b_h`` keeps the sum exact.
        """
        if self.table is not None:
            _, contribs = self.table.margin_and_contributions(x)
        else:
            contribs = self.booster.predict(self._dmatrix(x), pred_contribs=True).astype(np.float64)
        a, b = self.calibration.a, self.calibration.intercepts[self._at(horizon)]
        phi = a * contribs[:, :-1]
        base = a * contribs[:, -1] + b
        p = expit(base + phi.sum(axis=1))
        return p, Explanation(base, phi, self.feature_names)

    def category(self, p: float) -> str:
        return self.bands.category(p)

    def metadata(self) -> dict[str, Any]:
        return {
            "file": booster_file(self.key),
            "horizons_days": list(self.horizons),
            "monotone_constraints": {n: int(self.monotone.get(n, 0)) for n in self.feature_names},
            "calibration": asdict(self.calibration),
            "risk_bands": asdict(self.bands),
        }


@dataclass
class PERiskModel:
    """The two questions' heads over one feature specification, and what the model is."""

    feature_names: tuple[str, ...]
    heads: dict[str, Head]
    info: dict[str, Any] = field(default_factory=dict)  # metrics, digest, trained_on, ...

    def features(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The feature matrix of canonical columns, in ``feature_names`` order."""
        return feature_matrix(dict(columns), self.feature_names)

    @property
    def pe_now(self) -> Head | None:
        return self.heads.get(PE_NOW)

    @property
    def new_pe(self) -> Head:
        return self.heads[NEW_PE]

    def columns(self) -> list[str]:
        """The prediction columns of ``predict_frame``, which the registered pyfunc returns."""
        return [PE_NOW, *(new_pe_column(h) for h in self.new_pe.horizons)]

    def predict_frame(self, x: np.ndarray, suspected: np.ndarray) -> dict[str, np.ndarray]:
        """``pe_now`` (NaN where PE is not suspected, or without a PE-now head) and
        ``new_pe_<h>d`` at each horizon of the new-PE head, for every row."""
        now = np.full(len(x), np.nan)
        if self.pe_now is not None and (suspected == 1).any():
            rows = suspected == 1
            now[rows] = self.pe_now.probability(x[rows])
        p = self.new_pe.probabilities(x)
        return {
            PE_NOW: now,
            **{new_pe_column(h): p[:, j] for j, h in enumerate(self.new_pe.horizons)},
        }

    def with_threads(self, nthread: int) -> PERiskModel:
        """A copy whose boosters predict with ``nthread`` threads (batches; loading gives 1)."""
        heads = {}
        for key, head in self.heads.items():
            booster = head.booster.copy()
            booster.set_param({"nthread": nthread})
            heads[key] = replace(head, booster=booster)
        return replace(self, heads=heads)

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "feature_names": list(self.feature_names),
            "heads": {k: h.metadata() for k, h in self.heads.items()},
            **self.info,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``<head>.ubj`` per head and ``model.json`` into ``folder`` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for key, head in self.heads.items():
            head.booster.save_model(folder / booster_file(key))
        (folder / META_FILE).write_text(
            json.dumps(self.metadata(), indent=2, default=_json_default), encoding="utf-8"
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> PERiskModel:
        """Load a saved model; refuses a folder whose metadata does not match its boosters."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{folder}: not a {FORMAT} model (format={meta.get('format')!r}); a model "
                "saved before the two questions (pe-risk-model/1) must be retrained: "
                "`pe-risk train`"
            )
        names = tuple(meta.pop("feature_names"))
        heads = {}
        for key, h in meta.pop("heads").items():
            if key not in HEADS:
                raise ValueError(f"{folder}: unknown head {key!r}; known: {', '.join(HEADS)}")
            booster = xgb.Booster()
            booster.load_model(folder / booster_file(key))
            if booster.feature_names is not None and tuple(booster.feature_names) != names:
                raise ValueError(
                    f"{folder}: the {key} booster's features differ from {META_FILE}'s"
                )
            booster.set_param({"nthread": 1})  # one row at a time is the serving case
            cal = h["calibration"]
            heads[key] = Head(
                key=key,
                booster=booster,
                feature_names=names,
                calibration=Calibration(**{**cal, "intercepts": tuple(cal["intercepts"])}),
                horizons=tuple(int(d) for d in h["horizons_days"]),
                monotone=h["monotone_constraints"],
                bands=RiskBands(**h["risk_bands"]),
            )
        if NEW_PE not in heads:
            raise ValueError(f"{folder}: the model has no {NEW_PE} head")
        meta.pop("format")
        return cls(feature_names=names, heads=heads, info=meta)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
