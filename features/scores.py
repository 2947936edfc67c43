"""Established clinical scores, exactly as published, evaluated on canonical columns.

Each additive score is declared as data: items (plain-words name, points, a test on
the record) and bands (category, point range, published risk), with its source. One
evaluator runs them all, vectorised over rows, or on one record's Python scalars (the
service's case: ``features.either``), so the training baselines (100,000 rows), the HTTP
answer and the report use the same code. Definitions and published
risks come from ``shared/reference/clinical.md`` §1 ([V] verified against the primary
abstract, [S] secondary source only, [U] unverified: each docstring below says which).

Missing inputs: an item whose input is unknown scores 0 and is listed in
``missing``; ``max_points`` is what the score would be if every missing item were
positive, and ``category_certain`` says whether the category could change. A flag that
reads a score uses that certainty (``features.recommend``).

Active cancer is not "always": each score's malignancy item follows its own published
definition (``active_cancer``), read from the treatment fields, ``days_since_surgery``,
``months_since_diagnosis`` and the stage, and is unknown when the record cannot tell. A
stage I patient diagnosed 36 months ago, operated on 1,000 days ago and untreated since
scores 0 on every one of them.

Published risks carry their horizon (``horizon_days``: 0 = prevalence at the work-up),
so that a 12-month figure is never read beside pe-risk's 180-day estimate as a 6-month one.

The diagnostic rules (Wells, revised Geneva, YEARS, age-adjusted D-dimer, PERC) are
validated only when PE is suspected: they are computed for every record, and
``applicable`` is False unless ``suspected_pe`` is true.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from features import thresholds as th
from features.either import (
    COMPARE,
    all_true,
    any_true,
    constant,
    is_known,
    negate,
    one_record,
    where,
)
from features.units import LAB_UNITS

#: µmol/L per mg/dL of creatinine, as the unit table converts it
CREATININE_MG_DL = LAB_UNITS["creatinine"].factors["mg/dL"]

Columns = Mapping[str, Any]  # name → an array over rows, or one record's Python scalars
Test = Callable[[Columns], tuple[Any, Any]]  # (positive, known)


# ---------------------------------------------------------------------------------------
# Item tests: each returns (positive, known), boolean arrays over the rows of array
# columns, or two bools for one record's scalars (``features.either``: one code for both).
# ---------------------------------------------------------------------------------------


def is_true(field: str) -> Test:
    def test(c: Columns) -> tuple[Any, Any]:
        x = c[field]
        return x == 1.0, is_known(x)

    return test


def compare(field: str, op: str, cut: float) -> Test:
    """``field op cut`` with op one of ``>``, ``>=``, ``<``, ``<=``."""
    fn = COMPARE[op]

    def test(c: Columns) -> tuple[Any, Any]:
        x = c[field]
        return fn(x, cut), is_known(x)  # NaN compares False

    return test


def between(field: str, lo: float, hi: float) -> Test:
    """``lo <= field < hi``."""

    def test(c: Columns) -> tuple[Any, Any]:
        x = c[field]
        return (x >= lo) & (x < hi), is_known(x)  # NaN compares False

    return test


def stage_in(*stages: str) -> Test:
    def test(c: Columns) -> tuple[Any, Any]:
        s = c["stage"]  # a few stages: one comparison each beats np.isin's set-up
        return any_true(s == v for v in stages), s != None  # noqa: E711

    return test


def always(c: Columns) -> tuple[Any, Any]:
    """Active lung cancer: every record has it."""
    yes = constant(c, True)
    return yes, yes


def never_recorded(c: Columns) -> tuple[Any, Any]:
    """An item the record does not carry: always unknown."""
    no = constant(c, False)
    return no, no


def surgery_within(days: int) -> Test:
    """Thoracic surgery within ``days``; an absent ``days_since_surgery`` means none (contract)."""

    def test(c: Columns) -> tuple[Any, Any]:
        return c["days_since_surgery"] <= days, constant(c, True)  # NaN (none) compares False

    return test


def any_of(*tests: Test) -> Test:
    """Positive if any part is positive; known if one is positive or all are known."""

    def test(c: Columns) -> tuple[Any, Any]:
        parts = [t(c) for t in tests]
        pos = any_true(p for p, _ in parts)
        return pos, pos | all_true(k for _, k in parts)

    return test


def all_of(*tests: Test) -> Test:
    """Positive if every part is positive; known if one is known negative or all are known."""

    def test(c: Columns) -> tuple[Any, Any]:
        parts = [t(c) for t in tests]
        pos = all_true(p for p, _ in parts)
        known_neg = any_true(k & negate(p) for p, k in parts)
        return pos, known_neg | all_true(k for _, k in parts)

    return test


def anaemia(c: Columns) -> tuple[Any, Any]:
    """Hb <130 g/L in men, <120 g/L in women (VTE-BLEED and RIETE definition [V])."""
    hb, male = c["hemoglobin"], c["sex"] == "male"
    return hb < where(male, 130.0, 120.0), is_known(hb)


def male_uncontrolled_hypertension(c: Columns) -> tuple[Any, Any]:
    """Male with systolic BP ≥140 mmHg (VTE-BLEED [V]); women score 0 whatever the BP."""
    sbp, male = c["systolic_bp"], c["sex"] == "male"
    return male & (sbp >= 140), negate(male) | is_known(sbp)


#: anticancer treatment fields (current, or within the last 3 months: data contract)
TREATMENTS = ("chemotherapy", "egfr_tki", "anti_angiogenic", "immunotherapy", "radiotherapy")


def active_cancer(
    *,
    treated_within_days: float | None,
    diagnosed_within_months: float | None,
    stage_iv: str,
) -> Test:
    """Active cancer as one score defines it, from what the record says.

    Treatment: with ``treated_within_days=None`` "under treatment" (a treatment field true;
    all false means not treated now). With a window, "treated within" it: a treatment field
    true, thoracic surgery or ``months_since_treatment`` within it; known not treated within
    it only when ``months_since_treatment`` is older, or every treatment field is false for
    a diagnosis no older than what the fields cover (3 months: never treated since), and any
    thoracic surgery was longer ago. Diagnosis: within ``diagnosed_within_months``. Stage:
    with ``stage_iv="positive"`` stage IV counts (treated with palliative intent, or
    metastatic); with ``"unknown"`` stage IV without another sign stays unknown (it may be
    progressive). The stage is read as the current one; a recurrence should be recorded as
    such. Known negative only when every part is known negative.
    """

    def test(c: Columns) -> tuple[Any, Any]:
        on = any_true(c[f] == 1 for f in TREATMENTS)
        off = all_true(c[f] == 0 for f in TREATMENTS)
        diagnosis = c["months_since_diagnosis"]
        if treated_within_days is None:
            pos, neg = on, off
        else:  # an unknown (NaN) compares False: unknown is neither within nor older
            months = treated_within_days / th.DAYS_PER_MONTH
            d, last = c["days_since_surgery"], c["months_since_treatment"]
            surgery = d <= treated_within_days  # absent = no surgery
            never = off & (diagnosis <= th.FIELDS_COVER_MONTHS.value)
            pos = on | surgery | (last <= months)
            neg = negate(on) & negate(surgery) & ((last > months) | never)
        if diagnosed_within_months is not None:
            pos = pos | (diagnosis <= diagnosed_within_months)
            neg = neg & (diagnosis > diagnosed_within_months)
        iv = c["stage"] == "IV"
        if stage_iv == "positive":
            pos = pos | iv
        if stage_iv != "ignored":
            neg = neg & negate(iv)
        return pos, pos | neg

    return test


def raised_troponin(c: Columns) -> tuple[Any, Any]:
    """hs-cTnT above 14 ng/L (≥45 ng/L from 75 years), or hs-cTnI above the sex-specific 99th
    percentile (16 ng/L women, 34 ng/L men); known when either assay was measured."""
    tnt, tni = c["troponin"], c["troponin_i"]
    old, male = c["age"] >= th.HS_TNT_OLD_AGE.value, c["sex"] == "male"
    # above the 99th percentile; the age proposal is ≥45 (NaN compares False)
    t_pos = where(old, tnt >= th.HS_TNT_FROM_75.value, tnt > th.HS_TNT.value)
    i_pos = tni > where(male, th.HS_TNI_MEN.value, th.HS_TNI_WOMEN.value)
    pos = t_pos | i_pos
    return pos, pos | is_known(tnt) | is_known(tni)


def creatinine_clearance(c: Columns) -> Any:
    """Cockcroft–Gault creatinine clearance in mL/min: (140 − age) × weight / (72 × Scr in
    mg/dL), × 0.85 for women (Cockcroft DW, Gault MH, Nephron 1976;16:31); NaN when
    weight or creatinine is unknown (the contract keeps creatinine ≥10 µmol/L)."""
    scr = c["creatinine"] / CREATININE_MG_DL
    female = where(c["sex"] == "female", 0.85, 1.0)
    return (140 - c["age"]) * c["body_weight"] / (72 * scr) * female


def clearance_below(cut: float) -> Test:
    def test(c: Columns) -> tuple[Any, Any]:
        crcl = creatinine_clearance(c)
        return crcl < cut, is_known(crcl)

    return test


def points_above(score: Score, cut: float) -> Test:
    """Another score's points strictly above ``cut`` (ONKOTEV's 'Khorana >2')."""

    def test(c: Columns) -> tuple[Any, Any]:
        r = score.evaluate(c)
        return r.points > cut, (r.points > cut) | (r.max_points <= cut)

    return test


# ---------------------------------------------------------------------------------------
# Score declarations
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    name: str  # plain words, as the report shows it
    points: float
    test: Test


@dataclass(frozen=True, slots=True)
class Band:
    category: str
    lo: float  # inclusive
    hi: float  # inclusive
    risk: float | None = None  # published risk as a proportion
    risk_text: str = ""  # what that risk is (outcome, horizon, cohort)
    horizon_days: int | None = None  # the horizon of ``risk``; 0 = prevalence at the work-up
    points: str | None = None  # the points as the paper words them, where not "lo–hi"

    def rule(self, last: bool) -> str:
        """The points of the band, as a reader checks them: "0", "1–2", "≥3" ("" where the
        category already is the points)."""
        if self.points is not None:
            return self.points
        if last:
            return f"≥{self.lo:g}"
        return f"{self.lo:g}" if self.lo == self.hi else f"{self.lo:g}–{self.hi:g}"


@dataclass(frozen=True, slots=True)
class ScoreArrays:
    """A score over the rows of array columns (arrays), or for one record (scalars)."""

    points: Any
    max_points: Any
    positive: dict[str, Any]
    missing: dict[str, Any]

    def row(self, row: int) -> tuple[float, float, dict[str, bool], dict[str, bool]]:
        """Points, maximum points, and each item's positive and unknown, for one row (read
        from ``listed()`` when many rows are read)."""
        if isinstance(self.points, float):  # one record
            return self.points, self.max_points, self.positive, self.missing
        return (
            float(self.points[row]),
            float(self.max_points[row]),
            {k: bool(v[row]) for k, v in self.positive.items()},
            {k: bool(v[row]) for k, v in self.missing.items()},
        )

    def listed(self) -> ScoreArrays:
        """The same as Python lists: a row is then read without numpy's per-element cost."""
        return ScoreArrays(
            np.asarray(self.points).tolist(),
            np.asarray(self.max_points).tolist(),
            {k: v.tolist() for k, v in self.positive.items()},
            {k: v.tolist() for k, v in self.missing.items()},
        )


