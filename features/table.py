"""Tables of patient records (CSV, Parquet): vectorised validation and a row report.

A training table holds one record per row in the fields of the data contract, plus
its outcome: ``pe_event`` (PE within 180 days, complete follow-up assumed) and/or the
time-to-event columns ``pe_days``, ``death_days`` and ``followup_days`` (data-contract.md,
"Outcome"), and optionally ``site`` / ``index_date``. A lab column may
have a companion ``<field>_unit`` column with a UCUM unit per row (blank means the
canonical unit). Every row is checked with the rules of ``features.contract`` and the
messages of ``features.records``, column by column with numpy, and *every* bad row is
reported (row number, field, value, rule), not just the first.

Row numbers are 1-based data rows: row 1 is the first row under the header (line 2
of a CSV file).
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import (
    BY_NAME,
    DEATH_DAYS,
    FIELDS,
    FOLLOWUP_DAYS,
    HORIZONS_DAYS,
    OUTCOME,
    PE_DAYS,
    REQUIRED,
    TABLE_META,
    TIME_OUTCOMES,
    FieldSpec,
    Kind,
)
from features.messages import (
    FieldIssue,
    choice_issue,
    closest_field,
    missing_issue,
    range_issue,
    show,
    type_issue,
    unit_issue,
)
from features.units import (
    DDU_CAVEAT,
    DDU_UNITS,
    LAB_UNITS,
    UnitError,
    convert_column,
    factor,
    normalise_unit,
)

UNIT_SUFFIX = "_unit"
_TRUE = frozenset({"true", "1", "1.0"})
_FALSE = frozenset({"false", "0", "0.0"})


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A problem in one cell (``row`` is None for a problem with the whole table)."""

    row: int | None
    field: str
    value: Any
    rule: str
    message: str


