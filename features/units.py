"""Laboratory units: the accepted UCUM codes of each lab field and their conversion.

A lab value arrives as a bare number in the canonical unit, or as
``{"value": x, "unit": "<UCUM>"}``. The unit is looked up here, exactly (after
``µ`` → ``u``); anything else is rejected, never guessed.

Conversion factors (canonical = value × factor), with sources from
``shared/reference/clinical.md`` §4:

- D-dimer: 1 µg/mL = 1 mg/L = 1000 ng/mL = 1000 µg/L (labtests.co.in [V]);
  FEU ≈ 2 × DDU (Fritsma, fritsmafactor.com [V]; approximate and assay-dependent,
  so a DDU value is converted with a warning, see ``features.records``).
- Haemoglobin: 1 g/dL = 10 g/L; 1 mmol/L (Fe4) = 16.11 g/L (data contract).
- Platelets, leukocytes: 1 × 10³/µL = 1 × 10⁹/L.
- PaO₂: 1 kPa = 7.50062 mmHg.
- Troponin: 1 µg/L = 1000 ng/L; 1 pg/mL = 1 ng/L.
- NT-proBNP: 1 ng/L = 1 pg/mL.
- Creatinine: 1 mg/dL = 88.4 µmol/L.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LabUnits:
    """The accepted units of one lab field."""

    canonical: str  # UCUM code of the canonical unit
    factors: dict[str, float]  # UCUM code → factor to the canonical unit
    note: str = ""  # what to tell a user about this analyte's units


LAB_UNITS: dict[str, LabUnits] = {
    "d_dimer": LabUnits(
        "mg/L{FEU}",
        {
            "mg/L{FEU}": 1.0,
            "ug/mL{FEU}": 1.0,
            "ng/mL{FEU}": 1e-3,
            "ug/L{FEU}": 1e-3,
            "mg/L{DDU}": 2.0,
            "ug/mL{DDU}": 2.0,
            "ng/mL{DDU}": 2e-3,
            "ug/L{DDU}": 2e-3,
        },
        note="say whether the assay reports FEU or DDU, e.g. 'ng/mL{FEU}'",
    ),
    "platelets": LabUnits("10*9/L", {"10*9/L": 1.0, "10*3/uL": 1.0}),
    "hemoglobin": LabUnits("g/L", {"g/L": 1.0, "g/dL": 10.0, "mmol/L": 16.11}),
    "leukocytes": LabUnits("10*9/L", {"10*9/L": 1.0, "10*3/uL": 1.0}),
    "pao2": LabUnits("mm[Hg]", {"mm[Hg]": 1.0, "kPa": 7.50062}),
    "troponin": LabUnits("ng/L", {"ng/L": 1.0, "pg/mL": 1.0, "ug/L": 1000.0}),
    "troponin_i": LabUnits("ng/L", {"ng/L": 1.0, "pg/mL": 1.0, "ug/L": 1000.0}),
    "nt_probnp": LabUnits("pg/mL", {"pg/mL": 1.0, "ng/L": 1.0}),
    "creatinine": LabUnits("umol/L", {"umol/L": 1.0, "mg/dL": 88.4}),
    "egfr_renal": LabUnits("mL/min/{1.73_m2}", {"mL/min/{1.73_m2}": 1.0, "mL/min/1.73m2": 1.0}),
    "soluble_p_selectin": LabUnits("ng/mL", {"ng/mL": 1.0, "ug/L": 1.0}),
}

#: what a D-dimer converted from DDU is told, wherever it is converted
DDU_CAVEAT = (
    "with the approximate factor FEU ≈ 2 × DDU (assay-dependent); check against the "
    "assay's own FEU cut-off"
)
DDU_UNITS = frozenset(u for u in LAB_UNITS["d_dimer"].factors if u.endswith("{DDU}"))


class UnitError(ValueError):
    """A unit that is not accepted for a field; ``hint`` says what would be."""

    def __init__(self, field: str, unit: object, hint: str) -> None:
        self.field, self.unit, self.hint = field, unit, hint
        super().__init__(f"{field}: unit {unit!r} is not accepted; {hint}")


def normalise_unit(unit: str) -> str:
    """Spell a unit the way the table does: ``µ``/``μ`` → ``u``, surrounding blanks dropped."""
    return unit.strip().replace("µ", "u").replace("μ", "u")


def accepted_units(field: str) -> list[str]:
    """The UCUM codes accepted for ``field``, canonical first."""
    return list(LAB_UNITS[field].factors)


def factor(field: str, unit: str) -> float:
    """Factor that converts ``field`` from ``unit`` to its canonical unit.

    Raises
    ------
    UnitError
        When the unit is not one of ``accepted_units(field)``. The hint names the
        accepted list and, where the unit differs only in case or lacks the FEU/DDU
        annotation, the likely intended code.
    """
    spec = LAB_UNITS[field]
    if not isinstance(unit, str):
        raise UnitError(field, unit, f"give one of {accepted_units(field)}")
    code = normalise_unit(unit)
    if code in spec.factors:
        return spec.factors[code]
    raise UnitError(field, unit, _unit_hint(field, code))


def _unit_hint(field: str, code: str) -> str:
    spec = LAB_UNITS[field]
    accepted = accepted_units(field)
    folded = {u.lower(): u for u in accepted}
    if code.lower() in folded:
        return f"UCUM is case-sensitive: did you mean '{folded[code.lower()]}'?"
    bare = [u for u in accepted if u.split("{")[0] == code]
    if bare:
        return f"{spec.note or 'it is ambiguous'}: one of {bare}"
    squeezed = {_squeeze(u): u for u in accepted}  # "ng/mL FEU", "ng/ml(FEU)" → ng/mL{FEU}
    if _squeeze(code) in squeezed:
        return (
            f"did you mean '{squeezed[_squeeze(code)]}'? (UCUM writes an annotation such "
            f"as FEU in braces; accepted units are {accepted})"
        )
    return f"accepted units are {accepted}"


def _squeeze(unit: str) -> str:
    return "".join(c for c in unit.lower() if c.isalnum() or c in "/*^.")


def to_canonical(field: str, value: float, unit: str | None) -> float:
    """Convert one value of ``field`` given in ``unit`` (None = canonical) to the canonical unit."""
    if unit is None:
        return value
    return value * factor(field, unit)


def from_canonical(field: str, value: float, unit: str) -> float:
    """Express a canonical value of ``field`` in ``unit`` (the inverse of ``to_canonical``)."""
    return value / factor(field, unit)


def convert_column(
    field: str, values: np.ndarray, units: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised conversion of a table column with a companion unit column.

    Returns the canonical values and a boolean mask of rows whose unit was not
    accepted (their value is NaN). Empty/NaN units mean canonical.
    """
    out = values.astype(float, copy=True)
    bad = np.zeros(len(values), dtype=bool)
    blank = np.array(
        [u is None or (isinstance(u, float) and np.isnan(u)) or u == "" for u in units]
    )
    codes = np.array([normalise_unit(u) if isinstance(u, str) else "" for u in units], dtype=object)
    known = LAB_UNITS[field].factors
    for code in set(codes[~blank]):
        rows = codes == code
        if code in known:
            out[rows] *= known[code]
        else:
            bad |= rows & ~blank
    out[bad] = np.nan
    return out, bad
