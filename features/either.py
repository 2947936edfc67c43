"""Operations that mean the same on array columns and on one record's Python scalars.

The clinical scores and the derived predictors are written once, in these operations and
in Python's operators (NaN compares False and is the only value unequal to itself), so
that the same code evaluates 100,000 training rows as numpy arrays and the service's one
record as Python floats, bools and strings: a numpy call on a one-element array costs
about 0.3–1 µs, the same operation on a float some 30 ns, and one answer runs several
hundred of them (issue 22).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from functools import reduce
from typing import Any

import numpy as np

#: comparison operators by their symbol; on arrays they compare element by element
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def one_record(columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The only row of array columns as Python scalars (float, NaN for unknown; text or None)."""
    return {k: v.tolist()[0] for k, v in columns.items()}


def is_known(x: Any) -> Any:
    """Not NaN."""
    return x == x  # NaN only is unequal to itself


def negate(x: Any) -> Any:
    """Logical not of a bool array or a bool (``~True`` is −2)."""
    return x ^ True


def any_true(parts: Iterable[Any]) -> Any:
    return reduce(operator.or_, parts, False)


def all_true(parts: Iterable[Any]) -> Any:
    return reduce(operator.and_, parts, True)


def where(condition: Any, yes: Any, no: Any) -> Any:
    """``np.where`` on arrays; ``yes if condition else no`` on one record."""
    if isinstance(condition, np.ndarray):
        return np.where(condition, yes, no)
    return yes if condition else no


def constant(columns: Mapping[str, Any], value: bool) -> Any:
    """``value`` for every row of ``columns`` (a bool array, or a bool for one record)."""
    age = columns["age"]
    return np.full(len(age), value) if isinstance(age, np.ndarray) else value
