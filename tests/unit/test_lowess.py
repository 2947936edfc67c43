"""The compiled loess (``training.lowess``) against statsmodels' ``lowess``, which it replaced
in the calibration errors (issue 22): the same smooth to 1e-12, ties and edge cases included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.nonparametric.smoothers_lowess import lowess as sm_lowess

from training.lowess import lowess


def _reference(y: np.ndarray, x: np.ndarray, frac: float, delta: float) -> np.ndarray:
    with warnings.catch_warnings():  # statsmodels divides 0 by 0 where every neighbour is tied
        warnings.simplefilter("ignore", RuntimeWarning)
        return sm_lowess(y, x, frac=frac, it=0, delta=delta, return_sorted=False)


def _risks(seed: int, n: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted risks (rounded: many ties) and IPCW-weighted outcomes ``w·y``."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-2.8, 1.1, n)))
    if decimals is not None:
        p = np.round(p, decimals)
    wy = (rng.random(n) < p) * rng.uniform(1.0, 1.5, n)
    return wy, p


@pytest.mark.parametrize(
    ("n", "decimals", "frac"),
    [(50_000, None, 0.75), (20_000, 3, 0.75), (5_000, 2, 0.3), (400, None, 0.75), (3, None, 0.75)],
)
def test_equals_statsmodels(n: int, decimals: int | None, frac: float) -> None:
    wy, p = _risks(n, n, decimals)
    delta = 0.005 * float(np.ptp(p))
    ours = lowess(wy, p, frac, delta)
    np.testing.assert_allclose(ours, _reference(wy, p, frac, delta), rtol=0, atol=1e-12)


def test_presorted_rows_give_the_sorted_smooth() -> None:
    """A bootstrap draw comes in ascending p̂ and is not sorted again."""
    wy, p = _risks(4, 3000, decimals=3)
    order = np.argsort(p, kind="stable")
    delta = 0.005 * float(np.ptp(p))
    np.testing.assert_allclose(
        lowess(wy[order], p[order], 0.75, delta), lowess(wy, p, 0.75, delta)[order], atol=1e-12
    )


@pytest.mark.parametrize(
    "x",
    [np.full(30, 0.2), np.r_[np.full(20, 0.1), np.full(10, 0.4)], np.array([0.1, 0.5])],
    ids=["one value", "two values", "two rows"],
)
def test_degenerate_neighbourhoods_as_statsmodels(x: np.ndarray) -> None:
    wy = np.random.default_rng(0).random(len(x))
    delta = 0.005 * float(np.ptp(x))
    np.testing.assert_allclose(
        lowess(wy, x, 0.75, delta), _reference(wy, x, 0.75, delta), atol=1e-12
    )


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 800),
    decimals=st.sampled_from([None, 1, 2, 4]),
    frac=st.floats(0.05, 1.0),
    delta_share=st.sampled_from([0.0, 0.005, 0.05]),
)
def test_equals_statsmodels_on_any_rows(seed, n, decimals, frac, delta_share) -> None:
    wy, p = _risks(seed, n, decimals)
    delta = delta_share * float(np.ptp(p))
    ours = lowess(wy, p, frac, delta)
    np.testing.assert_allclose(ours, _reference(wy, p, frac, delta), rtol=0, atol=1e-11)
