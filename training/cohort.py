"""A synthetic lung-cancer cohort with a known truth.

No real patient data can ship, so pe-risk trains out of the box on a cohort generated
here. The generative model is written down once, in ``cohort_effects.csv`` (factor,
parameter, value, source), and read by this code. It answers the two questions of the
design: is there a PE now (when suspected), and how likely is a new PE by 30, 90 and 180
days, death competing, with censored follow-up.

1. **Population** (structure, not coin flips): age and sex; smoking; histology given
   smoking; stage given histology; EGFR/ALK/KRAS given histology and smoking, tested
   mostly in adenocarcinoma (untested = missing); treatments given stage and markers
   (surgery mostly stage I–II, EGFR-TKI only with an EGFR mutation, chemotherapy and
   immunotherapy mostly III–IV, bevacizumab only in non-squamous disease); laboratory
   values with realistic distributions (platelets and leukocytes log-normal, higher in
   advanced stage; haemoglobin lower in women and with chemotherapy).
2. **Base risk**: ``logit p = b0 + β·stage III–IV + Σ log(OR)·factor`` with the odds ratios
   of the table, the surgery band taken at the index date.
3. **PE now**: present at the index assessment with probability ``q·p`` (``q`` the table's
   share of 180-day PEs already present then).
4. **Findings at the index date**: whether PE is suspected, signs and symptoms, D-dimer
   (log-normal, higher in advanced stage), heart rate, saturation, PaO₂, troponin,
   NT-proBNP, RV/LV, ECG abnormalities, each drawn from one distribution when PE is
   present now and another otherwise (a PE that has not happened yet shifts nothing).
5. **New PE and death after the index date**, for days 1..365, as discrete daily
   cause-specific hazards. The PE hazard is ``exp(h0 + β·III–IV + Σ log(OR)·factor)``
   (a day's probability ``1 − exp(−hazard)``): the odds factors of step 2 except surgery,
   whose factor follows the time since the operation, ``days_since_surgery + t`` (the
   0–30, 31–91 and 92–182-day bands, then none), so the month-one peak after surgery
   appears in time. The death hazard is constant per person: a rate by stage, solved so
   that the stage's share dead by 180 days is the table's, times a hazard ratio per ECOG
   point. Each latent time is drawn by inversion of its own cumulative hazard; the first
   event wins for the PE outcome, and a death after a PE is still recorded. The hazards
   change only at the band edges, so every sum over the daily grid is a geometric series
   on each constant piece, computed exactly (no people × days array).
6. **Censoring**: follow-up ends at death, at the data cut-off (the table's days after the
   last index date), at a loss to follow-up (exponential, the table's share lost by 180
   days) or at 365 days, whichever comes first, and lasts at least a day.
7. **Missingness like real records**, independent of the outcome given the setting, at
   the rates of the table's ``p_recorded`` rows: D-dimer, troponin, NT-proBNP, RV/LV
   mostly measured when PE is suspected; treatments and history unrecorded as often as
   in registry and EHR extracts (chemotherapy recorded for 68 % of those given it).

``b0``, ``h0`` and ``β`` are solved so that the mean base probability ``p`` and the
180-day PE risk ``q·p + (1 − q·p)·F(180)`` both equal the table's incidence (so a share
``q`` of 180-day PEs is present now), and the marginal stage III–IV vs I–II odds ratio
of that 180-day risk hits the table's target.

The frame has the contract's fields, ``patient_id``, ``site``, ``index_date`` and the
outcome as times in whole days (data-contract.md, "Outcome"): ``pe_days`` (0 = present
now; absent = no PE seen during follow-up), ``death_days`` (absent = alive at the end of
follow-up) and ``followup_days``. It has no ``pe_event``: a 180-day yes/no is ambiguous
under censoring.

**The truth** of each row is exact and written to a separate file
(``<name>.truth.<ext>``) that is never a model input:

- ``pe_now_probability``: P(PE present now | everything the generator knows, including
  values later masked) ``= q·p·LR / (q·p·LR + 1 − q·p)``, with ``LR`` the product of the
  likelihood ratios of the findings (each the ratio of the two densities they were drawn
  from). Its AUROC among the suspected is an upper bound for any model of question 1.
- ``pe_now_observable``: the same from what the record shows (an unrecorded finding has
  likelihood ratio 1, a hidden base factor enters at its mean within the histology).
- ``new_pe_30d``, ``new_pe_90d``, ``new_pe_180d``: the cumulative incidence of a new PE by
  each horizon for this person without PE now, death competing:
  ``F(h) = Σ_{t≤h} λ_pe(t)·S(t−1)`` with ``λ_pe`` the daily PE probability and ``S`` the
  probability of being alive without PE. Given for every row (for those with PE now it
  is what would follow had there been none).
- ``base_probability``: the 180-day PE risk (now or new) from the base factors alone,
  ``q·p + (1 − q·p)·F(180)``, the quantity calibrated to the incidence.
- ``pe_at_index``: whether PE is present now (``pe_days == 0``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from features import thresholds as th
from features.build import blanked
from features.contract import (
    DEATH_DAYS,
    FIELDS,
    FOLLOWUP_DAYS,
    HORIZONS_DAYS,
    PE_DAYS,
    STAGES,
    Kind,
    new_pe_column,
)
from features.scores import CREATININE_MG_DL
from training.cohort_times import (
    FIRST_INDEX_DATE,
    MAX_FOLLOWUP_DAYS,
    SURGERY_BANDS,
    calibrate,
    data_cutoff,
    death_hazard,
    draw_pe_day,
    hazard_pieces,
    incidence_all,
    loss_rate,
    sites_and_days,
)

EFFECTS_PATH = Path(__file__).with_name("cohort_effects.csv")
GENERATOR = "pe-risk synthetic cohort v2 (PE now; new PE and death over time; censoring)"


@dataclass(frozen=True)
class Effects:
    """The generative table: ``value(factor, parameter)`` and its source."""

    rows: dict[tuple[str, str], tuple[float, str]]
    digest: str

    def __call__(self, factor: str, parameter: str = "odds_ratio") -> float:
        return self.rows[(factor, parameter)][0]

    def odds_ratios(self) -> dict[str, float]:
        return {f: v for (f, p), (v, _) in self.rows.items() if p == "odds_ratio"}

    def always_recorded(self) -> Effects:
        """The same table with every field always recorded: a hospital's complete table."""
        rows = {
            k: ((1.0, s) if k[1].startswith("p_recorded") else (v, s))
            for k, (v, s) in self.rows.items()
        }
        return Effects(rows, self.digest)

    def with_values(self, values: dict[tuple[str, str], float]) -> Effects:
        """The same table with some values replaced, e.g. ``{("followup", "p_lost_by_180"):
        0.5}`` for a heavily censored cohort; the digest says it was changed."""
        unknown = [k for k in values if k not in self.rows]
        if unknown:
            raise KeyError(f"{unknown} are not rows of the effect table; give (factor, parameter)")
        rows = dict(self.rows)
        for k, v in values.items():
            rows[k] = (float(v), f"{rows[k][1]} [overridden: {v:g}]")
        change = json.dumps(sorted((list(k), float(v)) for k, v in values.items()))
        return Effects(rows, hashlib.sha256((self.digest + change).encode()).hexdigest()[:16])