@dataclass(frozen=True)
class Score:
    key: str
    title: str
    items: tuple[Item, ...]
    bands: tuple[Band, ...]
    source: str
    diagnostic: bool = False  # applies only when PE is suspected
    on_anticoagulation: bool = False  # validated only in patients on anticoagulation
    note: str = ""

    def evaluate(self, c: Columns) -> ScoreArrays:
        """The points, the points if every unknown item were positive, and each item's
        positive and unknown: arrays over rows, or scalars for one record (``one_record``)."""
        points = max_points = 0.0
        positive, missing = {}, {}
        for item in self.items:
            pos, known = item.test(c)
            unknown = negate(known)
            points = points + item.points * pos
            max_points = max_points + item.points * (pos | unknown)
            positive[item.name], missing[item.name] = pos, unknown
        return ScoreArrays(points, max_points, positive, missing)

    def band(self, points: float) -> Band:
        for b in self.bands:
            if b.lo <= points <= b.hi:
                return b
        raise AssertionError(f"{self.key}: no band for {points}")  # pragma: no cover

    def result(
        self,
        c: Columns,
        row: int = 0,
        *,
        suspected: bool | None = None,
        anticoagulated: bool | None = None,
        arrays: ScoreArrays | None = None,
    ) -> dict[str, Any]:
        """The JSON-ready result for one row of ``c`` (``arrays``: ``evaluate(c)``, if done)."""
        a = arrays if arrays is not None else self.evaluate(c)
        pts, mx, positive, missing = a.row(row)
        band = self.band(pts)
        return {
            "title": self.title,
            "points": pts,
            "max_points": mx,
            "category": band.category,
            "category_rule": band.rule(band is self.bands[-1]),
            "published_risk": band.risk,
            "risk_text": band.risk_text,
            "horizon_days": band.horizon_days,
            "complete": not any(missing.values()),
            "category_certain": band.category == self.band(mx).category,
            "missing": [i.name for i in self.items if missing[i.name]],
            "items": [
                {
                    "item": i.name,
                    "points": i.points,
                    "met": positive[i.name],
                    "known": not missing[i.name],
                }
                for i in self.items
            ],
            "applicable": _applicable(self.diagnostic, suspected)
            and (not self.on_anticoagulation or anticoagulated is True),
            "source": self.source,
            **({"note": self.note} if self.note else {}),
        }


