"""A hospital's export read as the data contract, declared once in a small file (issue 21).

Real exports carry their own column names, codes and unit spellings, and columns pe-risk
does not read. A column map (YAML or JSON) says how to read them::

    columns:            # your column: contract field (or <lab>_unit, an outcome, site...)
      sex_code: sex
      tnm_stage: stage
      ddimer: d_dimer
      ddimer_units: d_dimer_unit
    values:             # contract field: {your value: contract value}
      sex: {M: male, F: female}
      stage: {IA: I, IB: I, IIIA: III, IVB: IV}
    units:              # lab: the unit of every row, or {your unit: UCUM unit}
      platelets: 10*9/L
      d_dimer: {"ng/mL FEU": "ng/mL{FEU}", "ng/mL DDU": "ng/mL{DDU}"}
    ignore: [mrn_hash, discharge_ward]   # columns not for pe-risk (no notice about them)

``pe-risk validate --map`` and ``pe-risk train --map`` apply it; a model trained with a
map keeps it, and its MLflow pyfunc applies it to every table it is given, so the same
export scores as it trained. The map is checked when it is read: every target must be a
contract field and value, every unit one the field accepts (``features.units``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import BY_NAME, OUTCOME, TABLE_META, TIME_OUTCOMES, Kind
from features.table import UNIT_SUFFIX, split_unit_cells
from features.units import LAB_UNITS, UnitError, factor

_SECTIONS = ("columns", "values", "units", "ignore")


class MapError(ValueError):
    """A column map that cannot be applied: names the entry, the value and what is accepted."""


def _targets() -> set[str]:
    return {
        *BY_NAME,
        OUTCOME,
        *TIME_OUTCOMES,
        *TABLE_META,
        *(f"{k}{UNIT_SUFFIX}" for k in LAB_UNITS),
    }


@dataclass(frozen=True)
class ColumnMap:
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    units: dict[str, str | dict[str, str]] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    source: str = ""

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "") -> ColumnMap:
        """Check every entry (``MapError`` names the first wrong one)."""
        where = source or "the column map"
        if not isinstance(doc, Mapping):
            raise MapError(f"{where}: give a mapping with the sections {', '.join(_SECTIONS)}")
        unknown = [k for k in doc if k not in (*_SECTIONS, "source")]
        if unknown:
            raise MapError(f"{where}: {unknown[0]!r} is not a section; use {', '.join(_SECTIONS)}")
        for section, kind in (
            ("columns", Mapping),
            ("values", Mapping),
            ("units", Mapping),
            ("ignore", list),
        ):
            if doc.get(section) is not None and not isinstance(doc[section], kind):
                shape = "a list of column names" if kind is list else "a mapping"
                raise MapError(f"{where}: {section}: give {shape}")
        columns = {str(k): str(v) for k, v in (doc.get("columns") or {}).items()}
        targets = _targets()
        for theirs, ours in columns.items():
            if ours not in targets:
                raise MapError(
                    f"{where}: columns.{theirs}: {ours!r} is not a column of the data contract"
                )
        seen: dict[str, str] = {}
        for theirs, ours in columns.items():
            if ours in seen:
                raise MapError(
                    f"{where}: columns {seen[ours]!r} and {theirs!r} both map to {ours!r}"
                )
            seen[ours] = theirs
        values = {}
        for name, table in (doc.get("values") or {}).items():
            spec = BY_NAME.get(str(name))
            if spec is None or spec.kind not in (Kind.CATEGORY, Kind.BOOLEAN):
                raise MapError(
                    f"{where}: values.{name}: values are mapped for category and yes/no fields"
                )
            if not isinstance(table, Mapping):
                raise MapError(f"{where}: values.{name}: give {{your value: contract value}}")
            for theirs, ours in table.items():
                if isinstance(theirs, bool):
                    raise MapError(
                        f"{where}: values.{name}: a key read as {str(theirs).lower()}: YAML "
                        "reads yes/no/on/off/true/false as booleans; quote the code as the "
                        'export writes it ("yes": true)'
                    )
                ok = ours in spec.choices if spec.kind is Kind.CATEGORY else isinstance(ours, bool)
                if not ok:
                    accepted = (
                        ", ".join(spec.choices) if spec.kind is Kind.CATEGORY else "true, false"
                    )
                    raise MapError(
                        f"{where}: values.{name}.{theirs}: {ours!r} is not accepted; give one of "
                        f"{accepted}"
                    )
            values[str(name)] = {str(k): v for k, v in table.items()}
        units: dict[str, str | dict[str, str]] = {}
        renamed = set(columns.values())
        for lab, given in (doc.get("units") or {}).items():
            if lab not in LAB_UNITS:
                raise MapError(
                    f"{where}: units.{lab}: units are given for labs: {', '.join(LAB_UNITS)}"
                )
            if not isinstance(given, str | Mapping):
                raise MapError(f"{where}: units.{lab}: give a unit, or {{your unit: UCUM unit}}")
            if isinstance(given, str) and lab not in renamed:
                raise MapError(
                    f"{where}: units.{lab}: a unit for every row needs the export's own name "
                    f"for the column under columns (e.g. plt: {lab}); a table with a column "
                    f"named {lab} is the contract's, in its canonical unit"
                )
            for unit in [given] if isinstance(given, str) else dict(given).values():
                try:
                    factor(str(lab), unit)
                except UnitError as err:
                    raise MapError(f"{where}: units.{lab}: {err}") from None
            units[str(lab)] = (
                given if isinstance(given, str) else {str(k): v for k, v in given.items()}
            )
        ignore = tuple(str(c) for c in doc.get("ignore") or ())
        both = sorted(set(ignore) & set(columns))
        if both:
            raise MapError(f"{where}: {both[0]!r} is both mapped (columns) and ignored")
        return cls(columns, values, units, ignore, str(doc.get("source") or source))

    def as_dict(self) -> dict[str, Any]:
        """What the model keeps (JSON), ``from_dict`` reads back."""
        out = asdict(self)
        out["ignore"] = list(self.ignore)
        return out

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its columns renamed, its values and units mapped and the ignored
        columns dropped (a copy; values the map does not name are left for validation)."""
        df = frame.drop(columns=[c for c in self.ignore if c in frame.columns])
        clash = [
            ours
            for theirs, ours in self.columns.items()
            if theirs in df.columns and ours in df.columns and ours != theirs
        ]
        if clash:
            theirs = next(t for t, o in self.columns.items() if o == clash[0])
            raise MapError(
                f"the table has both {clash[0]!r} and {theirs!r}, which the map names "
                f"{clash[0]!r}: drop one, or list it under ignore"
            )
        renamed = {ours for theirs, ours in self.columns.items() if theirs in df.columns}
        df = split_unit_cells(df.rename(columns=self.columns))  # {value, unit} cells too
        for name, table in self.values.items():
            if name in df.columns:
                df[name] = [_mapped(table, v) for v in df[name].to_numpy(object)]
        for lab, given in self.units.items():
            column = f"{lab}{UNIT_SUFFIX}"
            if isinstance(given, str):
                if lab in renamed:  # the export's column: its blank units are the map's
                    units = df[column] if column in df.columns else pd.Series(None, df.index)
                    blank = units.isna() | (units.astype(str).str.strip() == "")
                    df[column] = units.astype(object).where(~blank, given)
            elif column in df.columns:
                df[column] = [
                    given.get(v.strip(), v) if isinstance(v, str) else v
                    for v in df[column].to_numpy(object)
                ]
        return df


def _mapped(table: dict[str, Any], v: Any) -> Any:
    """``v`` through ``table`` (a float code 1.0 from a Parquet column with NaN is "1")."""
    if isinstance(v, float) and v.is_integer():
        key = str(int(v))
    elif isinstance(v, str | int) and not isinstance(v, bool):
        key = str(v).strip()
    else:
        return v
    return table.get(key, v)


def load_map(path: str | Path) -> ColumnMap:
    """Read a column map from YAML or JSON (``MapError`` when it cannot be used)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise MapError(f"{path}: cannot be read as a column map: {exc}") from None
    return ColumnMap.from_dict(doc or {}, str(path))


def read_mapped(path: str | Path, column_map: str | Path | ColumnMap | None = None) -> pd.DataFrame:
    """A table as read (``features.table.read_table``), through ``column_map`` when given."""
    from features.table import read_table

    frame = read_table(path)
    if column_map is None:
        return frame
    cmap = column_map if isinstance(column_map, ColumnMap) else load_map(column_map)
    return cmap.apply(frame)