def load_effects(path: Path = EFFECTS_PATH) -> Effects:
    text = path.read_text(encoding="utf-8")
    rows = {
        (r["factor"], r["parameter"]): (float(r["value"]), r["source"])
        for r in csv.DictReader(text.splitlines())
    }
    return Effects(rows, hashlib.sha256(text.encode()).hexdigest()[:16])


@dataclass
class Cohort:
    frame: pd.DataFrame  # the data contract columns, site, index_date, pe/death/followup days
    truth: pd.DataFrame  # row, pe_at_index, pe_now_*, new_pe_*d, base_probability (never inputs)
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# 1. Population
# ---------------------------------------------------------------------------------------

HISTOLOGY = ("adenocarcinoma", "squamous_cell", "small_cell", "large_cell", "other", "unknown")
#: P(histology | never smoker), P(histology | ever smoker): adenocarcinoma dominates in
#: never smokers, squamous and small-cell in smokers (SEER-style proportions).
HISTOLOGY_P = {
    "never": (0.74, 0.08, 0.04, 0.03, 0.08, 0.03),
    "ever": (0.42, 0.28, 0.15, 0.05, 0.07, 0.03),
}
STAGE_P = {"small_cell": (0.04, 0.04, 0.25, 0.67), "other": (0.22, 0.10, 0.25, 0.43)}