def _applicable(diagnostic: bool, suspected: bool | None) -> bool:
    return (not diagnostic) or bool(suspected)


SIX_MONTHS, TWELVE_MONTHS = int(th.MONTHS_6.value), int(th.MONTHS_12.value)
THREE_MONTHS, THIRTY_DAYS, AT_WORK_UP = int(th.MONTHS_3.value), int(th.MONTH_1.value), 0

_KHORANA_ITEMS = (
    Item("Lung cancer (high-risk site)", 1, always),
    Item(
        f"Platelets ≥{th.PLATELETS_HIGH.value:g} ×10⁹/L",
        1,
        compare("platelets", ">=", th.PLATELETS_HIGH.value),
    ),
    Item(
        f"Haemoglobin <{th.HEMOGLOBIN_LOW.value:g} g/L or erythropoiesis-stimulating agent",
        1,
        any_of(compare("hemoglobin", "<", th.HEMOGLOBIN_LOW.value), is_true("esa_use")),
    ),
    Item(
        f"Leukocytes >{th.LEUKOCYTES_HIGH.value:g} ×10⁹/L",
        1,
        compare("leukocytes", ">", th.LEUKOCYTES_HIGH.value),
    ),
)
_BMI = Item(f"BMI ≥{th.BMI_HIGH.value:g} kg/m²", 1, compare("bmi", ">=", th.BMI_HIGH.value))

_MULDER = "6-month VTE, meta-analysis of 34,555 patients (Mulder 2019)"
KHORANA = Score(
    "khorana",
    "Khorana score",
    (*_KHORANA_ITEMS, _BMI),
    (
        Band("low", 0, 0, th.KHORANA_0_RISK.value, _MULDER, SIX_MONTHS),
        Band("intermediate", 1, 2, 0.066, _MULDER, SIX_MONTHS),
        Band("high", 3, 6, 0.110, _MULDER, SIX_MONTHS),
    ),
    th.KHORANA + "; risks: Mulder FI et al. Haematologica 2019;104:1277 [V]",
    note="In lung cancer the Khorana score barely discriminates (AUC 0.55–0.57; van Es 2020, "
    "Cancers 2024)",
)
"""Khorana score (Khorana 2008 [V]): 0 low, 1–2 intermediate, ≥3 high. Lung scores 1 from
the site item alone."""

