"""The patient record's fields, declared once.

Everything that validates a record reads this table: the pydantic model in
``features.records`` (one JSON record) and the vectorised validator in
``features.table`` (a CSV/Parquet table). Names, kinds, canonical units, hard and
usual ranges are those of ``shared/data-contract.md``; field names are fixed there
and must not change here.

A *hard* range is a physiological or assay limit: outside it a value is rejected.
A *usual* range is the ordinary clinical range: outside it a value is accepted with
a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a field is typed on the wire."""

    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CATEGORY = "category"
    TEXT = "text"
    LAB = "lab"  # a number in the canonical unit, or {"value", "unit"}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the patient record."""

    name: str
    kind: Kind
    description: str
    unit: str = ""  # canonical unit, human-readable
    hard: tuple[float, float] | None = None
    usual: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    max_length: int | None = None
    absent_means: str = "unknown"  # what an absent value says; "unknown" for all but one field

    def range_text(self) -> str:
        """The hard range with its unit, as error messages quote it."""
        if self.hard is None:
            return ""
        lo, hi = self.hard
        unit = f" {self.unit}" if self.unit else ""
        return f"{_num(lo)}–{_num(hi)}{unit}"


def _num(x: float) -> str:
    return f"{x:g}"


def _f(name: str, kind: Kind, description: str, **kw: object) -> FieldSpec:
    return FieldSpec(name=name, kind=kind, description=description, **kw)  # type: ignore[arg-type]


N, INT, B, C, L = Kind.NUMBER, Kind.INTEGER, Kind.BOOLEAN, Kind.CATEGORY, Kind.LAB

HISTOLOGIES = ("adenocarcinoma", "squamous_cell", "large_cell", "small_cell", "other", "unknown")
STAGES = ("I", "II", "III", "IV")

