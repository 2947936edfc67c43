"""The feature specification: every model input and derived predictor, declared once.

Training takes feature names, order and monotone constraints from ``MODEL_FEATURES``;
the model artefact stores them; serving matches columns by name. Each entry says how
it is derived from the canonical record (``derive``), its unit, the direction of its
effect where that direction is established (``monotone``: +1 raises risk, −1 lowers
it, 0 not declared: for a field a record may leave unknown, training then takes the
direction from the data), the source of that direction, and what a missing value means.

Effect sizes and sources are those of ``shared/reference/clinical.md`` §3 and the
review (``shared/seed/lung-cancer-pe-review.txt``).

Derived predictors the review names as thresholds (D-dimer ≥0.5, platelets ≥350,
Hb >150 g/L, PaO₂ <70 mmHg, stage III–IV, surgery within 1/3/6/12 months, Wells >2,
RV/LV >1, raised troponin/NT-proBNP, CTPA contraindication) are derived here too;
those that only re-cut a continuous model input are ``in_model=False`` (a tree already
finds the cut, and a second copy would split the explanation between two rows), and
are used by the recommendations, the report and the baselines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from features import thresholds as th
from features.either import COMPARE, any_true, is_known, where
from features.scores import WELLS, age_adjusted_cutoff, raised_troponin

#: name → an array over rows; the derived predictors (``in_model=False``) also take one
#: record's Python scalars (``features.either``) and return a float
Columns = Mapping[str, Any]

NOT_MEASURED = (
    "not measured: kept missing; scored as for a patient whose value is unknown, between "
    "its lowest and highest values (training.unknowns)"
)
UNKNOWN = (
    "not known: kept missing, never read as 'no'; scored between 'no' and 'yes' (training.unknowns)"
)
NO_SURGERY = "absent days_since_surgery means no thoracic surgery (data contract): 0"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    label: str  # plain words for clinicians
    derive: Callable[[Columns], np.ndarray]
    unit: str = ""
    monotone: int = 0
    source: str = ""
    missing: str = UNKNOWN
    in_model: bool = True
    field: str | None = None  # the record field the value is shown from, if one


def raw(name: str) -> Callable[[Columns], np.ndarray]:
    return lambda c: c[name].astype(float, copy=False)


def one_of(name: str, *values: str, unknown: tuple[str, ...] = ()) -> Callable[[Columns], Any]:
    """1 if the category is in ``values``, NaN if missing or in ``unknown``, else 0."""

    def among(x: Any, options: tuple[str, ...]) -> Any:
        # a few options: one comparison each, cheaper than np.isin's set-up (issue 22)
        return any_true(x == v for v in options)

    def f(c: Columns) -> Any:
        x = c[name]
        return where((x == None) | among(x, unknown), np.nan, 1.0 * among(x, values))  # noqa: E711

    return f


def ordinal(name: str, levels: dict[str, float]) -> Callable[[Columns], np.ndarray]:
    def f(c: Columns) -> np.ndarray:
        x = c[name]
        out = np.full(len(x), np.nan)
        for level, value in levels.items():
            out[x == level] = value
        return out

    return f


def threshold(name: str, op: str, cut: float) -> Callable[[Columns], Any]:
    fn = COMPARE[op]

    def f(c: Columns) -> Any:
        x = c[name]
        return where(is_known(x), 1.0 * fn(x, cut), np.nan)

    return f


def surgery_recency(c: Columns) -> np.ndarray:
    """4 = surgery ≤1 month ago, 3 = ≤3 months, 2 = ≤6, 1 = ≤12, 0 = none or longer ago."""
    d = c["days_since_surgery"]
    out = np.zeros(len(d))
    with np.errstate(invalid="ignore"):
        windows = (th.MONTHS_12, th.MONTHS_6, th.MONTHS_3, th.MONTH_1)
        for level, days in enumerate((w.value for w in windows), start=1):
            out[d <= days] = level
    return out


def surgery_within(days: int) -> Callable[[Columns], Any]:
    def f(c: Columns) -> Any:
        return 1.0 * (c["days_since_surgery"] <= days)  # NaN (no surgery) compares False → 0

    return f


#: haemoglobin (g/L) where the two published cut-offs are equally far: below 100 g/L
#: (Khorana 2008) and above 150 g/L (review, ref 18) both raise the risk
HB_CENTRE = (th.HEMOGLOBIN_LOW.value + th.HEMOGLOBIN_HIGH.value) / 2
HB_SCALE = (th.HEMOGLOBIN_HIGH.value - th.HEMOGLOBIN_LOW.value) / 2


def hemoglobin_deviation(c: Columns) -> np.ndarray:
    """Distance of haemoglobin from 125 g/L in units of 25 g/L: 1 at both published
    cut-offs (<100 Khorana 2008; >150 review, ref 18). A U-shaped effect on a scale on which
    it is monotone, so that an unknown value can be kept between the known ones."""
    return np.abs(c["hemoglobin"] - HB_CENTRE) / HB_SCALE


def d_dimer_above_age_adjusted(c: Columns) -> Any:
    dd = c["d_dimer"]
    return where(is_known(dd), 1.0 * (dd >= age_adjusted_cutoff(c["age"])), np.nan)


def ctpa_contraindicated(c: Columns) -> Any:
    """Iodine contrast allergy or eGFR below ``EGFR_CTPA`` (review: iodine allergy or renal
    impairment)."""
    allergy, egfr = c["contrast_allergy"], c["egfr_renal"]
    pos = (allergy == 1) | (egfr < th.EGFR_CTPA.value)
    known = pos | (is_known(allergy) & is_known(egfr))
    return where(known, 1.0 * pos, np.nan)


def wells_above_2(c: Columns) -> Any:
    r = WELLS.evaluate(c)
    cut = th.WELLS_CTPA_ABOVE.value
    could_be = (r.points <= cut) & (r.max_points > cut)  # >2 if the unknown items were present
    return where(could_be, np.nan, 1.0 * (r.points > cut))


def raised_cardiac_marker(c: Columns) -> Any:
    """Raised hs-troponin (T or I, at its own age- or sex-specific cut-off) or NT-proBNP ≥600."""
    trop_pos, trop_known = raised_troponin(c)
    n = c["nt_probnp"]
    pos = trop_pos | (n >= th.NT_PROBNP_RV.value)
    known = pos | (trop_known & is_known(n))
    return where(known, 1.0 * pos, np.nan)


REVIEW = "review (shared/seed/lung-cancer-pe-review.txt)"
_F = FeatureSpec

FEATURES: tuple[FeatureSpec, ...] = (
    # Demographics
    _F("age", "Age", raw("age"), "years", field="age"),
    _F("sex_male", "Male sex", one_of("sex", "male"), field="sex"),
    _F(
        "bmi",
        "Body-mass index",
        raw("bmi"),
        "kg/m²",
        missing=NOT_MEASURED,
        field="bmi",
        source="Khorana item ≥35 (Khorana 2008); low BMI (cachexia) is common in "
        "lung cancer; no direction declared (training takes it from the data)",
    ),
    _F(
        "ecog",
        "ECOG performance status",
        raw("ecog"),
        monotone=+1,
        field="ecog",
        source="ECOG ≥2 +1 in the Li J score (Thromb Res 2021); poor performance status recurs as "
        "a predictor (HYPERCAN, Cancers 2023)",
    ),
    _F(
        "smoking",
        "Smoking (0 never, 1 former, 2 current)",
        ordinal("smoking_status", {"never": 0, "former": 1, "current": 2}),
        field="smoking_status",
    ),
    # Tumour
    _F(
        "adenocarcinoma",
        "Adenocarcinoma",
        one_of("histology", "adenocarcinoma", unknown=("unknown",)),
        monotone=+1,
        field="histology",
        source="adenocarcinoma vs squamous HR 1.9 (Chew 2008), 2.0 (Walker 2016); " + REVIEW,
    ),
    _F(
        "squamous_cell",
        "Squamous-cell carcinoma",
        one_of("histology", "squamous_cell", unknown=("unknown",)),
        field="histology",
    ),
    _F(
        "small_cell",
        "Small-cell carcinoma",
        one_of("histology", "small_cell", unknown=("unknown",)),
        field="histology",
    ),
    _F(
        "large_cell",
        "Large-cell carcinoma",
        one_of("histology", "large_cell", unknown=("unknown",)),
        field="histology",
    ),
    _F(
        "stage",
        "Stage (1–4)",
        ordinal("stage", {"I": 1, "II": 2, "III": 3, "IV": 4}),
        monotone=+1,
        field="stage",
        source="stage III–IV vs I–II OR 2.97 (" + REVIEW + ", ref 19); metastatic vs local HR 4.0 "
        "(Chew 2008)",
    ),
    _F(
        "months_since_diagnosis",
        "Months since diagnosis",
        raw("months_since_diagnosis"),
        "months",
        monotone=-1,
        field="months_since_diagnosis",
        source="VTE rate highest in the first 6 months (Chew 2008: 7.2/100 patient-years); "
        "COMPASS-CAT ≤6 months +4",
    ),
    _F(
        "egfr_mutation",
        "EGFR mutation",
        raw("egfr_mutation"),
        monotone=-1,
        field="egfr_mutation",
        missing="not tested: kept missing",
        source="EGFR mutation HR 0.46 (Multidiscip Respir Med 2017); wild-type sHR 1.81 (Dou 2018)",
    ),
    _F(
        "kras_mutation",
        "KRAS mutation",
        raw("kras_mutation"),
        monotone=+1,
        field="kras_mutation",
        missing="not tested: kept missing",
        source="KRAS OR 2.67 (case-control, Thromb Res)",
    ),
    _F(
        "alk_rearrangement",
        "ALK rearrangement",
        raw("alk_rearrangement"),
        monotone=+1,
        field="alk_rearrangement",
        missing="not tested: kept missing",
        source="ALK HR 3.70 (Al-Samkari 2020), 1.87 (Icht 2023); " + REVIEW,
    ),
    _F(
        "vascular_compression",
        "Vascular compression by tumour",
        raw("vascular_compression"),
        monotone=+1,
        field="vascular_compression",
        source="compression HR 3.25 (ONKOTEV, Cella 2023)",
    ),
    # Treatment
    _F(
        "chemotherapy",
        "Chemotherapy",
        raw("chemotherapy"),
        monotone=+1,
        field="chemotherapy",
        source="HR 2.1 during chemotherapy (Walker 2016); 2–6× (" + REVIEW + ")",
    ),
    _F(
        "platinum_chemotherapy",
        "Platinum chemotherapy",
        raw("platinum_chemotherapy"),
        monotone=+1,
        field="platinum_chemotherapy",
        source="cisplatin vs other RR 2.8 (Zahir 2017); PROTECHT item",
    ),
    _F(
        "gemcitabine",
        "Gemcitabine",
        raw("gemcitabine"),
        monotone=+1,
        field="gemcitabine",
        source="PROTECHT item (Verso 2012); " + REVIEW,
    ),
    _F(
        "egfr_tki",
        "EGFR-TKI",
        raw("egfr_tki"),
        field="egfr_tki",
        source="direction conflicting: raised in the review, TKI HR 0.42 (Multidiscip Respir Med "
        "2017): no direction declared (training takes it from the data)",
    ),
    _F(
        "anti_angiogenic",
        "Anti-angiogenic therapy",
        raw("anti_angiogenic"),
        field="anti_angiogenic",
        source="conflicting: OR 1.74 (Li 2018) vs Peto OR 0.94 (Zhang 2016): no direction declared (training takes it from the data)",
    ),
    _F(
        "immunotherapy",
        "Immunotherapy",
        raw("immunotherapy"),
        field="immunotherapy",
        source="unclear (" + REVIEW + "): no direction declared (training takes it from the data)",
    ),
    _F("radiotherapy", "Radiotherapy", raw("radiotherapy"), field="radiotherapy"),
    _F(
        "surgery_recency",
        "Recent thoracic surgery (4 ≤1 mo, 3 ≤3, 2 ≤6, 1 ≤12, 0 none)",
        surgery_recency,
        monotone=+1,
        field="days_since_surgery",
        missing=NO_SURGERY,
        source="VTE 2.0/3.0/4.0/5.0 % at 1/3/6/12 months after resection, peak in month one "
        "(Yang, " + REVIEW + ")",
    ),
    _F(
        "central_venous_catheter",
        "Central venous catheter",
        raw("central_venous_catheter"),
        monotone=+1,
        field="central_venous_catheter",
        source="COMPASS-CAT +3 (Gerotziafas 2017)",
    ),
    _F(
        "esa_use",
        "Erythropoiesis-stimulating agent",
        raw("esa_use"),
        monotone=+1,
        field="esa_use",
        source="Khorana item (Khorana 2008)",
    ),
    _F(
        "anticoagulated",
        "On anticoagulation",
        raw("anticoagulated"),
        monotone=-1,
        field="anticoagulated",
        source="post-operative PE 4 % vs 0.4 % with extended dalteparin (J Thorac Cardiovasc Surg 2022)",
    ),
    # History and findings
    _F(
        "prior_vte",
        "Previous DVT or PE",
        raw("prior_vte"),
        monotone=+1,
        field="prior_vte",
        source="sHR 7.6 (Mulder 2021); 3.69 on ICI (Moik 2021); " + REVIEW,
    ),
    _F("copd", "COPD", raw("copd"), field="copd"),
    _F(
        "pleural_effusion",
        "Pleural effusion",
        raw("pleural_effusion"),
        monotone=+1,
        field="pleural_effusion",
        source="47.5 % in lung cancer with PE vs 26 % without (" + REVIEW + ")",
    ),
    _F(
        "immobilized",
        "Immobilised ≥3 days",
        raw("immobilized"),
        monotone=+1,
        field="immobilized",
        source="Wells item (Wells 2000)",
    ),
    _F(
        "recent_hospitalization",
        "Recent hospitalisation",
        raw("recent_hospitalization"),
        monotone=+1,
        field="recent_hospitalization",
        source="COMPASS-CAT +5 (Gerotziafas 2017)",
    ),
    _F(
        "suspected_pe",
        "PE clinically suspected",
        raw("suspected_pe"),
        monotone=+1,
        field="suspected_pe",
        source="PE prevalence 13–22 % when suspected (YEARS 2017, 2020) vs "
        "3.7 % pooled in lung cancer",
    ),
    _F(
        "dvt_signs",
        "Clinical signs of DVT",
        raw("dvt_signs"),
        monotone=+1,
        field="dvt_signs",
        source="Wells +3 (Wells 2000); Geneva +4 (Le Gal 2006)",
    ),
    _F(
        "unilateral_leg_pain",
        "Unilateral leg pain",
        raw("unilateral_leg_pain"),
        monotone=+1,
        field="unilateral_leg_pain",
        source="revised Geneva +3 (Le Gal 2006)",
    ),
    _F(
        "pe_most_likely",
        "PE the most likely diagnosis",
        raw("pe_most_likely"),
        monotone=+1,
        field="pe_most_likely",
        source="Wells +3 (Wells 2000)",
    ),
    _F(
        "hemoptysis",
        "Haemoptysis",
        raw("hemoptysis"),
        field="hemoptysis",
        source="Wells/Geneva item, but no different with or without PE in lung cancer (Chuang, "
        + REVIEW
        + "): no direction declared (training takes it from the data)",
    ),
    _F("dyspnea", "Dyspnoea", raw("dyspnea"), field="dyspnea"),
    _F("chest_pain", "Chest pain", raw("chest_pain"), field="chest_pain"),
    _F(
        "heart_rate",
        "Heart rate",
        raw("heart_rate"),
        "bpm",
        monotone=+1,
        field="heart_rate",
        missing=NOT_MEASURED,
        source="Wells >100 +1.5; Geneva ≥95 +5 (Le Gal 2006)",
    ),
    _F(
        "oxygen_saturation",
        "Oxygen saturation",
        raw("oxygen_saturation"),
        "%",
        monotone=-1,
        field="oxygen_saturation",
        missing=NOT_MEASURED,
        source="PERC <95 % (Kline 2004)",
    ),
    _F(
        "systolic_bp",
        "Systolic blood pressure",
        raw("systolic_bp"),
        "mmHg",
        field="systolic_bp",
        missing=NOT_MEASURED,
    ),
    # Laboratory
    _F(
        "d_dimer",
        "D-dimer",
        raw("d_dimer"),
        "mg/L FEU",
        monotone=+1,
        field="d_dimer",
        missing=NOT_MEASURED,
        source="HR 1.32 per doubling (Pabinger 2018, CATS/MICA); CATS ≥1.44 (Ay 2010); " + REVIEW,
    ),
    _F(
        "platelets",
        "Platelets",
        raw("platelets"),
        "10⁹/L",
        monotone=+1,
        field="platelets",
        missing=NOT_MEASURED,
        source="Khorana ≥350 (Khorana 2008); " + REVIEW,
    ),
    _F(
        "hemoglobin_deviation",
        "Haemoglobin",
        hemoglobin_deviation,
        "× 25 g/L from 125 g/L",
        monotone=+1,
        field="hemoglobin",
        missing=NOT_MEASURED,
        source="U-shaped: Khorana <100 g/L (Khorana 2008) and >150 g/L (review, ref 18) both "
        "raise risk; 1 at both cut-offs",
    ),
    _F(
        "leukocytes",
        "Leukocytes",
        raw("leukocytes"),
        "10⁹/L",
        monotone=+1,
        field="leukocytes",
        missing=NOT_MEASURED,
        source="Khorana >11 (Khorana 2008)",
    ),
    _F(
        "pao2",
        "PaO₂",
        raw("pao2"),
        "mmHg",
        monotone=-1,
        field="pao2",
        missing=NOT_MEASURED,
        source="PaO₂ <70 mmHg (" + REVIEW + ", ref 18)",
    ),
    _F(
        "troponin",
        "Troponin T (hs)",
        raw("troponin"),
        "ng/L",
        monotone=+1,
        field="troponin",
        missing=NOT_MEASURED,
        source="right-ventricular strain (" + REVIEW + ")",
    ),
    _F(
        "nt_probnp",
        "NT-proBNP",
        raw("nt_probnp"),
        "pg/mL",
        monotone=+1,
        field="nt_probnp",
        missing=NOT_MEASURED,
        source="right-ventricular stretch (" + REVIEW + ")",
    ),
    _F(
        "soluble_p_selectin",
        "Soluble P-selectin",
        raw("soluble_p_selectin"),
        "ng/mL",
        monotone=+1,
        field="soluble_p_selectin",
        missing=NOT_MEASURED,
        source="Vienna CATS ≥53.1 (Ay 2010)",
    ),
    # Imaging and ECG
    _F(
        "rv_lv_ratio",
        "RV/LV ratio",
        raw("rv_lv_ratio"),
        monotone=+1,
        field="rv_lv_ratio",
        missing=NOT_MEASURED,
        source="RV/LV >1: higher risk of adverse outcome (" + REVIEW + ")",
    ),
    _F(
        "ecg_abnormalities",
        "PE-related ECG abnormalities",
        raw("ecg_abnormalities"),
        monotone=+1,
        field="ecg_abnormalities",
        missing=NOT_MEASURED,
        source="number of ECG abnormalities predicts central PE (" + REVIEW + ", ref 15)",
    ),
    # Derived threshold predictors named by the review (not model inputs)
    _F(
        "d_dimer_elevated",
        f"D-dimer ≥{th.D_DIMER_RULE_OUT.value:g} mg/L FEU",
        threshold("d_dimer", ">=", th.D_DIMER_RULE_OUT.value),
        in_model=False,
        source="rule-out threshold 0.5 (" + REVIEW + ", ref 13)",
        missing=NOT_MEASURED,
    ),
    _F(
        "d_dimer_above_age_adjusted",
        "D-dimer above the age-adjusted cut-off",
        d_dimer_above_age_adjusted,
        in_model=False,
        source="Righini 2014 (ADJUST-PE)",
        missing=NOT_MEASURED,
    ),
    _F(
        "advanced_stage",
        "Stage III–IV",
        one_of("stage", "III", "IV"),
        in_model=False,
        source="OR 2.97 vs I–II (" + REVIEW + ", ref 19)",
    ),
    _F(
        "platelets_raised",
        f"Platelets ≥{th.PLATELETS_HIGH.value:g} ×10⁹/L",
        threshold("platelets", ">=", th.PLATELETS_HIGH.value),
        in_model=False,
        source="Khorana 2008",
        missing=NOT_MEASURED,
    ),
    _F(
        "hemoglobin_above_150",
        f"Haemoglobin >{th.HEMOGLOBIN_HIGH.value:g} g/L",
        threshold("hemoglobin", ">", th.HEMOGLOBIN_HIGH.value),
        in_model=False,
        source=REVIEW + ", ref 18",
        missing=NOT_MEASURED,
    ),
    _F(
        "pao2_below_70",
        f"PaO₂ <{th.PAO2_LOW.value:g} mmHg",
        threshold("pao2", "<", th.PAO2_LOW.value),
        in_model=False,
        source=REVIEW + ", ref 18",
        missing=NOT_MEASURED,
    ),
    _F(
        "surgery_within_1m",
        "Thoracic surgery ≤1 month",
        surgery_within(th.MONTH_1.value),
        in_model=False,
        source="Yang (" + REVIEW + ", ref 23)",
        missing=NO_SURGERY,
    ),
    _F(
        "surgery_within_3m",
        "Thoracic surgery ≤3 months",
        surgery_within(th.MONTHS_3.value),
        in_model=False,
        source="Yang (" + REVIEW + ", ref 23)",
        missing=NO_SURGERY,
    ),
    _F(
        "surgery_within_6m",
        "Thoracic surgery ≤6 months",
        surgery_within(th.MONTHS_6.value),
        in_model=False,
        source="Yang (" + REVIEW + ", ref 23)",
        missing=NO_SURGERY,
    ),
    _F(
        "surgery_within_12m",
        "Thoracic surgery ≤12 months",
        surgery_within(th.MONTHS_12.value),
        in_model=False,
        source="Yang (" + REVIEW + ", ref 23)",
        missing=NO_SURGERY,
    ),
    _F(
        "wells_above_2",
        f"Wells score >{th.WELLS_CTPA_ABOVE.value:g}",
        wells_above_2,
        in_model=False,
        source="raised D-dimer with Wells >2 → prioritise CTPA (" + REVIEW + ")",
        missing="missing when unknown Wells items could put it above 2",
    ),
    _F(
        "rv_lv_above_1",
        f"RV/LV >{th.RV_LV_HIGH.value:g}",
        threshold("rv_lv_ratio", ">", th.RV_LV_HIGH.value),
        in_model=False,
        source=REVIEW,
        missing=NOT_MEASURED,
    ),
    _F(
        "cardiac_marker_raised",
        "Raised hs-troponin T or I, or NT-proBNP ≥600 pg/mL",
        raised_cardiac_marker,
        in_model=False,
        missing=NOT_MEASURED,
        source=f"{th.HS_TNT.source}; ≥75 years: {th.HS_TNT_FROM_75.source}; hs-cTnI: "
        f"{th.HS_TNI_WOMEN.source} / men {th.HS_TNI_MEN.value:g} ng/L; {th.NT_PROBNP_RV.source}",
    ),
    _F(
        "ecg_abnormal",
        "Any PE-related ECG abnormality",
        threshold("ecg_abnormalities", ">=", 1),
        in_model=False,
        source=REVIEW + ", ref 15",
        missing=NOT_MEASURED,
    ),
    _F(
        "ctpa_contraindicated",
        f"CTPA contraindicated (contrast allergy or eGFR <{th.EGFR_CTPA.value:g})",
        ctpa_contraindicated,
        in_model=False,
        source="iodine allergy or renal impairment (" + REVIEW + ")",
    ),
)

BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}
MODEL_FEATURES: tuple[FeatureSpec, ...] = tuple(f for f in FEATURES if f.in_model)
MODEL_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in MODEL_FEATURES)
MONOTONE_CONSTRAINTS: dict[str, int] = {f.name: f.monotone for f in MODEL_FEATURES}


def spec_table() -> list[dict[str, object]]:
    """The specification as JSON-ready rows (logged with every model, served by ``GET /model``)."""
    return [
        {
            "name": f.name,
            "label": f.label,
            "unit": f.unit,
            "monotone": f.monotone,
            "source": f.source,
            "missing": f.missing,
            "in_model": f.in_model,
            "field": f.field,
        }
        for f in FEATURES
    ]
