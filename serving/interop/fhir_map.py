"""The FHIR mapping table: (resource, code system, code) → record field, value, unit.

One declarative table, ``serving/interop/fhir_map.csv``, says which codes pe-risk reads and what
each becomes in the patient record (``shared/data-contract.md``). A hospital extends it
without code changes: ``PE_RISK_FHIR_MAP=/path/local.csv`` names a file in the same
columns whose rows are added (a row with the same resource, system, code and field
replaces the shipped one). The table is checked when it is loaded: an unknown field, a
value the field cannot take or a unit the record would refuse stops the service from
starting, with the file and line named.

Matching: the code system is compared exactly; the code exactly, except that ICD-10 codes
are compared without dots and in upper case, and a code ending in ``*`` matches every code
it prefixes. For each field the most specific row wins (an exact code, else the longest
prefix), so a row for ``I26.9`` overrides ``I26*`` while cisplatin still counts as both
platinum and chemotherapy.

RxNorm clinical drugs (``cisplatin 50 MG Injection``, as Synthea and mCODE code orders) reach
the ingredient rows through ``rxnorm_scd.csv``, a shipped and sourced SCD → ingredient
table consulted only when a Medication code has no row of its own; a hospital maps further
products with rows in its own table, which stays the one place it extends.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from features.contract import BY_NAME, Kind
from features.units import LAB_UNITS, UnitError, factor

SHIPPED = Path(__file__).with_name("fhir_map.csv")
#: RxNorm clinical drugs → ingredient, so ingredient rows apply to drug-product codes
SCD_INGREDIENTS = Path(__file__).with_name("rxnorm_scd.csv")
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
COLUMNS = (
    "resource",
    "system",
    "code",
    "field",
    "value",
    "unit",
    "annotation",
    "max_age_days",
    "display",
    "source",
)
RESOURCES = frozenset(
    {
        "Observation",
        "Condition",
        "Condition.provisional",
        "Medication",
        "Procedure",
        "Answer",
        "Extension",
        "AllergyIntolerance",
        "ServiceRequest",
    }
)
#: fields that are not in the record but steer the mapping
PSEUDO_FIELDS = {"lung_cancer": Kind.BOOLEAN, "boolean": Kind.BOOLEAN}
DAYS_SINCE = "days_since"


class MapTableError(ValueError):
    """A row of a mapping table that pe-risk cannot use; names the file and line."""


@dataclass(frozen=True, slots=True)
class MapRow:
    resource: str
    system: str
    code: str
    field: str
    value: str
    unit: tuple[str, ...]
    annotation: str
    max_age_days: int | None
    display: str
    source: str

    @property
    def kind(self) -> Kind:
        return field_kind(self.field)

    def typed_value(self, raw: str | None = None) -> object:
        """``raw`` (default: the row's ``value``) as the record field's JSON type."""
        text = self.value if raw is None else raw
        return typed(self.field, self.kind, text)


def field_kind(field: str) -> Kind:
    """The JSON type of a record field or of a pseudo-field of the table."""
    return PSEUDO_FIELDS.get(field) or BY_NAME[field].kind


def typed(field: str, kind: Kind, text: str) -> object:
    if kind is Kind.BOOLEAN:
        if text not in ("true", "false"):
            raise ValueError(f"{field} takes true or false, not {text!r}")
        return text == "true"
    if kind is Kind.INTEGER:
        return int(text)
    if kind in (Kind.NUMBER, Kind.LAB):
        return float(text)
    if kind is Kind.CATEGORY and text not in BY_NAME[field].choices:
        raise ValueError(f"{field} takes one of {list(BY_NAME[field].choices)}, not {text!r}")
    return text


def normal_code(system: str, code: str) -> str:
    """Codes as the table compares them: ICD-10 without dots, upper case."""
    code = code.strip()
    return code.replace(".", "").upper() if "icd-10" in system.lower() else code


def _check(row: MapRow, where: str) -> None:
    if row.resource not in RESOURCES:
        raise MapTableError(f"{where}: resource {row.resource!r}; use one of {sorted(RESOURCES)}")
    if row.field not in BY_NAME and row.field not in PSEUDO_FIELDS:
        raise MapTableError(f"{where}: field {row.field!r} is not in the data contract")
    if not row.system:
        raise MapTableError(f"{where}: the code system is empty")
    if not row.code and row.resource != "Extension":
        raise MapTableError(f"{where}: the code is empty")
    if row.value and row.value != DAYS_SINCE:
        try:
            row.typed_value()
        except ValueError as exc:
            raise MapTableError(f"{where}: {exc}") from None
    if row.value == DAYS_SINCE and row.kind is not Kind.INTEGER:
        raise MapTableError(f"{where}: {DAYS_SINCE} needs an integer field, not {row.field}")
    if row.field in LAB_UNITS:
        for unit in row.unit:
            try:
                factor(row.field, unit)
            except UnitError as exc:
                raise MapTableError(f"{where}: {exc}") from None
    if row.annotation and row.field not in LAB_UNITS:
        raise MapTableError(f"{where}: an annotation applies to lab fields only")


def read_rows(path: Path) -> Iterator[MapRow]:
    """The rows of one table file; lines whose first cell starts with ``#`` are comments."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise MapTableError(f"{path}:1: the header must be {','.join(COLUMNS)}")
        for line, cells in enumerate(reader, start=2):
            if not cells or cells[0].lstrip().startswith("#") or not any(cells):
                continue
            if len(cells) != len(COLUMNS):
                raise MapTableError(f"{path}:{line}: {len(cells)} cells, expected {len(COLUMNS)}")
            c = dict(zip(COLUMNS, (x.strip() for x in cells), strict=True))
            try:
                max_age = int(c["max_age_days"]) if c["max_age_days"] else None
            except ValueError:
                raise MapTableError(
                    f"{path}:{line}: max_age_days {c['max_age_days']!r} is not a whole number"
                ) from None
            row = MapRow(
                resource=c["resource"],
                system=c["system"],
                code=normal_code(c["system"], c["code"]),
                field=c["field"],
                value=c["value"],
                unit=tuple(u for u in c["unit"].split("|") if u),
                annotation=c["annotation"],
                max_age_days=max_age,
                display=c["display"],
                source=c["source"],
            )
            _check(row, f"{path}:{line}")
            yield row


class MapTable:
    """The rows indexed for lookup: (resource, system) → code → rows."""

    def __init__(
        self, rows: Iterable[MapRow], ingredients: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self.ingredients = dict(ingredients or {})
        merged: dict[tuple[str, str, str, str], MapRow] = {}
        for row in rows:  # later files replace earlier rows with the same key
            merged[(row.resource, row.system, row.code, row.field)] = row
        self.rows = tuple(merged.values())
        self._exact: dict[tuple[str, str, str], list[MapRow]] = {}
        self._prefix: dict[tuple[str, str], list[tuple[str, MapRow]]] = {}
        for row in self.rows:
            if row.code.endswith("*"):
                self._prefix.setdefault((row.resource, row.system), []).append((row.code[:-1], row))
            else:
                self._exact.setdefault((row.resource, row.system, row.code), []).append(row)

    def lookup(self, resource: str, system: str | None, code: str | None) -> list[MapRow]:
        """The rows for one coding: for each field, the most specific row (an exact code,
        else the longest matching prefix), so cisplatin is both platinum and chemotherapy."""
        if not system or not code:
            return []
        code = normal_code(system, code)
        found = self._lookup(resource, system, code)
        if not found and resource == "Medication" and system == RXNORM:
            found = [
                r
                for ing in self.ingredients.get(code, ())
                for r in self._lookup(resource, system, ing)
            ]
        return found

    def _lookup(self, resource: str, system: str, code: str) -> list[MapRow]:
        best: dict[str, tuple[int, MapRow]] = {}
        for row in self._exact.get((resource, system, code), ()):
            best[row.field] = (len(code) + 1, row)
        for prefix, row in self._prefix.get((resource, system), ()):
            if code.startswith(prefix) and len(prefix) > best.get(row.field, (-1,))[0]:
                best[row.field] = (len(prefix), row)
        return [row for _, row in best.values()]

    def answer(self, field: str, system: str | None, code: str | None) -> MapRow | None:
        """The row that turns a coded answer into ``field``'s value (or a generic boolean)."""
        for name in (field, "boolean") if field_kind(field) is Kind.BOOLEAN else (field,):
            rows = [r for r in self.lookup("Answer", system, code) if r.field == name]
            if rows:
                return rows[0]
        return None

    def extension(self, url: str) -> MapRow | None:
        rows = self._exact.get(("Extension", url, ""))
        return rows[0] if rows else None

    def codes(self, resource: str) -> list[tuple[str, str]]:
        """(system, code) pairs of one resource kind, for prefetch queries (no prefixes)."""
        return sorted(
            {(r.system, r.code) for r in self.rows if r.resource == resource and "*" not in r.code}
        )


def read_ingredients(path: Path) -> dict[str, tuple[str, ...]]:
    """``rxnorm_scd.csv``: RxNorm clinical drug → its ingredients (comment lines skipped)."""
    out: dict[str, tuple[str, ...]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["scd", "ingredient"]:
            raise MapTableError(f"{path}:1: the header must start scd,ingredient")
        for line, cells in enumerate(reader, start=2):
            if not cells or cells[0].lstrip().startswith("#") or not any(cells):
                continue
            scd, ingredient = cells[0].strip(), cells[1].strip()
            if not scd.isdigit() or not ingredient.isdigit():
                raise MapTableError(f"{path}:{line}: RxNorm codes are digits, not {cells[:2]}")
            out[scd] = (*out.get(scd, ()), ingredient)
    return out


@cache
def load_table(extra: Path | None = None) -> MapTable:
    """The shipped table, plus the hospital's rows from ``extra`` (``PE_RISK_FHIR_MAP``)."""
    rows = list(read_rows(SHIPPED))
    if extra is not None:
        rows += list(read_rows(extra))
    table = MapTable(rows, read_ingredients(SCD_INGREDIENTS))
    for scd, ingredients in table.ingredients.items():
        for ing in ingredients:
            if not table.lookup("Medication", RXNORM, ing):
                raise MapTableError(
                    f"{SCD_INGREDIENTS}: {scd} leads to ingredient {ing}, which no Medication "
                    "row maps"
                )
    return table