_CATS_RISK = "6-month cumulative VTE in the Vienna CATS cohort (Ay 2010)"
_CATS_RISK_S = _CATS_RISK + " [S]"
VIENNA_CATS = Score(
    "vienna_cats",
    "Vienna CATS score",
    (
        *_KHORANA_ITEMS,
        _BMI,
        Item(
            f"D-dimer ≥{th.D_DIMER_CATS.value:g} mg/L FEU",
            1,
            compare("d_dimer", ">=", th.D_DIMER_CATS.value),
        ),
        Item(
            f"Soluble P-selectin ≥{th.P_SELECTIN_CATS.value:g} ng/mL",
            1,
            compare("soluble_p_selectin", ">=", th.P_SELECTIN_CATS.value),
        ),
    ),
    (
        Band("0", 0, 0, 0.010, _CATS_RISK, SIX_MONTHS, ""),
        Band("1", 1, 1, 0.044, _CATS_RISK_S, SIX_MONTHS, ""),
        Band("2", 2, 2, 0.035, _CATS_RISK_S, SIX_MONTHS, ""),
        Band("3", 3, 3, 0.103, _CATS_RISK, SIX_MONTHS, ""),
        Band("4", 4, 4, 0.203, _CATS_RISK_S, SIX_MONTHS, ""),
        Band("≥5", 5, 8, 0.350, _CATS_RISK, SIX_MONTHS, ""),
    ),
    "Ay C et al. Blood 2010;116:5377 [V]: score 0 → 1.0 %, 3 (intermediate) → 10.3 %, ≥5 "
    "(highest) → 35.0 % at 6 months; cut-offs and the risks for 1, 2 and 4 points from "
    "practical-haemostasis.com [S]",
    note="Shown by points with Ay's 6-month risks (Ay 2010 calls 0 lowest, 3 intermediate and "
    "≥5 highest), so that its words never contradict Khorana's; the '≥3 high' convention is "
    "van Es 2017's; units taken as mg/L FEU and ng/mL [U]",
)
"""Vienna CATS: Khorana + D-dimer ≥1.44 µg/mL + sP-selectin ≥53.1 ng/mL (Ay 2010 [V]).

The categories and risks are Ay's: 1.0 % (0), 10.3 % (3, intermediate) and 35.0 % (≥5,
highest) at 6 months [V]; 4.4, 3.5 and 20.3 % for 1, 2 and 4 points [S]. Not confirmed
against the original: the assay units (secondary tables disagree; taken as mg/L FEU and
ng/mL).
"""

COMPASS_CAT = Score(
    "compass_cat",
    "COMPASS-CAT score",
    (
        Item("Anthracycline or anti-hormonal therapy", 6, never_recorded),
        Item(
            "Cancer diagnosed ≤6 months ago",
            4,
            compare("months_since_diagnosis", "<=", th.RECENT_DIAGNOSIS_MONTHS.value),
        ),
        Item(
            "Central venous catheter",
            3,
            is_true("central_venous_catheter"),
        ),
        Item("Advanced stage (III–IV)", 2, stage_in("III", "IV")),
        Item("≥2 cardiovascular risk factors", 5, never_recorded),
        Item(
            "Recent hospitalisation for acute medical illness",
            5,
            is_true("recent_hospitalization"),
        ),
        Item("Personal history of VTE", 1, is_true("prior_vte")),
        Item(
            f"Platelets ≥{th.PLATELETS_HIGH.value:g} ×10⁹/L",
            2,
            compare("platelets", ">=", th.PLATELETS_HIGH.value),
        ),
    ),
    (
        Band(
            "low-intermediate",
            0,
            6,
            0.0227,
            "6-month VTE, external validation n=3,814 [S]",
            SIX_MONTHS,
        ),
        Band("high", 7, 28, 0.0631, "6-month VTE, external validation n=3,814 [S]", SIX_MONTHS),
    ),
    "Gerotziafas GT et al. Oncologist 2017;22:1222 [V]; item points from secondary tables [S]; "
    "risks: external validation (n=3,814; AUC 0.62) [S]",
    note="The record carries neither anthracycline/anti-hormonal therapy nor cardiovascular risk "
    "factors: they are listed as missing",
)
"""COMPASS-CAT (Gerotziafas 2017 [V]; points [S]); ≥7 = high; 6-month risks 2.27 % and 6.31 %
from the external validation [S]. Items the record lacks are missing."""

