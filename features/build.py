"""Records and tables → canonical columns → the feature matrix.

One derivation (``features.spec``) serves one record and a 100,000-row table alike:
both are first put in *canonical columns* (a dict of numpy arrays: floats with NaN
for numbers, booleans and integers; object arrays with None for categories), then
each feature's ``derive`` runs on those arrays.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.contract import FIELDS, Kind
from features.spec import FEATURES, MODEL_FEATURE_NAMES, FeatureSpec

_TEXTUAL = frozenset(f.name for f in FIELDS if f.kind in (Kind.CATEGORY, Kind.TEXT))
_EVERY_FIELD = operator.itemgetter(*(f.name for f in FIELDS))


def record_columns(records: Sequence[Any]) -> dict[str, np.ndarray]:
    """Canonical columns of validated ``PatientRecord`` objects (or plain dicts of canonical values)."""
    rows = [r if isinstance(r, dict) else r.__dict__ for r in records]
    try:  # validated records hold every field: one C call per row, then a C transpose
        values_of: Iterable[Sequence[Any]] = list(zip(*map(_EVERY_FIELD, rows), strict=True))
    except KeyError:  # plain dicts may leave fields out
        values_of = [[row.get(f.name) for row in rows] for f in FIELDS]
    if not rows:
        values_of = [[] for _ in FIELDS]
    out: dict[str, np.ndarray] = {}
    for f, values in zip(FIELDS, values_of, strict=True):
        if f.name in _TEXTUAL:
            out[f.name] = np.array(values, dtype=object)
        else:
            out[f.name] = np.array(values, dtype=np.float64)  # None → NaN, bool → 0/1
    return out


def frame_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Canonical columns of a DataFrame already in canonical form (e.g. ``TableReport.frame()``)."""
    out: dict[str, np.ndarray] = {}
    n = len(df)
    for f in FIELDS:
        if f.name not in df.columns:
            out[f.name] = (
                np.full(n, None, dtype=object) if f.name in _TEXTUAL else np.full(n, np.nan)
            )
        elif f.name in _TEXTUAL:
            col = df[f.name].to_numpy(dtype=object)
            out[f.name] = np.where(pd.isna(col), None, col)
        else:
            out[f.name] = df[f.name].to_numpy(dtype=float, na_value=np.nan)
    return out


def blanked(column: np.ndarray, rows: np.ndarray, unknown: Any = None) -> np.ndarray:
    """A copy of a canonical column with ``rows`` (a boolean mask) set to "not known":
    ``unknown`` for a category that has such a choice, else None / NaN."""
    out = column.copy()
    out[rows] = unknown if unknown is not None else None if out.dtype == object else np.nan
    return out


def take(columns: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The canonical columns of the given rows only."""
    return {k: v[rows] for k, v in columns.items()}


def derive(
    columns: dict[str, np.ndarray], features: Iterable[FeatureSpec] = FEATURES
) -> dict[str, np.ndarray]:
    """Every feature of ``features`` as a float64 array (NaN = missing)."""
    return {f.name: f.derive(columns) for f in features}


def feature_matrix(
    columns: dict[str, np.ndarray], names: Sequence[str] = MODEL_FEATURE_NAMES
) -> np.ndarray:
    """The model matrix, shape (n_rows, len(names)), columns in the order of ``names``."""
    specs = {f.name: f for f in FEATURES}
    missing = [n for n in names if n not in specs]
    if missing:
        raise KeyError(f"features not in the specification: {missing}")
    return np.column_stack([specs[n].derive(columns) for n in names]).astype(np.float64, copy=False)


def feature_frame(
    columns: dict[str, np.ndarray], names: Sequence[str] = MODEL_FEATURE_NAMES
) -> pd.DataFrame:
    """``feature_matrix`` with named columns."""
    return pd.DataFrame(feature_matrix(columns, names), columns=list(names))
