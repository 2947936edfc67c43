"""The loess smooth behind the calibration errors (ICI, E50, E90, Emax), compiled.

Austin PC, Steyerberg EW, Stat Med 2019;38:4051 measure calibration against a loess smooth
of the outcome on p̂ (Cleveland WS, JASA 1979;74:829: a local linear fit at each point with
tricube weights over its ``frac·n`` nearest neighbours; span 0.75, no robustness
iterations). The reference is statsmodels' ``lowess(it=0, delta=…)``, which the tests hold
this one equal to (to 1e-12; ~1e-14 measured). It is the same algorithm step by step: the
same neighbourhoods, the same tricube weights, the same points fitted and the same linear
interpolation of the points within ``delta`` of the last fit, the same copying of tied x.
Only each local fit's sums are taken differently: in two vectorised passes (weighted mean of
x, then the centred sums) rather than statsmodels' normalise-then-sum loops, so the last
digits can differ.

Why not statsmodels' own: it holds the GIL, so the bootstrap draws (``training.evaluate``)
could not share the cores, and it sets a weight for every row of the table at every fit,
which made it the largest cost of the evaluation at 1,000,000 rows (issue 22). Compiled with
numba (cached beside this file), it is about five times faster on one core and runs on all.
"""

from __future__ import annotations

import numba
import numpy as np

#: floating-point freedoms for the sums: reassociation lets them use the vector unit
_FASTMATH = {"reassoc", "contract", "nsz"}


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
def _local_fit(
    y: np.ndarray, x: np.ndarray, i: int, left: int, right: int, weights: np.ndarray
) -> float:  # pragma: no cover (compiled)
    """The local linear fit at ``x[i]`` over ``x[left:right]`` (statsmodels'
    ``calculate_weights`` and ``calculate_y_fit``); ``y[i]`` when fewer than two neighbours
    have a weight above 1e-12, as statsmodels does."""
    xval = x[i]
    radius = max(xval - x[left], x[right - 1] - xval)
    if not radius > 0:  # every neighbour tied with xval: statsmodels' weights are 0/0
        return y[i]
    # slices indexed from 0: the compiler then knows no index wraps around, and vectorises
    xs, ys, ws = x[left:right], y[left:right], weights[left:right]
    inv = 1.0 / radius
    total = 0.0
    sum_x = 0.0
    for j in range(len(xs)):
        d = abs(xs[j] - xval) * inv
        d = d * d * d
        d = 1.0 - d
        w = d * d * d
        ws[j] = w
        total += w
        sum_x += w * xs[j]
    # each weight is at most 1: fewer than two above 1e-12 leave a total below 2
    if total < 2.0:
        nonzero = 0
        for j in range(len(xs)):
            d = abs(xs[j] - xval) / radius
            u = 1.0 - d * d * d
            nonzero += u * u * u > 1e-12
        if nonzero < 2:
            return y[i]
    mean_x = sum_x / total
    spread = 0.0
    sum_y = 0.0
    sum_xy = 0.0
    for j in range(len(xs)):
        c = xs[j] - mean_x
        wy = ws[j] * ys[j]
        spread += ws[j] * c * c
        sum_y += wy
        sum_xy += wy * c
    spread = max(spread / total, 1e-12)
    return sum_y / total + (xval - mean_x) * (sum_xy / total) / spread


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lowess_sorted(
    y: np.ndarray, x: np.ndarray, frac: float, delta: float
) -> np.ndarray:  # pragma: no cover (compiled)
    """statsmodels' ``_smoothers_lowess.lowess`` with ``it=0``, on ``x`` sorted ascending."""
    n = len(x)
    k = min(max(int(frac * n + 1e-10), 2), n)
    fit = np.zeros(n)
    weights = np.empty(n)
    left, right = 0, k
    i, last = 0, -1
    while True:
        # the k nearest neighbours: slide the window right while that brings it nearer
        while right < n and x[i] > (x[left] + x[right]) / 2.0:
            left += 1
            right += 1
        fit[i] = _local_fit(y, x, i, left, right, weights)
        if last < i - 1:  # the points skipped within delta of the last fit: interpolated
            denom = x[i] - x[last]
            for j in range(last + 1, i):
                a = (x[j] - x[last]) / denom
                fit[j] = a * fit[i] + (1.0 - a) * fit[last]
        # the next fit: the last point within delta of this one (tied x copy this fit)
        last = i
        cut = x[last] + delta
        stop = last  # statsmodels' loop variable: the first point past delta, or the end
        for j in range(last + 1, n):
            stop = j
            if x[j] > cut:
                break
            if x[j] == x[last]:
                fit[j] = fit[last]
                last = j
        i = max(stop - 1, last + 1)
        if last >= n - 1:
            break
    return fit


def lowess(y: np.ndarray, x: np.ndarray, frac: float, delta: float) -> np.ndarray:
    """The loess smooth of ``y`` on ``x`` at each ``x``, in the rows' order: statsmodels'
    ``lowess(y, x, frac=frac, it=0, delta=delta, return_sorted=False)``. Rows already in
    ascending ``x`` (a bootstrap draw: ``training.evaluate.bootstrap_draws``) are not
    sorted again; others are sorted as statsmodels sorts them."""
    x = np.ascontiguousarray(x, dtype=float)
    y = np.ascontiguousarray(y, dtype=float)
    if len(x) < 2 or bool(np.all(x[1:] >= x[:-1])):
        return _lowess_sorted(y, x, frac, delta)
    order = np.argsort(x)
    out = np.empty(len(x))
    out[order] = _lowess_sorted(y[order], x[order], frac, delta)
    return out