_ONKOTEV_RISK = "12-month cumulative VTE, ONKOTEV validation (ESMO 2021) [S]"
ONKOTEV = Score(
    "onkotev",
    "ONKOTEV score",
    (
        Item(
            "Khorana score >2",
            1,
            points_above(KHORANA, 2),
        ),
        Item("Metastatic disease (stage IV)", 1, stage_in("IV")),
        Item(
            "Vascular or lymphatic compression by tumour",
            1,
            is_true("vascular_compression"),
        ),
        Item("Previous VTE", 1, is_true("prior_vte")),
    ),
    (
        Band("0", 0, 0, 0.037, _ONKOTEV_RISK, TWELVE_MONTHS, ""),
        Band("1", 1, 1, 0.097, _ONKOTEV_RISK, TWELVE_MONTHS, ""),
        Band("2", 2, 2, 0.194, _ONKOTEV_RISK, TWELVE_MONTHS, ""),
        Band(">2", 3, 4, 0.339, _ONKOTEV_RISK, TWELVE_MONTHS, ""),
    ),
    "Cella CA et al. Oncologist 2017;22:601 [V] (Fine–Gray, death competing); 12-month "
    "cumulative incidence 3.7 / 9.7 / 19.4 / 33.9 % by score from the ESMO 2021 validation [S]",
    note="Published risks are 12-month cumulative incidences, not 6-month",
)
"""ONKOTEV (Cella 2017 [V]); risks are the 12-month cumulative incidences of the ESMO 2021
validation [S] (the earlier per-score proportions were crude, over up to 24 months)."""

PROTECHT = Score(
    "protecht",
    "PROTECHT score",
    (
        *_KHORANA_ITEMS,
        _BMI,
        Item("Platinum chemotherapy", 1, is_true("platinum_chemotherapy")),
        Item("Gemcitabine", 1, is_true("gemcitabine")),
    ),
    (Band("low", 0, 2), Band("high", 3, 7)),
    "Verso M et al. Intern Emerg Med 2012;7:291 [V via van Es 2017]; items from Cancers 2020 "
    "(PMC7409200) [S]",
    note="Points (+1 each for platinum and gemcitabine) could not be checked against the original [U]",
)
"""PROTECHT = Khorana + platinum + gemcitabine, +1 each [U]; ≥3 high (van Es 2017 [V])."""

CONKO = Score(
    "conko",
    "CONKO score",
    (
        *_KHORANA_ITEMS,
        Item(
            f"ECOG performance status ≥{th.ECOG_POOR.value:g}",
            1,
            compare("ecog", ">=", th.ECOG_POOR.value),
        ),
    ),
    (Band("low", 0, 2), Band("high", 3, 5)),
    "Pelzer U et al. Thromb Haemost 2013 [U]; definition from Cancers 2020 (PMC7409200) [S]",
    note="Khorana with BMI replaced by WHO performance status ≥2; lung-cancer AUC 0.63 at ≥2 "
    "(Cancers 2024)",
)
"""CONKO = Khorana with BMI replaced by performance status ≥2 ([S]; original [U])."""

_SURGERY_4W = any_of(
    surgery_within(th.WEEKS_4.value), is_true("recent_surgery_or_trauma")
)  # thoracic surgery (days_since_surgery) or any other surgery or trauma
WELLS = Score(
    "wells",
    "Wells score for PE",
    (
        Item("Clinical signs of DVT", 3, is_true("dvt_signs")),
        Item("PE the most likely diagnosis", 3, is_true("pe_most_likely")),
        Item("Heart rate >100/min", 1.5, compare("heart_rate", ">", 100)),
        Item(
            "Immobilisation ≥3 days or surgery in the previous 4 weeks",
            1.5,
            any_of(is_true("immobilized"), _SURGERY_4W),
        ),
        Item("Previous DVT or PE", 1.5, is_true("prior_vte")),
        Item("Haemoptysis", 1, is_true("hemoptysis")),
        Item(
            "Malignancy (on treatment, treated in the last 6 months, or palliative)",
            1,
            active_cancer(
                treated_within_days=th.MONTHS_6.value,
                diagnosed_within_months=None,
                stage_iv="positive",
            ),
        ),
    ),
    (
        Band("low", 0, 1.5, 0.013, "PE prevalence, Wells 2001 [S]", AT_WORK_UP, "<2"),
        Band("moderate", 2, 6, 0.162, "PE prevalence, Wells 2001 [U]", AT_WORK_UP),
        Band("high", 6.5, 12.5, 0.406, "PE prevalence, Wells 2001 [U]", AT_WORK_UP, ">6"),
    ),
    "Wells PS et al. Thromb Haemost 2000;83:416 [V]; prevalences Wells 2001 [S]/[U]",
    diagnostic=True,
    note="Surgery in the last 4 weeks: thoracic (days_since_surgery) or other "
    "(recent_surgery_or_trauma), unknown while the latter is not recorded. Stage IV counts as "
    "palliative",
)
"""Wells for PE (Wells 2000 [V]); three-tier <2 / 2–6 / >6, two-tier ≤4 unlikely / >4 likely.

Malignancy: "on treatment, treated within 6 months, or palliative" (Wells 2000 [V]): see
``active_cancer`` (a treatment within 6 months, or stage IV, palliative).
Not confirmed: the moderate and high prevalences 16.2 % and 40.6 % ([U]).
"""

WELLS_TWO_TIER = (
    Band(
        "PE unlikely",
        0,
        th.WELLS_UNLIKELY_MAX.value,
        None,
        "PE prevalence 8–13 % across studies",
        AT_WORK_UP,
    ),
    Band(
        "PE likely",
        th.WELLS_UNLIKELY_MAX.value + 0.5,
        12.5,
        None,
        "PE prevalence 37–56 % across studies",
        AT_WORK_UP,
    ),
)

