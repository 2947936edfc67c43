"""Exact path-dependent TreeSHAP of shallow XGBoost boosters by table lookup.

``Head.explain`` serves XGBoost's ``pred_contribs``: exact TreeSHAP, the Shapley values of
the path-dependent value function (Lundberg SM, Erion G, Chen H et al. "From local
explanations to global understanding with explainable AI for trees", Nat Mach Intell
2020;2:56, Algorithms 1 and 2; XGBoost docs, ``Booster.predict(pred_contribs=True)``,
https://xgboost.readthedocs.io/en/stable/python/python_api.html#xgboost.Booster.predict,
and "Prediction", https://xgboost.readthedocs.io/en/stable/prediction.html). For one row, building a ``DMatrix`` and walking the trees costs about
0.3 ms whatever the work (issue 22). This module gives the same numbers from a table.

Why a table is exact. A tree's value function is ``v(S) = E[f(x) | x_S]`` computed by the
cover-weighted recursion of Algorithm 1: at an internal node splitting on feature ``i``, if
``i ∈ S`` follow the row's child, else average both children weighted by their cover (the
sum of hessians, ``sum_hessian``) over the node's own, as XGBoost does. The row enters ``v`` *only* through its
decision at each internal node: ``x[i] < threshold`` (in float32, as XGBoost stores the
matrix and its thresholds) sends it to the left ('yes') child, a missing value (NaN) to
the node's default child. So ``v(S)`` for every ``S``, the Shapley values
``φ_i = Σ_{S ∌ i} |S|!(M−|S|−1)!/M! · (v(S ∪ {i}) − v(S))`` over the tree's ``M``
distinct features (a feature the tree does not split on gets 0, the dummy axiom), the
leaf value ``v(all)`` and the expected value ``v(∅)`` are functions of the tree's
decision vector alone. A tree with ``k`` internal nodes has at most ``2^k`` decision
vectors: 8 for depth 2, 128 for depth 3. The table holds, for every tree and every decision
vector, the leaf value and φ, computed here in float64 by enumerating ``v`` over all subsets
(the definition itself, not Algorithm 2's polynomial shortcut). Prediction computes each
internal node's decision for each row (numpy over all trees at once), packs each tree's
decisions into an index, gathers and sums. XGBoost's bias column (the last) is the sum of
the trees' expected values plus the booster's base margin (``base_score`` through the
objective's link: logit for ``binary:logistic``).

XGBoost accumulates in float32; the table sums float64 values, so the two agree to float32
rounding (tests/unit/test_treeshap.py: rtol 1e-5, atol 1e-6), and ``of`` checks the built
table against XGBoost on probe rows (values at thresholds, the float32 just below them, NaN)
before returning it: a booster the table misreads (a wrong link, default direction or
cover) is refused at load rather than served.

Trees deeper than ``MAX_DEPTH`` are refused (``ValueError`` naming the depth): a depth-4
tree has up to 2^15 decision vectors, and the caller falls back to XGBoost's
``pred_contribs``. So are boosters this module does not model: dart (weighted trees),
multi-class or multi-target, categorical splits, an unknown objective. A ``base_margin``
set on a ``DMatrix`` has no counterpart here: the margin is always from ``base_score``.

This module belongs to the models layer: numpy and xgboost only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import xgboost as xgb

#: deepest tree a table is built for: 2^(2^3 − 1) = 128 decision vectors per tree.
MAX_DEPTH = 3
#: node slots per tree: a depth-3 tree has at most 7 internal nodes; 8 bytes make a uint64
SLOTS = 8
#: rows per block at prediction, so the gathered values of a large batch stay small.
BLOCK_ROWS = 1024
_GATHER_BITS = np.uint64(0x0102040810204080)  # Σ_j 2^(56 − 7j), j = 0..7

#: objectives whose ``base_score`` is a probability or mean mapped to the margin by a link
_LOGIT = frozenset({"binary:logistic", "reg:logistic"})
_LOG = frozenset({"count:poisson", "reg:gamma", "reg:tweedie"})
_IDENTITY = frozenset(
    {"reg:squarederror", "reg:pseudohubererror", "reg:absoluteerror", "binary:logitraw"}
)


@dataclass(frozen=True, eq=False)
class PathTable:
    """Every tree's leaf value and TreeSHAP contributions for each of its decision vectors.

    ``T`` trees, ``SLOTS`` (8) node slots per tree, ``C = 2^k`` decision vectors (``k`` the
    most internal nodes any tree has, ≤ 7), ``M`` contribution slots per tree (its distinct
    split features, ≤ ``k``). Slot ``j``'s decision is bit ``j`` of the tree's index.

    A node reads column ``node_column`` of ``[x, NaN → −∞ | x, NaN → +∞]``: a NaN sent
    left by default becomes −∞ (``−∞ < t``), one sent right +∞, so one float32 comparison
    ``value < threshold`` decides every node, missing or not (thresholds are finite). A
    padding slot has threshold −∞ (never left, bit 0); a padding contribution slot points at
    the bias column with value 0.
    """

    feature_names: tuple[str, ...]
    node_column: np.ndarray  # (T·SLOTS,) intp: column of the filled pair each slot reads
    node_threshold: np.ndarray  # (T·SLOTS,) float32: value < threshold → left (bit 1)
    leaf: np.ndarray  # (T·C,) float64: the leaf value by (tree, decision vector)
    contributions: np.ndarray  # (T·C, M) float64: φ by (tree, decision vector)
    slot_order: np.ndarray  # (T·M,) intp: contribution slots sorted by output column
    column_starts: np.ndarray  # (U,) intp: where each output column's run starts in it
    columns: np.ndarray  # (U,) intp: the output column of each run
    bias: float  # base margin + Σ expected values: the last column of every row
    base_margin: float
    depth: int  # the deepest tree's depth

    @classmethod
    def of(cls, booster: xgb.Booster, feature_names: tuple[str, ...] | None = None) -> PathTable:
        """The table of ``booster``, checked against its ``pred_contribs`` on probe rows.

        ``feature_names`` are the columns of the matrices to be explained (the booster's
        own if it has names). Raises ``ValueError`` for a tree deeper than ``MAX_DEPTH``
        and for a booster the table does not model; the caller then uses XGBoost.
        """
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        names = _feature_names(booster, learner, feature_names)
        base_margin = _base_margin(learner)
        trees = [_Tree.parse(t, i) for i, t in enumerate(_trees(learner))]
        if not trees:
            raise ValueError("a booster without trees; use XGBoost")
        table = cls._build(trees, names, base_margin)
        table._check(booster)
        return table

    @classmethod
    def _build(cls, trees: list[_Tree], names: tuple[str, ...], base_margin: float) -> PathTable:
        n_trees, n_features = len(trees), len(names)
        for t in trees:
            if t.depth > MAX_DEPTH:
                raise ValueError(
                    f"tree {t.index} has depth {t.depth}: the TreeSHAP table is built for "
                    f"trees of depth ≤ {MAX_DEPTH} (a depth-{t.depth} tree has up to "
                    f"2^{2**t.depth - 1} decision vectors); use XGBoost's pred_contribs"
                )
            if any(f >= n_features for f in t.features):
                raise ValueError(f"tree {t.index} splits on a feature beyond {n_features}")
        c = 2 ** max([len(t.internal) for t in trees] + [0])
        m = max([len(t.features) for t in trees] + [0])
        column = np.full((n_trees, SLOTS), n_features, dtype=np.intp)
        threshold = np.full((n_trees, SLOTS), -np.inf, dtype=np.float32)
        slot_column = np.full((n_trees, m), n_features, dtype=np.intp)
        contributions = np.zeros((n_trees, c, m))
        leaf = np.zeros((n_trees, c))
        expected = 0.0
        for i, t in enumerate(trees):
            for j, node in enumerate(t.internal):
                column[i, j] = t.feature[node] + (0 if t.default_left[node] else n_features)
                threshold[i, j] = t.threshold[node]
            slot_column[i, : len(t.features)] = t.features
            v = t.values()  # (2^k_t, 2^M_t)
            rows = v.shape[0]
            contributions[i, :rows, : len(t.features)] = v @ _shapley_matrix(len(t.features))
            leaf[i, :rows] = v[:, -1]
            expected += float(v[0, 0])
        order = np.argsort(slot_column.reshape(-1), kind="stable")
        sorted_columns = slot_column.reshape(-1)[order]
        starts = np.flatnonzero(np.r_[True, sorted_columns[1:] != sorted_columns[:-1]])
        if not len(order):
            starts = np.zeros(0, dtype=np.intp)
        return cls(
            feature_names=names,
            node_column=_frozen(column.reshape(-1)),
            node_threshold=_frozen(threshold.reshape(-1)),
            leaf=_frozen(leaf.reshape(-1)),
            contributions=_frozen(contributions.reshape(n_trees * c, m)),
            slot_order=_frozen(order),
            column_starts=_frozen(starts),
            columns=_frozen(sorted_columns[starts]),
            bias=base_margin + expected,
            base_margin=base_margin,
            depth=max([t.depth for t in trees] + [0]),
        )

    @property
    def n_trees(self) -> int:
        return len(self.node_threshold) // SLOTS

    @property
    def n_vectors(self) -> int:
        """Decision vectors per tree (rows of its table)."""
        return len(self.leaf) // self.n_trees if self.n_trees else 1

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays."""
        arrays = (
            self.node_column,
            self.node_threshold,
            self.leaf,
            self.contributions,
            self.slot_order,
            self.column_starts,
            self.columns,
        )
        return sum(a.nbytes for a in arrays)

    def margin(self, x: np.ndarray) -> np.ndarray:
        """The margin (rows,) of ``x`` alone, as ``predict(output_margin=True)`` gives it:
        the same numbers as ``margin_and_contributions``'s, without the contributions."""
        xf = self._float32(x)
        margin = np.empty(len(xf))
        for start in range(0, len(xf), BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            margin[block] = self.base_margin + self.leaf.take(self._index(xf[block])).sum(axis=1)
        return margin

    def margin_and_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The margin (rows,) and the contributions (rows × (features + 1), the last column
        the bias) of ``x``, as ``booster.predict(DMatrix(x, missing=nan))`` gives them with
        ``output_margin=True`` and with ``pred_contribs=True`` (float64 here, float32 there).
        The contributions of a row sum to its margin (to float64 rounding)."""
        xf = self._float32(x)
        n, n_features = xf.shape
        margin = np.empty(n)
        contribs = np.zeros((n, n_features + 1))
        for start in range(0, n, BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            index = self._index(xf[block])
            margin[block] = self.base_margin + self.leaf.take(index).sum(axis=1)
            if len(self.columns):
                phi = self.contributions.take(index, axis=0).reshape(len(index), -1)  # (n, T·M)
                by_column = phi.take(self.slot_order, axis=1)
                sums = np.add.reduceat(by_column, self.column_starts, axis=1)
                contribs[block, self.columns] = sums
        contribs[:, -1] += self.bias
        return margin, contribs

    def _float32(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        n_features = len(self.feature_names)
        if x.ndim != 2 or x.shape[1] != n_features:
            raise ValueError(f"x must be rows × {n_features} features, not {x.shape}")
        with np.errstate(over="ignore"):  # beyond float32's range: inf, refused below
            xf = x.astype(np.float32, copy=False)  # XGBoost's DMatrix holds float32
        if np.isinf(xf).any():
            raise ValueError(
                "x holds inf or a value beyond float32's range; XGBoost refuses it too"
            )
        return xf

    def _index(self, xf: np.ndarray) -> np.ndarray:
        """rows × trees: each tree's row of the table (tree offset + decision vector)."""
        n, n_features = xf.shape
        filled = np.empty((n, 2 * n_features), dtype=np.float32)
        missing = np.isnan(xf)
        filled[:, :n_features] = np.where(missing, np.float32(-np.inf), xf)
        filled[:, n_features:] = np.where(missing, np.float32(np.inf), xf)
        left = filled.take(self.node_column, axis=1) < self.node_threshold  # (n, T·8) bool
        # a tree's 8 decision bytes (0/1) read as one little-endian uint64; the multiply
        # gathers byte j's bit into bit 56 + j (no carries), so ">> 56" is the vector
        vector = (left.view("<u8") * _GATHER_BITS) >> np.uint64(56)
        return vector.astype(np.intp) + np.arange(0, len(self.leaf), self.n_vectors)

    def _check(self, booster: xgb.Booster) -> None:
        """Compare with XGBoost on probe rows: all NaN, and each split feature at its least
        and greatest threshold, just below them in float32, and a random mix of thresholds,
        values just below them and NaN (so each node is seen going both ways and by default).
        A wrong link, direction or cover gives differences far above float32 rounding."""
        n_features = len(self.feature_names)
        used = np.isfinite(self.node_threshold)  # padding slots have −∞
        feature = self.node_column % max(n_features, 1)
        probe = np.full((8, n_features), np.nan, dtype=np.float32)
        rng = np.random.default_rng(0)
        for f in np.unique(feature[used]):
            t = np.unique(self.node_threshold[used & (feature == f)])
            below = np.nextafter(t, np.float32(-np.inf))
            probe[:4, f] = t.min(), t.max(), below.min(), below.max()
            probe[4:7, f] = rng.choice(np.concatenate([t, below, [np.nan]]), 3)
        margin, contribs = self.margin_and_contributions(probe)
        names = list(self.feature_names) if booster.feature_names is not None else None
        d = xgb.DMatrix(probe, missing=np.nan, feature_names=names, nthread=1)
        want_margin = booster.predict(d, output_margin=True)
        want = booster.predict(d, pred_contribs=True)
        if not (
            np.allclose(margin, want_margin, rtol=1e-5, atol=1e-5)
            and np.allclose(contribs, want, rtol=1e-5, atol=1e-5)
        ):
            worst = max(np.abs(margin - want_margin).max(), np.abs(contribs - want).max())
            raise ValueError(
                "the TreeSHAP table disagrees with XGBoost on probe rows (largest "
                f"difference {worst:.3g}); use XGBoost's pred_contribs"
            )


@dataclass
class _Tree:
    """One tree of the saved JSON model, its internal nodes in breadth-first order."""

    index: int
    left: list[int]
    right: list[int]
    feature: list[int]
    threshold: list[float]  # a leaf's value at a leaf (XGBoost's JSON keeps both there)
    default_left: list[bool]
    cover: list[float]
    internal: list[int]
    features: list[int]  # distinct split features, in order of first appearance
    depth: int

    @classmethod
    def parse(cls, tree: dict[str, Any], index: int) -> _Tree:
        if any(tree.get("split_type", [])) or tree.get("categories_nodes"):
            raise ValueError(f"tree {index} has categorical splits; use XGBoost's pred_contribs")
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise ValueError(f"tree {index} has vector leaves; use XGBoost's pred_contribs")
        left, right = tree["left_children"], tree["right_children"]
        # XGBoost stores float32 values; the JSON writes the shortest repr of each
        f32 = [float(v) for v in np.asarray(tree["split_conditions"], dtype=np.float32)]
        cover = [float(v) for v in np.asarray(tree["sum_hessian"], dtype=np.float32)]
        internal, depth, level = [], 0, [0]
        while level:
            nxt = [c for n in level if left[n] != -1 for c in (left[n], right[n])]
            internal += [n for n in level if left[n] != -1]
            if nxt:
                depth += 1
            level = nxt
        feature = [int(f) for f in tree["split_indices"]]
        features = list(dict.fromkeys(feature[n] for n in internal))
        return cls(
            index=index,
            left=left,
            right=right,
            feature=feature,
            threshold=f32,
            default_left=[bool(d) for d in tree["default_left"]],
            cover=cover,
            internal=internal,
            features=features,
            depth=depth,
        )

    def values(self) -> np.ndarray:
        """``v[c, S]``: Algorithm 1's ``E[f(x) | x_S]`` for every decision vector ``c`` (bit
        ``j`` = the row goes left at ``internal[j]``) and subset ``S`` of ``features`` (bit
        ``m`` = ``features[m] ∈ S``)."""
        combos = np.arange(2 ** len(self.internal))[:, None]
        subsets = np.arange(2 ** len(self.features))[None, :]
        slot = {node: j for j, node in enumerate(self.internal)}
        member = {f: m for m, f in enumerate(self.features)}

        def v(node: int) -> np.ndarray:
            if self.left[node] == -1:
                return np.full((combos.size, subsets.size), self.threshold[node])
            lo, hi = self.left[node], self.right[node]
            a, b = v(lo), v(hi)
            known = (subsets >> member[self.feature[node]]) & 1 == 1
            goes_left = (combos >> slot[node]) & 1 == 1
            follow = np.where(goes_left, a, b)
            average = (self.cover[lo] * a + self.cover[hi] * b) / self.cover[node]
            return np.where(known, follow, average)

        return v(0)


@cache
def _shapley_matrix(m: int) -> np.ndarray:
    """``A`` (2^m × m) with ``φ = v @ A``: ``A[S, i] = w(|S|−1)`` if ``i ∈ S`` else
    ``−w(|S|)``, ``w(s) = s!(m−s−1)!/m!``."""
    a = np.zeros((2**m, m))
    w = [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
    for s in range(2**m):
        size = s.bit_count()
        for i in range(m):
            a[s, i] = w[size - 1] if s >> i & 1 else -w[size]  # i ∉ S: |S| < m
    a.flags.writeable = False
    return a


def _trees(learner: dict[str, Any]) -> list[dict[str, Any]]:
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise ValueError(
            f"a {gb.get('name')} booster: the TreeSHAP table models gbtree only; use XGBoost"
        )
    param = learner["learner_model_param"]
    if int(param.get("num_class", "0")) > 1 or int(param.get("num_target", "1")) > 1:
        raise ValueError("a multi-output booster: the TreeSHAP table models one output")
    return gb["model"]["trees"]


def _base_margin(learner: dict[str, Any]) -> float:
    """``base_score`` on the margin scale: through the objective's link (XGBoost ≥ 3 writes
    it as a one-element list)."""
    raw = learner["learner_model_param"]["base_score"]
    values = json.loads(raw) if raw.strip().startswith("[") else [float(raw)]
    if len(values) != 1:
        raise ValueError(f"base_score {raw}: the TreeSHAP table models one output")
    p = float(np.float32(values[0]))
    objective = learner["objective"]["name"]
    if objective in _LOGIT:
        return math.log(p / (1 - p))
    if objective in _LOG:
        return math.log(p)
    if objective in _IDENTITY:
        return p
    raise ValueError(f"objective {objective}: base_score's link is not known here; use XGBoost")


def _feature_names(
    booster: xgb.Booster, learner: dict[str, Any], names: tuple[str, ...] | None
) -> tuple[str, ...]:
    n = int(learner["learner_model_param"]["num_feature"])
    own = tuple(booster.feature_names) if booster.feature_names is not None else None
    if names is None:
        names = own or tuple(f"f{i}" for i in range(n))
    names = tuple(names)
    if own is not None and own != names:
        raise ValueError("feature_names differ from the booster's")
    if len(names) != n:
        raise ValueError(f"{len(names)} feature names for a booster of {n} features")
    return names


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
