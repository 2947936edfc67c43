"""Every clinical cut-off that more than one place reads, declared once with its source.

The feature specification (``features.spec``), the scores (``features.scores``), the
guideline flags (``features.recommend``), the report and the synthetic cohort
(``training.cohort``) read these; none writes the number again. Sources are those of
``shared/reference/clinical.md`` ([V] read in the primary paper or a guideline, [S] in a
secondary source only, [U] unverified).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cut:
    """One published cut-off: ``value`` in ``unit``, and where it comes from."""

    value: float
    unit: str
    source: str

    def __float__(self) -> float:
        return float(self.value)


KHORANA = "Khorana AA et al. Blood 2008;111:4902 [V]"
REVIEW = "review (shared/seed/lung-cancer-pe-review.txt)"

# Khorana items (also Vienna CATS, PROTECHT, CONKO, COMPASS-CAT; the cohort's risk factors)
PLATELETS_HIGH = Cut(350, "10⁹/L", KHORANA + " (pre-chemotherapy platelets ≥350)")
HEMOGLOBIN_LOW = Cut(100, "g/L", KHORANA + " (haemoglobin <100 g/L)")
LEUKOCYTES_HIGH = Cut(11, "10⁹/L", KHORANA + " (leukocytes >11, strictly greater)")
BMI_HIGH = Cut(35, "kg/m²", KHORANA + " (BMI ≥35)")
HEMOGLOBIN_HIGH = Cut(150, "g/L", "haemoglobin >150 g/L raises VTE risk: " + REVIEW + ", ref 18")

# D-dimer (mg/L FEU)
D_DIMER_RULE_OUT = Cut(
    0.5, "mg/L FEU", "conventional rule-out cut-off, 500 µg/L FEU: " + REVIEW + ", ref 13"
)
D_DIMER_CATS = Cut(1.44, "mg/L FEU", "Ay C et al. Blood 2010;116:5377 [V] (cut-off [S])")
AGE_ADJUSTED_FROM = Cut(
    50, "years", "Righini M et al. JAMA 2014;311:1117 (ADJUST-PE) [V]: age × 0.01 mg/L above 50"
)
YEARS_NO_ITEM = Cut(
    1.0, "mg/L FEU", "van der Hulle T et al. Lancet 2017;390:289 [V]: <1000 ng/mL with no item"
)
YEARS_ANY_ITEM = Cut(
    0.5, "mg/L FEU", "van der Hulle T et al. Lancet 2017;390:289 [V]: <500 ng/mL with ≥1 item"
)

# Other biomarkers
P_SELECTIN_CATS = Cut(53.1, "ng/mL", "Ay C et al. Blood 2010;116:5377 [V] (cut-off [S])")
HS_TNT = Cut(
    14,
    "ng/L",
    "hs-cTnT (Roche) 99th percentile, Heart 2018 editorial table [V]; raised means above it",
)
HS_TNT_FROM_75 = Cut(
    45, "ng/L", "age-adjusted hs-TnT ≥45 pg/mL at ≥75 years proposed for PE risk stratification [S]"
)
HS_TNI_WOMEN = Cut(
    16, "ng/L", "hs-cTnI (Abbott) 99th percentile, women: Heart 2018 editorial table [V]"
)
HS_TNI_MEN = Cut(
    34, "ng/L", "hs-cTnI (Abbott) 99th percentile, men: Heart 2018 editorial table [V]"
)
NT_PROBNP_RV = Cut(600, "pg/mL", "NT-proBNP ≥600 pg/mL for right-ventricular risk, ESC 2019 [U]")
PAO2_LOW = Cut(70, "mmHg", "PaO₂ <70 mmHg: " + REVIEW + ", ref 18")
RV_LV_HIGH = Cut(1.0, "", "RV/LV >1 means a higher risk of adverse outcome: " + REVIEW)

# Renal function
EGFR_CTPA = Cut(
    30, "mL/min/1.73m²", "renal impairment contraindicates iodinated contrast: " + REVIEW
)
CRCL_BLEEDING = Cut(
    60,
    "mL/min",
    "VTE-BLEED renal dysfunction: creatinine clearance <60 mL/min by Cockcroft–Gault "
    "(Klok FA et al. Eur Respir J 2016, Table 1 [V])",
)

# Wells
WELLS_UNLIKELY_MAX = Cut(
    4, "points", "Wells two-tier: PE unlikely ≤4, likely >4 (ERR review table [V])"
)
WELLS_CTPA_ABOVE = Cut(
    2, "points", "Wells >2 with a raised D-dimer: prioritise CTPA (" + REVIEW + ")"
)

# Calendar windows, in days: the review's post-operative bands (1/3/6/12 months after
# resection, Yang, review ref 23), the scores' "within 4 weeks / 1 month / 6 months / 1 year"
# items and the published risks' horizons
WEEKS_4 = Cut(28, "days", "Wells 2000, PERC (Kline 2004): surgery in the previous 4 weeks")
MONTH_1 = Cut(30, "days", "1 month (revised Geneva; the review's first post-operative band)")
MONTHS_3 = Cut(91, "days", "3 months")
MONTHS_6 = Cut(182, "days", "6 months (treated within 6 months: Wells 2000, VTE-BLEED)")
MONTHS_12 = Cut(365, "days", "1 year (cured less than 1 year ago: revised Geneva, Le Gal 2006)")
DAYS_PER_MONTH = 30.4375

# Cancer timing (months since diagnosis or since the last treatment)
RECENT_DIAGNOSIS_MONTHS = Cut(
    6, "months", "cancer diagnosed within 6 months (VTE-BLEED; COMPASS-CAT)"
)
ACTIVE_DIAGNOSIS_MONTHS = Cut(
    12, "months", "active: diagnosed within 12 months (revised Geneva, sPESI)"
)
FIELDS_COVER_MONTHS = Cut(
    3, "months", "the treatment fields cover current treatment or the last 3 months (data contract)"
)

# Performance status and age
ECOG_POOR = Cut(2, "", "ECOG ≥2: CONKO (Pelzer 2013) [U]; Li J score (Thromb Res 2021) [V]")
HS_TNT_OLD_AGE = Cut(75, "years", "age from which the hs-TnT cut-off of 45 ng/L is proposed [S]")

# The published 6-month risks the risk bands are anchored on
KHORANA_0_RISK = Cut(
    0.050, "", "6-month VTE at Khorana 0: Mulder FI et al. Haematologica 2019;104(6) [V]"
)
KHORANA_2_RISK = Cut(
    0.089,
    "",
    "6-month VTE at Khorana ≥2, the usual thromboprophylaxis threshold: Mulder FI et al. "
    "Haematologica 2019;104(6) [V]",
)