REVISED_GENEVA = Score(
    "revised_geneva",
    "Revised Geneva score",
    (
        Item("Age >65 years", 1, compare("age", ">", 65)),
        Item("Previous DVT or PE", 3, is_true("prior_vte")),
        Item(
            "Surgery or lower-limb fracture within 1 month",
            2,
            any_of(surgery_within(th.MONTH_1.value), is_true("recent_surgery_or_trauma")),
        ),
        Item(
            "Active malignancy, or considered cured less than 1 year ago",
            2,
            active_cancer(
                treated_within_days=th.MONTHS_12.value,
                diagnosed_within_months=th.ACTIVE_DIAGNOSIS_MONTHS.value,
                stage_iv="positive",
            ),
        ),
        Item(
            "Unilateral lower-limb pain",
            3,
            is_true("unilateral_leg_pain"),
        ),
        Item("Haemoptysis", 2, is_true("hemoptysis")),
        Item("Heart rate 75–94/min", 3, between("heart_rate", 75, 95)),
        Item("Heart rate ≥95/min", 5, compare("heart_rate", ">=", 95)),
        Item(
            "Pain on deep venous palpation and unilateral oedema",
            4,
            is_true("dvt_signs"),
        ),
    ),
    (
        Band("low", 0, 3, 0.08, "PE prevalence (Le Gal 2006) [V]", AT_WORK_UP),
        Band("intermediate", 4, 10, 0.28, "PE prevalence (Le Gal 2006) [V]", AT_WORK_UP),
        Band("high", 11, 25, 0.74, "PE prevalence (Le Gal 2006) [V]", AT_WORK_UP),
    ),
    "Le Gal G et al. Ann Intern Med 2006;144:165 [V] (prevalences 8 / 28 / 74 %)",
    diagnostic=True,
)
"""Revised Geneva (Le Gal 2006 [V]): 0–3 low, 4–10 intermediate, ≥11 high.

Active malignancy: "solid or haematological, currently active or considered cured <1 year"
[V]: treatment, surgery within a year, diagnosis within 12 months, or stage IV.
``max_points`` counts both heart-rate items when the rate is unknown, so it can exceed
the true maximum of 22; the categories stay correct.
"""

_ACTIVE_SPESI = active_cancer(
    treated_within_days=None,
    diagnosed_within_months=th.ACTIVE_DIAGNOSIS_MONTHS.value,
    stage_iv="positive",
)
SPESI = Score(
    "spesi",
    "Simplified PESI (30-day mortality if PE is confirmed)",
    (
        Item("Age >80 years", 1, compare("age", ">", 80)),
        Item(
            "Cancer (active: diagnosed ≤12 months, under treatment, or metastatic)",
            1,
            _ACTIVE_SPESI,
        ),
        Item(
            "Chronic heart failure or chronic lung disease",
            1,
            any_of(is_true("copd"), never_recorded),
        ),
        Item("Pulse ≥110/min", 1, compare("heart_rate", ">=", 110)),
        Item("Systolic BP <100 mmHg", 1, compare("systolic_bp", "<", 100)),
        Item("SaO₂ <90 %", 1, compare("oxygen_saturation", "<", 90)),
    ),
    (
        Band("low", 0, 0, 0.010, "30-day mortality (Jiménez 2010)", THIRTY_DAYS),
        Band("high", 1, 6, 0.109, "30-day mortality (Jiménez 2010)", THIRTY_DAYS),
    ),
    "Jiménez D et al. Arch Intern Med 2010 [V] (ERJ/ESC table); active cancer diagnosed ≤12 "
    "months or under treatment as in clinical.md §1.13 [S], metastatic disease counted [U]",
    note="Prognosis after a confirmed PE, not the risk of PE",
)
"""sPESI (Jiménez 2010 [V]); cancer counts when active (diagnosed within 12 months, under
treatment, or metastatic [S]); heart failure is not in the record, so a COPD-free patient
shows that item as missing."""

VTE_BLEED = Score(
    "vte_bleed",
    "VTE-BLEED (bleeding during stable anticoagulation)",
    (
        Item(
            "Active cancer (diagnosed ≤6 months, recurrent or progressive, or treated ≤6 months)",
            2,
            active_cancer(
                treated_within_days=th.MONTHS_6.value,
                diagnosed_within_months=th.RECENT_DIAGNOSIS_MONTHS.value,
                stage_iv="unknown",
            ),
        ),
        Item(
            "Male with uncontrolled hypertension (SBP ≥140 mmHg)",
            1,
            male_uncontrolled_hypertension,
        ),
        Item("Anaemia (Hb <130 g/L men, <120 g/L women)", 1.5, anaemia),
        Item("History of bleeding", 1.5, never_recorded),
        Item("Age ≥60 years", 1.5, compare("age", ">=", 60)),
        Item(
            f"Renal dysfunction (creatinine clearance <{th.CRCL_BLEEDING.value:g} mL/min, "
            "Cockcroft–Gault)",
            1.5,
            clearance_below(th.CRCL_BLEEDING.value),
        ),
    ),
    (Band("low", 0, 1.5, points="<2"), Band("high", 2, 9)),
    "Klok FA et al. Eur Respir J 2016 [V] (RE-COVER / Hokusai-VTE; Table 1: definitions)",
    on_anticoagulation=True,
    note="Validated for major bleeding during stable anticoagulation (after the first 30 days); "
    "information only, not a reason to withhold treatment",
)
"""VTE-BLEED (Klok 2016 [V]) with the original weights and definitions: active cancer is
diagnosed ≤6 months, recently recurrent or progressive, or treated ≤6 months (stage IV
without treatment stays unknown: it may be progressive); renal dysfunction is a
Cockcroft–Gault creatinine clearance <60 mL/min (needs ``body_weight``), not eGFR per
1.73 m². It applies to patients on anticoagulation."""