@dataclass
class TableReport:
    """The outcome of validating a table.

    ``columns`` holds every field in canonical form (floats with NaN for numbers,
    booleans and integers; objects with None for categories and text), for all rows;
    ``bad_rows`` says which rows failed. ``table_issues`` are problems with the table
    itself (unknown or missing columns) that make every row unusable.
    """

    n_rows: int
    columns: dict[str, np.ndarray]
    issues: list[RowIssue] = field(default_factory=list)
    bad: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    outcome: np.ndarray | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``pe_days``, ``death_days``, ``followup_days`` (floats, NaN = absent) when the table
    #: has the time-to-event columns; empty otherwise
    times: dict[str, np.ndarray] = field(default_factory=dict)
    #: what is worth knowing but invalidates nothing: columns that are not read
    notices: list[RowIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def n_bad(self) -> int:
        return int(self.bad.sum())

    def good(self) -> TableReport:
        """The same report restricted to the rows that passed."""
        keep = ~self.bad
        return TableReport(
            n_rows=int(keep.sum()),
            columns={k: v[keep] for k, v in self.columns.items()},
            issues=[],
            bad=np.zeros(int(keep.sum()), dtype=bool),
            outcome=None if self.outcome is None else self.outcome[keep],
            meta={k: v[keep] for k, v in self.meta.items()},
            times={k: v[keep] for k, v in self.times.items()},
            notices=self.notices,
        )

    def frame(self, *, with_outcome: bool = True) -> pd.DataFrame:
        """The canonical table as a DataFrame in contract order (booleans as 0/1/NaN)."""
        df = pd.DataFrame({f.name: self.columns[f.name] for f in FIELDS})
        for name, values in self.meta.items():
            df[name] = values
        if with_outcome and self.outcome is not None:
            df[OUTCOME] = self.outcome
        if with_outcome:
            for name, values in self.times.items():
                df[name] = values
        return df


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as it is (no coercion: validation does that)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt", ".gz"):
        # keep_default_na with only empty cells as missing: "NA" in a category is an error
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    raise ValueError(f"{path}: unsupported table format {suffix!r}; give a .csv or .parquet file")


def validate_table(df: pd.DataFrame, *, require_outcome: bool = False) -> TableReport:
    """Validate every row of ``df`` against the data contract, vectorised.

    Parameters
    ----------
    df : DataFrame
        Columns named as in the data contract; values as read from CSV (strings) or
        Parquet (typed).
    require_outcome : bool
        When True (training), a table with neither ``pe_event`` nor the time-to-event
        columns is an error. Outcome values are checked whenever their columns are there.
    """
    df = split_unit_cells(df)
    n = len(df)
    issues: list[RowIssue] = []
    notices: list[RowIssue] = []
    bad = np.zeros(n, dtype=bool)
    columns: dict[str, np.ndarray] = {}

    outcomes = (OUTCOME, *TIME_OUTCOMES)
    allowed = {*BY_NAME, *outcomes, *TABLE_META, *(f"{lab}{UNIT_SUFFIX}" for lab in LAB_UNITS)}
    unread = []
    known = (*outcomes, *TABLE_META, *(f"{lab}{UNIT_SUFFIX}" for lab in LAB_UNITS))
    for col in df.columns:
        if col in allowed:
            continue
        meant = contract_spelling(str(col), allowed) or closest_field(str(col), known)
        if meant:  # a contract column spelt otherwise: never silently unread
            issues.append(
                RowIssue(
                    None,
                    str(col),
                    None,
                    "unknown_field",
                    f"{str(col)!r} is not a column of the data contract; did you mean "
                    f"{meant!r}? (column names are as in the contract, lower case)",
                )
            )
        else:
            unread.append(str(col))
    if unread:  # an export's own columns (identifiers, wards...): a notice, no row is bad
        notices.append(
            RowIssue(
                None,
                ", ".join(unread),
                None,
                "not_read",
                f"{len(unread)} column{'s' if len(unread) > 1 else ''} not in the data contract "
                f"{'are' if len(unread) > 1 else 'is'} not read: {', '.join(unread)} (map "
                "them to contract fields with a column map, or list them under its ignore)",
            )
        )
    for name in REQUIRED:
        if name not in df.columns:
            issues.append(
                RowIssue(None, name, None, "required", f"required column {name!r} is missing")
            )

    for spec in FIELDS:
        raw = df[spec.name].to_numpy(dtype=object) if spec.name in df.columns else None
        if raw is None:
            columns[spec.name] = _empty(spec, n)
            continue
        units = df.get(f"{spec.name}{UNIT_SUFFIX}")
        values, cell_issues = _check_column(
            spec, raw, None if units is None else units.to_numpy(object)
        )
        if units is not None and spec.name == "d_dimer":  # as a record's warning says it
            ddu = int(sum(isinstance(u, str) and normalise_unit(u) in DDU_UNITS for u in units))
            if ddu:
                notices.append(
                    RowIssue(
                        None,
                        spec.name,
                        None,
                        "converted",
                        f"{ddu} d_dimer value{'s were' if ddu > 1 else ' was'} given in DDU and "
                        f"converted to mg/L FEU {DDU_CAVEAT}",
                    )
                )
        columns[spec.name] = values
        for row, issue in cell_issues:
            issues.append(RowIssue(row + 1, issue.field, issue.value, issue.rule, issue.message))
            bad[row] = True

    outcome = None
    if OUTCOME in df.columns:
        outcome, out_bad = _check_outcome(df[OUTCOME].to_numpy(object))
        for row in np.flatnonzero(out_bad):
            v = _py(df[OUTCOME].iloc[row])
            blank = v is None or (isinstance(v, float) and v != v) or str(v).strip() == ""
            text = (
                f"{OUTCOME} is blank; give 0 or 1 (a row whose outcome is not known cannot "
                "train: leave it out, or give the time-to-event columns)"
                if blank
                else f"{OUTCOME}={show(v)} is not accepted; give 0 or 1"
            )
            issues.append(RowIssue(int(row) + 1, OUTCOME, None if blank else v, "outcome", text))
        bad |= out_bad
    times, time_issues = _check_times(df, outcome)
    for issue in time_issues:
        issues.append(issue)
        if issue.row is not None:
            bad[issue.row - 1] = True
    if require_outcome and outcome is None and not times and not time_issues:
        issues.append(
            RowIssue(
                None,
                OUTCOME,
                None,
                "required",
                f"training needs an outcome: the column {OUTCOME!r} (0/1, PE within 180 days, "
                f"complete follow-up) or the time-to-event columns {', '.join(TIME_OUTCOMES)}",
            )
        )

    if any(i.row is None for i in issues):
        bad[:] = True
    meta = {m: df[m].to_numpy(object) for m in TABLE_META if m in df.columns}
    issues.sort(key=lambda i: (-1 if i.row is None else i.row, i.field))
    return TableReport(n, columns, issues, bad, outcome, meta, times, notices)


def contract_spelling(name: str, allowed: Iterable[str]) -> str | None:
    """The contract column ``name`` spells otherwise (``D_Dimer``, ``d-dimer``, ``Age``)."""
    folded = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return folded if folded != name and folded in set(allowed) else None


def split_unit_cells(df: pd.DataFrame) -> pd.DataFrame:
    """A lab column holding the record's ``{"value": 1800, "unit": "ng/mL{FEU}"}`` cells as
    a value column and its ``<lab>_unit`` column (what the API accepts, a table accepts)."""
    split = {}
    for lab in LAB_UNITS:
        if lab not in df.columns or df[lab].dtype != object:
            continue
        cells = df[lab].to_numpy(object)
        # only the record's own form; any other dict stays, and is refused as not a number
        dicts = np.array(
            [isinstance(v, dict) and "value" in v and set(v) <= {"value", "unit"} for v in cells]
        )
        if not dicts.any():
            continue
        unit_col = f"{lab}{UNIT_SUFFIX}"
        units = (
            df[unit_col].to_numpy(object).copy()
            if unit_col in df.columns
            else np.full(len(df), None, dtype=object)
        )
        values = cells.copy()
        for r in np.flatnonzero(dicts):
            values[r] = cells[r]["value"]
            if cells[r].get("unit") is not None:
                units[r] = cells[r]["unit"]
        split[lab], split[unit_col] = values, units
    return df.assign(**split) if split else df


def _empty(spec: FieldSpec, n: int) -> np.ndarray:
    if spec.kind in (Kind.CATEGORY, Kind.TEXT):
        return np.full(n, None, dtype=object)
    return np.full(n, np.nan)


def _is_missing(raw: np.ndarray) -> np.ndarray:
    return pd.isna(raw) | np.array(
        [isinstance(v, str) and v.strip() == "" for v in raw], dtype=bool
    )


def _check_column(
    spec: FieldSpec, raw: np.ndarray, units: np.ndarray | None
) -> tuple[np.ndarray, list[tuple[int, FieldIssue]]]:
    missing = _is_missing(raw)
    found: list[tuple[int, FieldIssue]] = []

    if spec.required:
        found += [(int(r), missing_issue(spec)) for r in np.flatnonzero(missing)]

    if spec.kind in (Kind.CATEGORY, Kind.TEXT):
        out = np.where(missing, None, raw).astype(object)
        if spec.kind is Kind.CATEGORY:
            wrong = ~missing & ~np.isin(out.astype(str), spec.choices)
            found += [(int(r), choice_issue(spec, _py(raw[r]))) for r in np.flatnonzero(wrong)]
        else:
            out = np.array([None if v is None else str(v) for v in out], dtype=object)
            long = np.array([v is not None and len(v) > (spec.max_length or 10**9) for v in out])
            found += [
                (
                    int(r),
                    FieldIssue(
                        spec.name,
                        str(out[r])[:80],
                        "length",
                        f"{spec.name} is longer than {spec.max_length} characters",
                    ),
                )
                for r in np.flatnonzero(long)
            ]
        bad = np.zeros(len(raw), dtype=bool)
        bad[[r for r, _ in found]] = True
        out[bad] = None
        return out, found

    if spec.kind is Kind.BOOLEAN:
        text = np.array([str(v).strip().lower() for v in raw], dtype=object)
        is_true = np.isin(text, list(_TRUE)) & ~missing
        is_false = np.isin(text, list(_FALSE)) & ~missing
        wrong = ~missing & ~is_true & ~is_false
        found += [(int(r), type_issue(spec, _py(raw[r]))) for r in np.flatnonzero(wrong)]
        out = np.where(is_true, 1.0, np.where(is_false, 0.0, np.nan))
        return out, found

    # numbers, integers, labs
    as_num = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    wrong = ~missing & ~np.isfinite(as_num)
    if spec.kind is Kind.INTEGER:
        wrong |= ~missing & np.isfinite(as_num) & (np.round(as_num) != as_num)
    found += [(int(r), type_issue(spec, _py(raw[r]))) for r in np.flatnonzero(wrong)]
    out = np.where(wrong | missing, np.nan, as_num)

    given_units = None
    if spec.kind is Kind.LAB and units is not None:
        given_units = units
        out, unit_bad = convert_column(spec.name, out, units)
        for r in np.flatnonzero(unit_bad & ~missing & ~wrong):
            try:
                factor(spec.name, units[r])
            except UnitError as err:
                found.append(
                    (int(r), unit_issue(spec, {"value": _py(as_num[r]), "unit": units[r]}, err))
                )
    assert spec.hard is not None
    lo, hi = spec.hard
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(out) & ((out < lo) | (out > hi))
    for r in np.flatnonzero(outside):
        unit = (
            given_units[r]
            if given_units is not None and isinstance(given_units[r], str) and given_units[r]
            else None
        )
        given = {"value": _py(as_num[r]), "unit": unit} if unit else _py(as_num[r])
        issue = range_issue(spec, given, float(out[r]))
        found.append((int(r), issue))
    rows_bad = np.zeros(len(raw), dtype=bool)
    rows_bad[[r for r, _ in found]] = True
    out = np.where(rows_bad, np.nan, out)
    return out, found


def _check_outcome(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    num = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(num, (0.0, 1.0))
    return np.where(bad, np.nan, num), bad


#: days from the index date: the rule each time-to-event column follows, as messages state it
_TIME_RULES = {
    PE_DAYS: "a number of days ≥ 0 (0 = PE found by the work-up at the index assessment), "
    "or blank for no PE seen during follow-up",
    DEATH_DAYS: "a number of days ≥ 0, or blank for alive at last contact",
    FOLLOWUP_DAYS: "a number of days > 0 (to last contact, death or the data cut-off)",
}
#: pe_event is PE within the longest horizon, 180 days (data-contract.md, "Outcome")
HORIZON_OF_PE_EVENT = HORIZONS_DAYS[-1]


def _check_times(
    df: pd.DataFrame, outcome: np.ndarray | None
) -> tuple[dict[str, np.ndarray], list[RowIssue]]:
    """The time-to-event columns as floats (NaN = absent) and every row that breaks a rule:
    a value that is not a number of days, a PE or a death after the end of follow-up, a death
    before the PE, follow-up going on after death, a ``pe_event`` that disagrees with
    ``pe_days`` (data-contract.md, "Outcome")."""
    present = [c for c in TIME_OUTCOMES if c in df.columns]
    if not present:
        return {}, []
    n = len(df)
    issues: list[RowIssue] = []
    if FOLLOWUP_DAYS not in df.columns:
        issues.append(
            RowIssue(
                None,
                FOLLOWUP_DAYS,
                None,
                "required",
                f"{FOLLOWUP_DAYS!r} is required with {' and '.join(present)}: without the end "
                "of follow-up a row without PE cannot be told from one lost to follow-up",
            )
        )
    times: dict[str, np.ndarray] = {}
    for name in TIME_OUTCOMES:
        raw = df[name].to_numpy(object) if name in df.columns else np.full(n, None, dtype=object)
        missing = _is_missing(raw)
        num = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
        low = num <= 0 if name == FOLLOWUP_DAYS else num < 0
        wrong = ~missing & (~np.isfinite(num) | low)
        if name == FOLLOWUP_DAYS and name in df.columns:
            wrong |= missing
        for r in np.flatnonzero(wrong):
            v = _py(raw[r]) if not missing[r] else None
            issues.append(
                RowIssue(
                    int(r) + 1,
                    name,
                    v,
                    "days",
                    f"{name}={show(v)} is not accepted; give {_TIME_RULES[name]}",
                )
            )
        times[name] = np.where(wrong | missing, np.nan, num)
    pe, death, follow = times[PE_DAYS], times[DEATH_DAYS], times[FOLLOWUP_DAYS]

    def rule(mask: np.ndarray, name: str, text: Any) -> None:
        for r in np.flatnonzero(mask):
            v = times[name][r]
            issues.append(RowIssue(int(r) + 1, name, None if v != v else _py(v), "order", text(r)))

    with np.errstate(invalid="ignore"):
        rule(
            (pe > follow) & ~(death < pe),  # after death says more, below
            PE_DAYS,
            lambda r: (
                f"pe_days={pe[r]:g} is after the end of follow-up (followup_days="
                f"{follow[r]:g}); a PE must be seen during follow-up"
            ),
        )
        rule(
            death > follow,
            DEATH_DAYS,
            lambda r: (
                f"death_days={death[r]:g} is after the end of follow-up (followup_days="
                f"{follow[r]:g}); follow-up ends at death at the latest"
            ),
        )
        rule(
            death < pe,
            PE_DAYS,
            lambda r: (
                f"pe_days={pe[r]:g} is after death (death_days={death[r]:g}); "
                "a PE is diagnosed before death or on its day"
            ),
        )
        rule(
            death < follow,
            FOLLOWUP_DAYS,
            lambda r: (
                f"followup_days={follow[r]:g} goes on after death (death_days="
                f"{death[r]:g}); follow-up ends at death: "
                + (
                    f"give followup_days={death[r]:g}"
                    if death[r] > 0
                    else "a death on the index day leaves no follow-up; leave the row out"
                )
            ),
        )
        if outcome is not None:
            by = pe <= HORIZON_OF_PE_EVENT
            rule(
                (outcome == 1) & ~by & np.isfinite(follow),
                PE_DAYS,
                lambda r: (
                    f"pe_event=1 but pe_days={show(_py(pe[r]))} is not within "
                    f"{HORIZON_OF_PE_EVENT} days; the two columns disagree"
                ),
            )
            rule(
                (outcome == 0) & by,
                PE_DAYS,
                lambda r: (
                    f"pe_event=0 but pe_days={pe[r]:g} is within "
                    f"{HORIZON_OF_PE_EVENT} days; the two columns disagree"
                ),
            )
    return times, issues


def _py(v: Any) -> Any:
    """A numpy scalar as a plain Python value (for messages and JSON reports)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def issue_lines(issues: Sequence[RowIssue], limit: int = 20, more: str = "") -> list[str]:
    """``row N: message`` (``table: message``) for the first ``limit`` issues, then how many
    more there are, followed by ``more`` (e.g. where to find them)."""
    lines = [
        f"  {'table' if i.row is None else f'row {i.row}'}: {i.message}" for i in issues[:limit]
    ]
    if len(issues) > limit:
        lines.append(f"  … and {len(issues) - limit} more{more}")
    return lines


def write_report(issues: Iterable[RowIssue], out=None) -> None:
    """Write the issues as CSV (row, field, value, rule, message)."""
    writer = csv.writer(out or sys.stdout)
    writer.writerow(["row", "field", "value", "rule", "message"])
    for i in issues:
        writer.writerow(
            [
                "" if i.row is None else i.row,
                i.field,
                "" if i.value is None else i.value,
                i.rule,
                i.message,
            ]
        )
