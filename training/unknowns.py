"""Teaching the model what an unknown value means, and keeping it between the known ones.

The data contract says an absent field is *not known*: the estimate for such a record must
be the estimate for a patient whose value is unknown, never the one for "yes" or "no".
A booster trained on a table where a field is always recorded has never seen it missing,
so it sends a missing value down whichever branch came first (an unrecorded chemotherapy
scored exactly like "yes"). Three steps make the answer sound whatever the table:

1. **Masked copies** (``with_masked_copies``): each training row is also shown once with
   every field of ``UNKNOWABLE`` removed at random, at a rate drawn per row from U(0, 1),
   so that the copies range from nearly complete to nearly empty records. For a masked copy
   the best prediction is E[PE | what is still recorded]: the risk of a patient whose value
   is unknown, averaged over the values such patients have. This is the usual way to make
   a learner consistent for missing values at prediction time when the training data are
   complete (Josse J et al., "On the consistency of supervised learning with missing
   values", Stat Papers 2024; for trees, the missing value is an attribute: Twala BETH et
   al., Pattern Recognit Lett 2008). The copies are drawn from the training rows only, and
   the early-stopping and calibration splits get their own copies.
2. **A direction for every field that can be unknown**. Where the review establishes the
   direction of an effect, ``features.spec`` declares it; for the rest (for example
   anti-angiogenic therapy, with conflicting evidence) ``free_directions`` takes the sign
   of the effect a first fit found on the training rows. A monotone constraint makes each
   tree's output move one way with the field, so that the lowest and the highest known
   value bound every tree, and therefore the sum.
3. **No split of its own for "unknown"** (``route_unknowns_with_known``). XGBoost may put
   a threshold below or above every known value of a node, giving missing values their own
   leaf, which the monotone constraint does not bound. Such a split is turned so that the
   missing value follows the known values that remain on its path.

After 2 and 3, each tree scores an unknown value exactly as it scores some known value,
so for every record the estimate with the field absent lies between the estimates with
the field set to its lowest and highest values (for a yes/no field: between "no" and
"yes"), and TreeSHAP on the booster stays exact. The calibration map is fitted after.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xgboost as xgb

from features.build import blanked, feature_matrix, take
from features.contract import UNKNOWABLE, unknown_value
from features.spec import BY_NAME

Columns = Mapping[str, np.ndarray]

#: removal rate of each field in the evaluation of calibration under missingness
EVALUATION_RATE = 0.3
#: how checks, metrics and the model card name that evaluation
REMOVED = f"{round(100 * EVALUATION_RATE)} % of optional fields removed"


def remove_at_random(
    columns: Columns,
    rate: float | np.ndarray,
    rng: np.random.Generator,
    fields: Sequence[str] = UNKNOWABLE,
) -> dict[str, np.ndarray]:
    """A copy of ``columns`` with each of ``fields`` made unknown (None/NaN, or the "unknown"
    histology) independently at ``rate`` (one rate, or one per row)."""
    out = dict(columns)
    n = len(next(iter(columns.values())))
    rates = np.broadcast_to(np.asarray(rate, dtype=float), (n,))
    for name in fields:
        out[name] = blanked(out[name], rng.random(n) < rates, unknown_value(name))
    return out


def with_masked_copies(
    columns: Columns,
    rows: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    names: Sequence[str],
    copies: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix of ``rows`` followed by ``copies`` masked copies of them (each row's
    removal rate drawn from U(0, 1)), and ``y`` (outcomes, or rows × [outcome, weight, ...])
    repeated to match."""
    part = take(dict(columns), rows)
    blocks = [feature_matrix(part, names)]
    for _ in range(copies):
        masked = remove_at_random(part, rng.random(len(rows)), rng)
        blocks.append(feature_matrix(masked, names))
    return np.vstack(blocks), np.concatenate([y[rows]] * (copies + 1))


def can_be_unknown(feature: str) -> bool:
    """Whether a model feature is derived from a field a record may leave unknown."""
    field = BY_NAME[feature].field
    return field is not None and field in UNKNOWABLE


def _one_column_fields(names: Sequence[str]) -> set[str]:
    count: dict[str | None, int] = {}
    for n in names:
        count[BY_NAME[n].field] = count.get(BY_NAME[n].field, 0) + 1
    return {f for f, k in count.items() if f is not None and k == 1}