RIETE = Score(
    "riete_bleeding",
    "RIETE bleeding score (major bleeding within 3 months)",
    (
        Item("Recent major bleeding", 2, never_recorded),
        Item(
            "Creatinine >1.2 mg/dL (106 µmol/L)",
            1.5,
            compare("creatinine", ">", 1.2 * CREATININE_MG_DL),
        ),
        Item("Anaemia (Hb <130 g/L men, <120 g/L women)", 1.5, anaemia),
        Item(
            "Cancer (active: diagnosed ≤12 months, under treatment, or metastatic)",
            1,
            _ACTIVE_SPESI,
        ),
        Item("Clinically overt PE", 1, never_recorded),
        Item("Age >75 years", 1, compare("age", ">", 75)),
    ),
    (
        Band("low", 0, 0, 0.003, "3-month major bleeding (Ruíz-Giménez 2008)", THREE_MONTHS),
        Band(
            "intermediate",
            0.5,
            4,
            0.026,
            "3-month major bleeding (Ruíz-Giménez 2008)",
            THREE_MONTHS,
            "1–4",
        ),
        Band(
            "high", 4.5, 8, 0.073, "3-month major bleeding (Ruíz-Giménez 2008)", THREE_MONTHS, ">4"
        ),
    ),
    "Ruíz-Giménez N et al. Thromb Haemost 2008 [V] (abstract); 'cancer' read as active cancer, "
    "as for sPESI [U]",
    on_anticoagulation=True,
    note="Major bleeding in the first 3 months of anticoagulation for VTE; 'clinically overt PE' "
    "counts once PE is confirmed, which the record cannot know",
)
"""RIETE bleeding score (Ruíz-Giménez 2008 [V]): 0 low, 1–4 intermediate, >4 high."""

PERC = Score(
    "perc",
    "PERC rule",
    (
        Item("Age ≥50 years", 1, compare("age", ">=", 50)),
        Item("Heart rate ≥100/min", 1, compare("heart_rate", ">=", 100)),
        Item("SaO₂ <95 %", 1, compare("oxygen_saturation", "<", 95)),
        Item("Unilateral leg swelling", 1, is_true("dvt_signs")),
        Item("Haemoptysis", 1, is_true("hemoptysis")),
        Item(
            "Surgery or trauma ≤4 weeks",
            1,
            _SURGERY_4W,
        ),
        Item("Prior DVT or PE", 1, is_true("prior_vte")),
        Item("Exogenous oestrogen", 1, never_recorded),
    ),
    (
        Band(
            "PERC negative",
            0,
            0,
            None,
            "PE excluded without D-dimer if gestalt probability ≤15 %",
            AT_WORK_UP,
        ),
        Band("PERC positive", 1, 8, None, "PERC cannot exclude PE", AT_WORK_UP),
    ),
    "Kline JA et al. J Thromb Haemost 2004;2:1247 [V]",
    diagnostic=True,
    note="Only for gestalt pre-test probability ≤15 %; PERC has no cancer item and most "
    "patients with lung cancer fail the age criterion",
)
"""PERC (Kline 2004 [V]); exogenous oestrogen is not in the record and is always listed missing."""

ADDITIVE: tuple[Score, ...] = (
    KHORANA,
    VIENNA_CATS,
    COMPASS_CAT,
    ONKOTEV,
    PROTECHT,
    CONKO,
    WELLS,
    REVISED_GENEVA,
    PERC,
    SPESI,
    VTE_BLEED,
    RIETE,
)

YEARS_ITEMS = (
    Item("Clinical signs of DVT", 1, is_true("dvt_signs")),
    Item("Haemoptysis", 1, is_true("hemoptysis")),
    Item("PE the most likely diagnosis", 1, is_true("pe_most_likely")),
)
YEARS_SOURCE = "van der Hulle T et al. Lancet 2017;390:289 [V]; thresholds in FEU (MDCalc) [V]"
AGE_ADJUSTED_SOURCE = "Righini M et al. JAMA 2014;311:1117 (ADJUST-PE) [V]"


def age_adjusted_cutoff(age: Any) -> Any:
    """Age-adjusted D-dimer cut-off in mg/L FEU: age × 0.01 above 50 years, else 0.5.

    Righini 2014 (ADJUST-PE) [V]; validated for FEU assays with a 0.5 mg/L cut-off
    (its use with DDU assays is unverified [U]).
    """
    return where(age > th.AGE_ADJUSTED_FROM.value, age * 0.01, th.D_DIMER_RULE_OUT.value)