FIELDS: tuple[FieldSpec, ...] = (
    # Demographics
    _f(
        "patient_id",
        Kind.TEXT,
        "Identifier echoed in the answer; never logged.",
        max_length=64,
    ),
    _f(
        "age",
        N,
        "Age at the index date.",
        unit="years",
        hard=(18, 110),
        required=True,
    ),
    _f("sex", C, "Sex.", choices=("female", "male"), required=True),
    _f(
        "bmi",
        N,
        "Body-mass index (Khorana item ≥35).",
        unit="kg/m²",
        hard=(10, 90),
        usual=(15, 50),
    ),
    _f(
        "body_weight",
        N,
        "Body weight (Cockcroft–Gault creatinine clearance for VTE-BLEED).",
        unit="kg",
        hard=(20, 400),
        usual=(40, 150),
    ),
    _f(
        "smoking_status",
        C,
        "Smoking status.",
        choices=("never", "former", "current"),
    ),
    _f("ecog", INT, "ECOG performance status.", hard=(0, 4)),
    # Tumour
    _f("histology", C, "Tumour histology.", choices=HISTOLOGIES, required=True),
    _f("stage", C, "AJCC stage group.", choices=STAGES, required=True),
    _f(
        "months_since_diagnosis",
        N,
        "Time from cancer diagnosis to the index date.",
        unit="months",
        hard=(0, 600),
    ),
    _f("egfr_mutation", B, "EGFR mutation (absent means not tested)."),
    _f("kras_mutation", B, "KRAS mutation (absent means not tested)."),
    _f("alk_rearrangement", B, "EML4/ALK rearrangement (absent means not tested)."),
    _f(
        "vascular_compression",
        B,
        "Macroscopic vascular or lymphatic compression by tumour (ONKOTEV).",
    ),
    # Treatment (current, or within the last 3 months)
    _f("chemotherapy", B, "Any cytotoxic chemotherapy."),
    _f("platinum_chemotherapy", B, "Cisplatin or carboplatin."),
    _f("gemcitabine", B, "Gemcitabine."),
    _f("egfr_tki", B, "EGFR tyrosine-kinase inhibitor, e.g. osimertinib."),
    _f("anti_angiogenic", B, "Anti-angiogenic therapy, e.g. bevacizumab."),
    _f("immunotherapy", B, "Immune checkpoint inhibitor."),
    _f("radiotherapy", B, "Radiotherapy."),
    _f(
        "days_since_surgery",
        INT,
        "Days since the most recent thoracic surgery; absent if none.",
        unit="days",
        hard=(0, 3650),
        absent_means="no thoracic surgery",
    ),
    _f(
        "months_since_treatment",
        N,
        "Months since the last anticancer treatment (chemotherapy, targeted or immunotherapy, "
        "radiotherapy or surgery); absent means not known. It tells whether a patient was "
        "treated within 6 or 12 months, which the treatment fields (last 3 months) cannot.",
        unit="months",
        hard=(0, 600),
    ),
    _f("central_venous_catheter", B, "Central venous catheter in place."),
    _f("esa_use", B, "Erythropoiesis-stimulating agent (Khorana item)."),
    _f("anticoagulated", B, "On therapeutic or prophylactic anticoagulation."),
    # History and current findings
    _f("prior_vte", B, "Previous DVT or PE."),
    _f(
        "recent_surgery_or_trauma",
        B,
        "Other surgery (not thoracic), trauma or lower-limb fracture in the last 4 weeks "
        "(Wells, revised Geneva, PERC items); thoracic surgery is days_since_surgery.",
    ),
    _f(
        "brain_metastases",
        B,
        "Brain metastases. Not a model input: an intracranial neoplasm contraindicates "
        "systemic thrombolysis and weighs on anticoagulation (the bleeding flags read it).",
    ),
    _f("copd", B, "Chronic obstructive pulmonary disease."),
    _f("pleural_effusion", B, "Pleural effusion on current imaging."),
    _f("immobilized", B, "Bed rest for 3 days or more."),
    _f(
        "recent_hospitalization",
        B,
        "Acute medical admission in the last 3 months.",
    ),
    _f(
        "suspected_pe",
        B,
        "The assessment is made because PE is clinically suspected; diagnostic rules "
        "(Wells, Geneva, YEARS, age-adjusted D-dimer, PERC) apply only then.",
    ),
    _f(
        "dvt_signs",
        B,
        "Clinical signs of DVT (leg swelling, pain on deep-vein palpation).",
    ),
    _f("unilateral_leg_pain", B, "Unilateral lower-limb pain."),
    _f("pe_most_likely", B, "An alternative diagnosis is less likely than PE."),
    _f("hemoptysis", B, "Haemoptysis."),
    _f("dyspnea", B, "Dyspnoea."),
    _f("chest_pain", B, "Chest pain."),
    _f("heart_rate", N, "Heart rate.", unit="bpm", hard=(20, 250), usual=(50, 120)),
    _f(
        "oxygen_saturation",
        N,
        "Oxygen saturation (SpO₂ or SaO₂).",
        unit="%",
        hard=(50, 100),
        usual=(90, 100),
    ),
    _f(
        "systolic_bp",
        N,
        "Systolic blood pressure.",
        unit="mmHg",
        hard=(40, 300),
        usual=(90, 180),
    ),
    _f("contrast_allergy", B, "Iodine contrast allergy (CTPA contraindication)."),
    # Laboratory: canonical unit here; accepted alternatives in features.units
    _f("d_dimer", L, "D-dimer.", unit="mg/L FEU", hard=(0, 100), usual=(0.1, 20)),
    _f(
        "platelets",
        L,
        "Platelet count.",
        unit="10⁹/L",
        hard=(1, 2000),
        usual=(150, 450),
    ),
    _f("hemoglobin", L, "Haemoglobin.", unit="g/L", hard=(30, 250), usual=(100, 170)),
    _f(
        "leukocytes",
        L,
        "Leukocyte count.",
        unit="10⁹/L",
        hard=(0.1, 500),
        usual=(4, 11),
    ),
    _f(
        "pao2",
        L,
        "Arterial oxygen partial pressure.",
        unit="mmHg",
        hard=(20, 700),
        usual=(75, 100),
    ),
    _f(
        "troponin",
        L,
        "High-sensitivity cardiac troponin T (hs-cTnT; 99th percentile 14 ng/L).",
        unit="ng/L",
        hard=(0, 100000),
        usual=(0, 14),
    ),
    _f(
        "troponin_i",
        L,
        "High-sensitivity cardiac troponin I (hs-cTnI; 99th percentile 16 ng/L women, 34 men).",
        unit="ng/L",
        hard=(0, 100000),
        usual=(0, 34),
    ),
    _f("nt_probnp", L, "NT-proBNP.", unit="pg/mL", hard=(0, 100000), usual=(0, 300)),
    _f(
        "creatinine",
        L,
        "Serum creatinine.",
        unit="µmol/L",
        hard=(10, 3000),
        usual=(45, 110),
    ),
    _f(
        "egfr_renal",
        L,
        "Estimated GFR (egfr_ alone means the mutation).",
        unit="mL/min/1.73m²",
        hard=(1, 200),
        usual=(60, 120),
    ),
    _f(
        "soluble_p_selectin",
        L,
        "Soluble P-selectin (Vienna CATS item).",
        unit="ng/mL",
        hard=(0, 1000),
    ),
    # Imaging and ECG
    _f(
        "rv_lv_ratio",
        N,
        "Right/left ventricular diameter ratio (CT or echocardiography).",
        hard=(0.2, 4),
    ),
    _f(
        "ecg_abnormalities",
        INT,
        "Count of PE-related ECG abnormalities.",
        hard=(0, 12),
    ),
)

BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
#: The fields a record may leave unknown: optional, not an identifier, and absent meaning
#: "not known" (data contract: never "no" or "normal"), and the required category whose
#: choices include "unknown" (histology). Training teaches the model what their absence
#: means (``training.unknowns``); evaluation removes them at random.
UNKNOWABLE: tuple[str, ...] = tuple(
    f.name
    for f in FIELDS
    if f.kind is not Kind.TEXT
    and f.absent_means == "unknown"
    and (not f.required or "unknown" in f.choices)
)


def unknown_value(name: str) -> object:
    """How a field says "not known" in canonical columns: its "unknown" choice, else missing."""
    return "unknown" if "unknown" in BY_NAME[name].choices else None


#: The outcome column of training tables (never an input): PE within 180 days, 0/1. A table
#: with only this column is read as complete follow-up (no one lost, no one dead before 180 days).
OUTCOME = "pe_event"
#: The time-to-event outcome columns (data-contract.md, "Outcomes"), in days from the index
#: date: ``pe_days`` to the diagnosis of PE (0 = found by the work-up at the index assessment,
#: absent = no PE seen during follow-up), ``death_days`` to death (absent = alive at last
#: contact) and ``followup_days`` to the end of follow-up (last contact, death or the data
#: cut-off), required with the other two.
PE_DAYS, DEATH_DAYS, FOLLOWUP_DAYS = "pe_days", "death_days", "followup_days"
TIME_OUTCOMES = (PE_DAYS, DEATH_DAYS, FOLLOWUP_DAYS)
#: The horizons of the new-PE question (design.md, "What it is"): cumulative incidence of a
#: new PE by 30, 90 and 180 days, death competing.
HORIZONS_DAYS = (30, 90, 180)


def new_pe_column(days: int) -> str:
    """The name of the new-PE estimate at a horizon wherever it is a column: the registered
    model's output, the synthetic cohort's truth, the table's average risks (``new_pe_180d``)."""
    return f"new_pe_{days}d"


#: Optional columns a training table may carry beside the record: a site for
#: leave-one-site-out validation and an index date for temporal validation.
TABLE_META = ("site", "index_date")