def free_directions(
    booster: xgb.Booster, x: np.ndarray, names: Sequence[str], constraints: Mapping[str, int]
) -> dict[str, dict[str, float]]:
    """For each feature that can be unknown and has no declared direction: the sign of its
    mean effect in ``booster`` over the rows of ``x`` (the 5th → 95th percentile of its known
    values; no → yes for a yes/no field). A field behind several columns (histology's types)
    gets none: a direction means nothing for a category. An effect of exactly 0 (the fit
    never used the feature) gets +1, marked as arbitrary. Returns ``{feature: {"direction",
    "effect"}}``."""
    single = _one_column_fields(names)
    out: dict[str, dict[str, float]] = {}

    def margin(rows: np.ndarray) -> np.ndarray:
        return booster.predict(xgb.DMatrix(rows, feature_names=list(names)), output_margin=True)

    for j, name in enumerate(names):
        if (
            constraints.get(name, 0)
            or not can_be_unknown(name)
            or BY_NAME[name].field not in single
        ):
            continue
        known = x[:, j][~np.isnan(x[:, j])]
        if known.size == 0:
            continue
        lo, hi = np.quantile(known, [0.05, 0.95])
        if lo == hi:
            lo, hi = known.min(), known.max()
        at_lo, at_hi = x.copy(), x.copy()
        at_lo[:, j], at_hi[:, j] = lo, hi
        effect = float(np.mean(margin(at_hi) - margin(at_lo)))
        out[name] = {"direction": 1 if effect >= 0 else -1, "effect": round(effect, 6)}
    return out


def _field(feature: str) -> str:
    """The record field a model column shows (the column itself if the spec has no field)."""
    spec = BY_NAME.get(feature)
    return (spec.field if spec else None) or feature


def _configurations(x: np.ndarray, names: Sequence[str]) -> dict[int, tuple[np.ndarray, int]]:
    """For each model column: the known configurations of its field, and its column in them.

    A field behind one column has its distinct training values as configurations; a field
    behind several (histology: one column per type) has the distinct rows of those columns
    (each a real histology). Values are float32, as XGBoost compares them."""
    fields: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        fields.setdefault(_field(name), []).append(j)
    out: dict[int, tuple[np.ndarray, int]] = {}
    for cols in fields.values():
        sub = x[:, cols].astype(np.float32)
        known = np.unique(sub[~np.isnan(sub).any(axis=1)], axis=0)
        for k, j in enumerate(cols):
            out[j] = (known, k)
    return out


def route_unknowns_with_known(
    booster: xgb.Booster, x: np.ndarray, names: Sequence[str]
) -> tuple[xgb.Booster, int]:
    """Turn every split that gives a missing value a branch no known value of its path takes.

    For each tree and each field, the known configurations of the field (its values, or for
    histology its types) that share the missing value's path so far are tracked. A split
    that sends the missing value to a side where none of them goes is turned to the other
    side. Returns the booster (a new one if anything was turned) and the number turned.
    """
    model = json.loads(booster.save_raw("json"))
    configs = _configurations(x, names)
    index = {n: j for j, n in enumerate(names)}
    feature_names = model["learner"]["feature_names"]
    field_of = {j: _field(n) for j, n in enumerate(names)}
    turned = 0
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        if any(tree.get("split_type", [])):
            raise ValueError("categorical splits are not supported: features are numeric")
        left, right = tree["left_children"], tree["right_children"]
        feature, threshold, default_left = (
            tree["split_indices"],
            tree["split_conditions"],
            tree["default_left"],
        )
        # node → for each field seen on the path: which of its configurations still share the
        # missing value's path (None: the missing value took the other branch)
        stack: list[tuple[int, dict[str, np.ndarray | None]]] = [(0, {})]
        while stack:
            node, paths = stack.pop()
            if left[node] == -1:
                continue
            j = index[feature_names[feature[node]]]
            field = field_of[j]
            known, col = configs[j]
            alive = paths.get(field, np.ones(len(known), dtype=bool))
            to_left, to_right = dict(paths), dict(paths)
            if alive is not None:
                goes_left = known[:, col] < np.float32(threshold[node])  # x < t goes left
                on_left, on_right = alive & goes_left, alive & ~goes_left
                if default_left[node] and not on_left.any() and on_right.any():
                    default_left[node], turned = 0, turned + 1
                elif not default_left[node] and not on_right.any() and on_left.any():
                    default_left[node], turned = 1, turned + 1
                to_left[field], to_right[field] = (
                    (on_left, None) if default_left[node] else (None, on_right)
                )
            stack += [(left[node], to_left), (right[node], to_right)]
    if not turned:
        return booster, 0
    out = xgb.Booster()
    out.load_model(bytearray(json.dumps(model).encode()))
    return out, turned


def unknown_summary(
    directions: Mapping[str, Mapping[str, float]], turned: int, copies: int
) -> dict[str, Any]:
    """What the model card and the artefact say about unknown values."""
    return {
        "no_effect_in_first_fit": sorted(k for k, v in directions.items() if v["effect"] == 0),
        "method": (
            "masked training copies (each unknowable field removed at a per-row rate drawn "
            "from U(0, 1)), a monotone direction for every unknowable feature, and unknown "
            "values routed with known ones: the estimate for an absent field lies between "
            "the estimates for its known values"
        ),
        "masked_copies": copies,
        "directions_from_data": {k: int(v["direction"]) for k, v in directions.items()},
        "direction_effects": {k: v["effect"] for k, v in directions.items()},
        "splits_rerouted": turned,
    }