def years_threshold(c: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YEARS: (items present, items max, D-dimer threshold in mg/L FEU).

    0 items: PE excluded if D-dimer <1.0 mg/L FEU; ≥1 item: if <0.5 mg/L FEU
    (van der Hulle 2017 [V]).
    """
    pts = np.zeros(len(c["age"]))
    mx = np.zeros(len(c["age"]))
    for item in YEARS_ITEMS:
        pos, known = item.test(c)
        pts += pos
        mx += pos | ~known
    return pts, mx, np.where(pts == 0, th.YEARS_NO_ITEM.value, th.YEARS_ANY_ITEM.value)


def _d_dimer_rule(
    c: Columns,
    row: int,
    cutoff: float,
    *,
    excluded_text: str,
    above_text: str,
    title: str,
    source: str,
    suspected: bool | None,
    points: float | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    dd = float(c["d_dimer"][row])
    if np.isnan(dd):
        category, missing = "D-dimer needed", ["D-dimer"]
    elif dd < cutoff:
        category, missing = excluded_text, []
    else:
        category, missing = above_text, []
    return {
        "title": title,
        "points": points,
        "category": category,
        "published_risk": None,
        "risk_text": "",
        "missing": missing,
        "complete": not missing,
        "category_certain": not missing,
        "applicable": bool(suspected),
        "source": source,
        "d_dimer_cutoff_mg_l_feu": round(cutoff, 4),
        **extra,
    }


def years_result(
    c: Columns,
    row: int = 0,
    *,
    suspected: bool | None = None,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The YEARS algorithm for one row (see ``years_threshold``).

    ``arrays``: ``years_threshold(c)`` plus each item's ``known`` array, when the caller
    evaluates many rows.
    """
    if arrays is None:
        arrays = (*years_threshold(c), {i.name: i.test(c)[1] for i in YEARS_ITEMS})
    pts, mx, thr, known = arrays
    missing_items = [i.name for i in YEARS_ITEMS if not known[i.name][row]]
    threshold = float(thr[row])
    if mx[row] > 0 and pts[row] == 0 and missing_items:
        threshold = th.YEARS_ANY_ITEM.value  # an unknown item could be present: the stricter
    out = _d_dimer_rule(
        c,
        row,
        threshold,
        excluded_text="PE excluded",
        above_text="CTPA indicated",
        title="YEARS algorithm",
        source=YEARS_SOURCE,
        suspected=suspected,
        points=float(pts[row]),
        extra={},
    )
    out["missing"] = missing_items + out["missing"]
    out["complete"] = out["category_certain"] = not out["missing"]
    return out


def age_adjusted_result(
    c: Columns, row: int = 0, *, suspected: bool | None = None, cutoffs: np.ndarray | None = None
) -> dict[str, Any]:
    """Age-adjusted D-dimer for one row (see ``age_adjusted_cutoff``)."""
    cutoff = float((cutoffs if cutoffs is not None else age_adjusted_cutoff(c["age"]))[row])
    return _d_dimer_rule(
        c,
        row,
        cutoff,
        excluded_text="below the age-adjusted cut-off",
        above_text="above the age-adjusted cut-off",
        title="Age-adjusted D-dimer",
        source=AGE_ADJUSTED_SOURCE,
        suspected=suspected,
        points=None,
        extra={"note": "Rules out PE only when clinical probability is not high"},
    )


def _two_tier_band(points: float) -> Band:
    return next(b for b in WELLS_TWO_TIER if b.lo <= points <= b.hi)


def wells_two_tier(points: float, max_points: float) -> dict[str, Any]:
    """The two-tier Wells category (≤4 unlikely, >4 likely), and whether it holds for every
    completion of the unknown items: certain only when the points and the maximum the
    unknown items could reach fall in the same tier."""
    band = _two_tier_band(points)
    return {
        "category": band.category,
        "category_rule": "≤4" if band is WELLS_TWO_TIER[0] else ">4",
        "risk_text": band.risk_text,
        "category_certain": band.category == _two_tier_band(max_points).category,
        "source": th.WELLS_UNLIKELY_MAX.source,
    }


def score_table(c: Columns) -> list[dict[str, dict[str, Any]]]:
    """Every score for every row of canonical columns, keyed as the service answers.

    Each score is evaluated once for all rows (vectorised), or on Python scalars for one
    record (the service's case, several times faster); only the JSON is per row.
    """
    if len(c["age"]) == 1:
        one = one_record(c)
        arrays = {score.key: score.evaluate(one) for score in ADDITIVE}
    else:
        arrays = {score.key: score.evaluate(c).listed() for score in ADDITIVE}
    years = (*years_threshold(c), {i.name: i.test(c)[1] for i in YEARS_ITEMS})
    cutoffs = age_adjusted_cutoff(c["age"])
    out = []
    flags = zip(c["suspected_pe"].tolist(), c["anticoagulated"].tolist(), strict=True)
    for row, (s, a) in enumerate(flags):
        suspected = None if s != s else bool(s == 1.0)
        anticoagulated = None if a != a else bool(a == 1.0)
        res = {
            score.key: score.result(
                c, row, suspected=suspected, anticoagulated=anticoagulated, arrays=arrays[score.key]
            )
            for score in ADDITIVE
        }
        res["wells"]["two_tier"] = wells_two_tier(
            res["wells"]["points"], res["wells"]["max_points"]
        )
        res["years"] = years_result(c, row, suspected=suspected, arrays=years)
        res["age_adjusted_d_dimer"] = age_adjusted_result(
            c, row, suspected=suspected, cutoffs=cutoffs
        )
        out.append(res)
    return out


def score_results(c: Columns, row: int = 0) -> dict[str, dict[str, Any]]:
    """Every score for one row of canonical columns (see ``score_table``)."""
    return score_table({k: v[row : row + 1] for k, v in c.items()})[0]


def score_points(c: Columns) -> dict[str, np.ndarray]:
    """Points of every additive score for all rows (training baselines)."""
    return {s.key: s.evaluate(c).points for s in ADDITIVE}