def _choice(rng: np.random.Generator, options: tuple[str, ...], p: np.ndarray) -> np.ndarray:
    """Row-wise categorical draw: ``p`` has shape (n, len(options))."""
    u = rng.random(len(p))[:, None]
    idx = (u > np.cumsum(p, axis=1)).sum(axis=1)
    return np.asarray(options, dtype=object)[np.minimum(idx, len(options) - 1)]


def _population(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    c: dict[str, np.ndarray] = {}
    c["age"] = np.round(np.clip(rng.normal(67, 9.5, n), 30, 95), 0)
    male = rng.random(n) < 0.56
    c["sex"] = np.where(male, "male", "female").astype(object)
    never_p = np.where(male, 0.10, 0.22)
    u = rng.random(n)
    c["smoking_status"] = np.select(
        [u < never_p, u < never_p + 0.5], ["never", "former"], "current"
    ).astype(object)
    never = c["smoking_status"] == "never"
    c["histology"] = _choice(
        rng, HISTOLOGY, np.where(never[:, None], HISTOLOGY_P["never"], HISTOLOGY_P["ever"])
    )
    small = c["histology"] == "small_cell"
    c["stage"] = _choice(
        rng,
        ("I", "II", "III", "IV"),
        np.where(small[:, None], STAGE_P["small_cell"], STAGE_P["other"]),
    )
    stage_n = np.select([c["stage"] == s for s in ("I", "II", "III", "IV")], [1, 2, 3, 4])
    adv = stage_n >= 3
    c["months_since_diagnosis"] = np.round(np.minimum(rng.exponential(9, n), 240), 1)
    c["ecog"] = np.clip(np.round(rng.normal(0.7 + 0.175 * (stage_n - 1), 0.9, n)), 0, 4)

    # markers: tested mostly in adenocarcinoma; untested = missing
    adeno = c["histology"] == "adenocarcinoma"
    nsq = np.isin(c["histology"], ("large_cell", "other"))
    tested = rng.random(n) < np.select(
        [adeno, nsq, c["histology"] == "squamous_cell"], [0.90, 0.50, 0.20], 0.05
    )
    egfr = rng.random(n) < np.where(adeno, np.where(never, 0.45, 0.12), 0.03)
    alk = ~egfr & (rng.random(n) < np.where(adeno, np.where(never, 0.08, 0.02), 0.005))
    kras = ~egfr & ~alk & (rng.random(n) < np.where(adeno, np.where(never, 0.08, 0.30), 0.05))
    # the latent mutation drives risk whether or not it was tested; only the column is masked
    c["_egfr"], c["_alk"], c["_kras"] = egfr, alk, kras
    for name, v in (("egfr_mutation", egfr), ("alk_rearrangement", alk), ("kras_mutation", kras)):
        c[name] = np.where(tested, v.astype(float), np.nan)
    c["vascular_compression"] = (rng.random(n) < np.where(adv, 0.12, 0.02)).astype(float)

    # treatments follow stage and markers
    surgery = rng.random(n) < np.select(
        [stage_n == 1, stage_n == 2, stage_n == 3], [0.75, 0.6, 0.15], 0.02
    )
    surgery &= ~small | (rng.random(n) < 0.2)
    c["days_since_surgery"] = np.where(surgery, rng.integers(0, 730, n), np.nan)
    chemo = rng.random(n) < np.select([stage_n == 1, stage_n == 2], [0.10, 0.40], 0.68)
    c["chemotherapy"] = chemo.astype(float)
    c["platinum_chemotherapy"] = (chemo & (rng.random(n) < 0.85)).astype(float)
    squamous = c["histology"] == "squamous_cell"
    c["gemcitabine"] = (chemo & (rng.random(n) < np.where(squamous, 0.30, 0.08))).astype(float)
    tested_egfr = tested & egfr
    c["egfr_tki"] = (tested_egfr & (rng.random(n) < np.where(adv, 0.85, 0.30))).astype(float)
    c["anti_angiogenic"] = (
        ~squamous & ~small & (stage_n == 4) & (c["egfr_tki"] == 0) & (rng.random(n) < 0.15)
    ).astype(float)
    c["immunotherapy"] = (adv & ~(tested & (egfr | alk)) & (rng.random(n) < 0.50)).astype(float)
    c["radiotherapy"] = (rng.random(n) < np.select([stage_n == 3], [0.5], 0.15)).astype(float)
    c["central_venous_catheter"] = (rng.random(n) < np.where(chemo, 0.30, 0.04)).astype(float)
    c["esa_use"] = (rng.random(n) < np.where(chemo, 0.05, 0.01)).astype(float)
    recent_op = surgery & (c["days_since_surgery"] <= th.MONTH_1.value)
    c["anticoagulated"] = (rng.random(n) < np.where(recent_op, 0.45, 0.06)).astype(float)

    # history
    c["prior_vte"] = (rng.random(n) < 0.06).astype(float)
    c["copd"] = (rng.random(n) < np.where(never, 0.05, 0.32)).astype(float)
    c["pleural_effusion"] = (
        rng.random(n) < np.select([stage_n == 4, stage_n == 3], [0.30, 0.10], 0.03)
    ).astype(float)
    c["immobilized"] = (rng.random(n) < np.where(c["ecog"] >= 3, 0.30, 0.04)).astype(float)
    c["recent_hospitalization"] = (rng.random(n) < np.where(adv, 0.20, 0.08)).astype(float)
    c["contrast_allergy"] = (rng.random(n) < 0.03).astype(float)

    # laboratory (latent true values; masking comes later)
    c["platelets"] = np.clip(np.exp(rng.normal(np.log(255) + 0.12 * adv, 0.30, n)), 20, 1500)
    c["hemoglobin"] = np.clip(rng.normal(np.where(male, 134, 124) - 8 * chemo, 16, n), 50, 220)
    c["leukocytes"] = np.clip(np.exp(rng.normal(np.log(7.6) + 0.10 * adv, 0.32, n)), 0.5, 80)
    c["bmi"] = np.clip(rng.normal(25.5, 4.6, n), 14, 60)
    c["creatinine"] = np.clip(np.exp(rng.normal(np.log(np.where(male, 85, 68)), 0.25, n)), 25, 900)
    c["egfr_renal"] = _ckd_epi_2021(c["creatinine"], c["age"], male)
    c["soluble_p_selectin"] = np.clip(np.exp(rng.normal(np.log(45), 0.4, n)), 1, 900)
    c["systolic_bp"] = np.clip(rng.normal(128, 17, n), 70, 220)
    return c


def _ckd_epi_2021(creat_umol: np.ndarray, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Race-free CKD-EPI 2021 eGFR (Inker LA, NEJM 2021 [V]) from creatinine in µmol/L."""
    scr = creat_umol / CREATININE_MG_DL
    kappa, alpha = np.where(male, 0.9, 0.7), np.where(male, -0.302, -0.241)
    egfr = (
        142
        * np.minimum(scr / kappa, 1) ** alpha
        * np.maximum(scr / kappa, 1) ** -1.2
        * 0.9938**age
        * np.where(male, 1.0, 1.012)
    )
    return np.clip(np.round(egfr, 0), 1, 200)


# ---------------------------------------------------------------------------------------
# 2. Base risk
# ---------------------------------------------------------------------------------------


def _risk_factors(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The base-risk indicators at the index date, named as in the effect table (latent
    values: no NaN)."""
    d = c["days_since_surgery"]
    with np.errstate(invalid="ignore"):
        return {
            "adenocarcinoma": c["histology"] == "adenocarcinoma",
            "alk_rearrangement": c["_alk"],
            "egfr_mutation": c["_egfr"],
            "kras_mutation": c["_kras"],
            "chemotherapy": c["chemotherapy"] == 1,
            "platinum_chemotherapy": c["platinum_chemotherapy"] == 1,
            "gemcitabine": c["gemcitabine"] == 1,
            "egfr_tki": c["egfr_tki"] == 1,
            "anti_angiogenic": c["anti_angiogenic"] == 1,
            "immunotherapy": c["immunotherapy"] == 1,
            "surgery_0_30d": d <= th.MONTH_1.value,
            "surgery_31_91d": (d > th.MONTH_1.value) & (d <= th.MONTHS_3.value),
            "surgery_92_182d": (d > th.MONTHS_3.value) & (d <= th.MONTHS_6.value),
            "central_venous_catheter": c["central_venous_catheter"] == 1,
            "prior_vte": c["prior_vte"] == 1,
            "platelets_350": c["platelets"] >= th.PLATELETS_HIGH.value,
            "hemoglobin_below_100_or_esa": (c["hemoglobin"] < th.HEMOGLOBIN_LOW.value)
            | (c["esa_use"] == 1),
            "hemoglobin_above_150": c["hemoglobin"] > th.HEMOGLOBIN_HIGH.value,
            "leukocytes_11": c["leukocytes"] > th.LEUKOCYTES_HIGH.value,
            "bmi_35": c["bmi"] >= th.BMI_HIGH.value,
            "ecog_2_plus": c["ecog"] >= th.ECOG_POOR.value,
            "pleural_effusion": c["pleural_effusion"] == 1,
            "immobilized": c["immobilized"] == 1,
            "recent_hospitalization": c["recent_hospitalization"] == 1,
            "vascular_compression": c["vascular_compression"] == 1,
            "diagnosed_6_months": c["months_since_diagnosis"] <= th.RECENT_DIAGNOSIS_MONTHS.value,
            "anticoagulated": c["anticoagulated"] == 1,
        }


def _pe_now(p_base: np.ndarray, q: float, llr: np.ndarray) -> np.ndarray:
    """P(PE present now) after the index-date findings: prior ``q·p``, findings with
    likelihood ratio ``exp(llr)``."""
    odds = q * p_base * np.exp(llr)
    return odds / (odds + 1 - q * p_base)


#: base-risk factor → the record field that shows it (masking can hide it), where the two
#: names differ; a factor named as a field (chemotherapy, prior_vte, ...) is shown by it
_FACTOR_FIELD = {
    "platelets_350": "platelets",
    "hemoglobin_above_150": "hemoglobin",
    "leukocytes_11": "leukocytes",
    "bmi_35": "bmi",
    "ecog_2_plus": "ecog",
    "diagnosed_6_months": "months_since_diagnosis",
}


def _recorded(values: np.ndarray) -> np.ndarray:
    return ~pd.isna(values)


def _observable_eta(
    c: dict[str, np.ndarray], factors: dict[str, np.ndarray], ors: dict[str, float]
) -> np.ndarray:
    """The base linear predictor from what the record shows.

    A factor whose field was masked enters at its mean within the row's histology
    (mutations and labs depend on it), a close stand-in for its expectation given
    the record; everything else enters as is. With the findings of ``_pe_now``
    restricted to the recorded ones (an unrecorded finding's expected likelihood ratio
    is 1), this gives ``pe_now_observable``: the benchmark a model trained on the
    records can reach, where ``pe_now_probability`` also knows the hidden values.
    """
    hist, _ = pd.factorize(c["histology"])
    counts = np.bincount(hist)
    eta = np.zeros(len(hist))
    for name in ors:
        x = factors[name].astype(float)
        field = _FACTOR_FIELD.get(name, name if name in c else None)
        hidden = ~_recorded(c[field]) if field else np.zeros(len(x), dtype=bool)
        if name == "hemoglobin_below_100_or_esa":  # known if either part shows it, or both known
            hb, esa = _recorded(c["hemoglobin"]), _recorded(c["esa_use"])
            with np.errstate(invalid="ignore"):
                low = c["hemoglobin"] < th.HEMOGLOBIN_LOW.value
                shown = (hb & low) | (c["esa_use"] == 1) | (hb & esa)
            hidden = ~shown
        if hidden.any():
            x = np.where(hidden, (np.bincount(hist, weights=x) / counts)[hist], x)
        eta += np.log(ors[name]) * x
    return eta


# ---------------------------------------------------------------------------------------
# 4. Findings given PE now, with exact likelihood ratios
# ---------------------------------------------------------------------------------------


def _normal_llr(x: np.ndarray, mu0: np.ndarray | float, shift: float, sd: float) -> np.ndarray:
    """log N(x; mu0 + shift, sd) − log N(x; mu0, sd)."""
    return shift * (x - mu0) / sd**2 - shift**2 / (2 * sd**2)


def _findings(
    rng: np.random.Generator,
    c: dict[str, np.ndarray],
    y: np.ndarray,
    fx: Effects,
    advanced: np.ndarray,
) -> dict[str, np.ndarray]:
    """Draw the index-date findings given PE present (``y``); return each one's log-likelihood ratio."""
    n = len(y)
    llr: dict[str, np.ndarray] = {}

    def binary(name: str) -> np.ndarray:
        p1, p0 = fx(name, "p_if_pe"), fx(name, "p_if_no_pe")
        v = rng.random(n) < np.where(y, p1, p0)
        llr_v = np.where(v, np.log(p1 / p0), np.log((1 - p1) / (1 - p0)))
        return v, llr_v

    suspected, llr_s = binary("suspected_pe")
    c["suspected_pe"] = suspected.astype(float)
    llr["suspected_pe"] = llr_s
    for name in (
        "dvt_signs",
        "unilateral_leg_pain",
        "pe_most_likely",
        "hemoptysis",
        "dyspnea",
        "chest_pain",
    ):
        v, llr_v = binary(name)
        c[name] = v.astype(float)
        llr[name] = llr_v

    def lognormal(name: str, mu0: np.ndarray | float, sd: float, lo: float, hi: float) -> None:
        shift = fx(name, "log_shift_if_pe")
        z = rng.normal(mu0 + shift * y, sd, n)
        llr[name] = _normal_llr(z, mu0, shift, sd)
        c[name] = np.clip(np.exp(z), lo, hi)

    def normal(name: str, mu0: float, sd: float, lo: float, hi: float) -> None:
        shift = fx(name, "shift_if_pe")
        x = rng.normal(mu0 + shift * y, sd, n)
        llr[name] = _normal_llr(x, mu0, shift, sd)
        c[name] = np.clip(x, lo, hi)

    lognormal(
        "d_dimer", np.log(0.55) + fx("d_dimer", "log_shift_advanced") * advanced, 0.9, 0.05, 100
    )
    lognormal("troponin", np.log(8.0), 0.9, 0.5, 100000)
    lognormal("nt_probnp", np.log(220.0), 1.0, 5, 100000)
    normal("heart_rate", 86, 14, 30, 220)
    normal("pao2", 82, 12, 25, 600)
    normal("rv_lv_ratio", 0.9, 0.15, 0.3, 3.5)
    # saturation: 100 − a log-normal deficit (keeps it below 100 without clipping)
    shift = (
        -fx("oxygen_saturation", "shift_if_pe") / 4.0
    )  # a 3-point drop ≈ 0.75 on the log deficit
    z = rng.normal(np.log(4.0) + shift * y, 0.45, n)
    llr["oxygen_saturation"] = _normal_llr(z, np.log(4.0), shift, 0.45)
    c["oxygen_saturation"] = np.round(np.clip(100 - np.exp(z), 50, 100), 1)
    r1, r0 = fx("ecg_abnormalities", "rate_if_pe"), fx("ecg_abnormalities", "rate_if_no_pe")
    k = rng.poisson(np.where(y, r1, r0))
    llr["ecg_abnormalities"] = k * np.log(r1 / r0) - (r1 - r0)
    c["ecg_abnormalities"] = np.minimum(k, 12).astype(float)
    return llr


# ---------------------------------------------------------------------------------------
# 7. Missingness: depends on the setting (suspected or routine), not on the outcome
# ---------------------------------------------------------------------------------------


def recording_rates(fx: Effects) -> dict[str, tuple[float, float]]:
    """P(recorded | PE suspected), P(recorded | routine assessment) of every field the cohort
    leaves unrecorded at times, from the table's ``p_recorded`` rows (or the
    ``p_recorded_if_suspected`` / ``p_recorded_routine`` pair where the setting matters)."""
    out: dict[str, tuple[float, float]] = {}
    for (name, parameter), (value, _) in fx.rows.items():
        if parameter == "p_recorded":
            out[name] = (value, value)
        elif parameter == "p_recorded_if_suspected":
            out[name] = (value, fx(name, "p_recorded_routine"))
    return out


def _mask(rng: np.random.Generator, c: dict[str, np.ndarray], fx: Effects) -> None:
    suspected = c["suspected_pe"] == 1  # the setting, read before suspected_pe is masked too
    n = len(suspected)
    for name, (p_susp, p_routine) in recording_rates(fx).items():
        c[name] = blanked(
            np.asarray(c[name]), rng.random(n) >= np.where(suspected, p_susp, p_routine)
        )


# ---------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------


def generate(n: int, seed: int, effects: Effects | None = None) -> Cohort:
    """Generate ``n`` rows, deterministically for ``seed``."""
    if n < 100:
        raise ValueError(f"n={n} is too small for a cohort; give at least 100 rows")
    fx = effects or load_effects()
    rng = np.random.default_rng(seed)
    c = _population(rng, n)
    advanced = np.isin(c["stage"], ("III", "IV"))
    factors = _risk_factors(c)
    ors = fx.odds_ratios()
    surgery = {name for name, _ in SURGERY_BANDS}
    eta_now = sum(np.log(ors[name]) * factors[name] for name in ors)
    eta_later = sum(np.log(ors[name]) * factors[name] for name in ors if name not in surgery)
    timeline = hazard_pieces(c["days_since_surgery"], ors)
    death = death_hazard(c["stage"], c["ecog"], fx)
    q = fx("pe_at_index", "fraction_of_events")
    cal = calibrate(
        eta_now,
        eta_later,
        advanced,
        death,
        timeline,
        q,
        fx("incidence", "target"),
        fx("stage_iii_iv", "target_marginal_or"),
    )
    p_base = expit(eta_now + cal.beta * advanced + cal.b0)
    rate = np.exp(eta_later + cal.beta * advanced + cal.h0)
    present = rng.random(n) < q * p_base
    llr = _findings(rng, c, present, fx, advanced)
    pe_now = _pe_now(p_base, q, sum(llr.values()))
    _mask(rng, c, fx)
    pe_now_seen = _pe_now(
        expit(_observable_eta(c, factors, ors) + cal.beta * advanced + cal.b0),
        q,
        sum(v * _recorded(c[name]) for name, v in llr.items()),
    )
    new_pe = incidence_all(rate, death, timeline, HORIZONS_DAYS)

    # latent times from their own stream: censoring settings never move a clinical value
    times = np.random.default_rng([seed, 2])
    e_pe, e_death, e_lost = (times.standard_exponential(n) for _ in range(3))
    pe_day = np.where(present, 0.0, draw_pe_day(rate, e_pe, timeline))
    death_day = np.maximum(np.ceil(e_death / death), 1)
    site, day = sites_and_days(np.random.default_rng([seed, 1]), n)
    index_date = FIRST_INDEX_DATE + day.astype("timedelta64[D]")
    cutoff = data_cutoff(fx)
    to_cutoff = (cutoff - index_date).astype(float)
    loss = loss_rate(fx)
    with np.errstate(divide="ignore"):
        lost_day = np.maximum(np.ceil(e_lost / loss), 1) if loss > 0 else np.full(n, np.inf)
    end = np.minimum(np.minimum(to_cutoff, lost_day), MAX_FOLLOWUP_DAYS)
    followup = np.minimum(end, death_day)
    with np.errstate(invalid="ignore"):
        pe_days = np.where(pe_day <= followup, pe_day, np.nan)  # PE on the day of death counts
    death_days = np.where(death_day <= end, death_day, np.nan)

    frame = pd.DataFrame(
        {
            f.name: c.get(
                f.name, np.full(n, None if f.kind in (Kind.CATEGORY, Kind.TEXT) else np.nan)
            )
            for f in FIELDS
        }
    )
    frame["patient_id"] = [f"SYN-{seed}-{i:07d}" for i in range(n)]
    for name in ("ecog", "days_since_surgery", "ecg_abnormalities"):
        frame[name] = frame[name].astype("Int64")
    for name in (
        "platelets",
        "hemoglobin",
        "leukocytes",
        "creatinine",
        "bmi",
        "heart_rate",
        "systolic_bp",
        "pao2",
        "nt_probnp",
        "soluble_p_selectin",
    ):
        frame[name] = frame[name].round(1)
    frame["d_dimer"] = frame["d_dimer"].round(3)
    for name in ("rv_lv_ratio", "troponin"):
        frame[name] = frame[name].round(2)
    for f in FIELDS:
        if f.kind is Kind.BOOLEAN:
            frame[f.name] = frame[f.name].astype("boolean")  # true/false/null, as the contract says
    frame["site"], frame["index_date"] = site, index_date.astype(str).astype(object)
    frame[PE_DAYS], frame[DEATH_DAYS], frame[FOLLOWUP_DAYS] = pe_days, death_days, followup
    truth = pd.DataFrame(
        {
            "row": np.arange(n),
            "pe_at_index": present,
            "pe_now_probability": pe_now,
            "pe_now_observable": pe_now_seen,
            **{new_pe_column(h): new_pe[:, i] for i, h in enumerate(HORIZONS_DAYS)},
            "base_probability": q * p_base + (1 - q * p_base) * new_pe[:, -1],
        }
    )
    meta = {
        "synthetic": True,
        "generator": GENERATOR,
        "n": n,
        "seed": seed,
        "effects_digest": fx.digest,
        "horizon_days": HORIZONS_DAYS[-1],
        "horizons_days": list(HORIZONS_DAYS),
        "max_followup_days": MAX_FOLLOWUP_DAYS,
        "data_cutoff": str(cutoff),
        "p_lost_by_180": fx("followup", "p_lost_by_180"),
        "loss_hazard_per_day": round(float(loss), 8),
        "intercept": round(cal.b0, 6),
        "stage_iii_iv_log_or": round(cal.beta, 6),
        "pe_log_hazard_per_day_intercept": round(cal.h0, 6),
        "death_by_180d_by_stage": {s: fx("death", f"p_by_180d_stage_{s}") for s in STAGES},
        "death_hazard_ratio_per_ecog_point": fx("ecog", "death_hazard_ratio_per_point"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "SYNTHETIC DATA: generated by pe-risk from published effect sizes; not patients",
    }
    return Cohort(frame, truth, meta)


def cohort_file(settings: Any, n: int, seed: int, say: Any = None) -> Path:
    """The synthetic cohort of ``n`` rows for ``seed`` in the state folder, generated and
    written there the first time it is asked for."""
    settings.ensure_dirs()
    path = settings.cohort_file(n, seed)
    if not path.exists():
        if say:
            say(f"generating a synthetic cohort of {n} rows (seed {seed})")
        write(generate(n, seed), path)
    return path


def truth_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.truth{path.suffix}")


def meta_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.meta.json")


def write(cohort: Cohort, path: Path) -> list[Path]:
    """Write the cohort, its truth (separate file) and its metadata; returns the paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    paths = [path, truth_path(path), meta_path(path)]
    if path.suffix.lower() == ".parquet":
        for df, p in ((cohort.frame, paths[0]), (cohort.truth, paths[1])):
            table = pa.Table.from_pandas(df, preserve_index=False)
            meta = {**(table.schema.metadata or {}), b"pe_risk": json.dumps(cohort.meta).encode()}
            pq.write_table(table.replace_schema_metadata(meta), p)
    elif path.suffix.lower() == ".csv":
        cohort.frame.to_csv(paths[0], index=False)
        cohort.truth.to_csv(paths[1], index=False)
    else:
        raise ValueError(f"{path}: give a .parquet or .csv path")
    paths[2].write_text(json.dumps(cohort.meta, indent=2) + "\n", encoding="utf-8")
    return paths


def read_truth(path: Path) -> pd.DataFrame:
    """The truth file written beside the cohort at ``path`` (never a model input)."""
    truth = truth_path(path)
    return pd.read_parquet(truth) if truth.suffix.lower() == ".parquet" else pd.read_csv(truth)


def read_meta(path: Path) -> dict[str, Any]:
    """The cohort's metadata (Parquet schema metadata, else the sidecar JSON)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        raw = (pq.read_schema(path).metadata or {}).get(b"pe_risk")
        if raw:
            return json.loads(raw)
    return json.loads(meta_path(path).read_text(encoding="utf-8"))
