"""The clinician's one-page report: the ``/predict`` answer, drawn for a person.

The two questions stay apart (design.md): when PE is suspected, first the probability of
PE now with the diagnostic rules and what to do next, then the risk of a new PE over time
if PE is excluded; at a routine visit, the risk of a new PE by 30, 90 and 180 days (a
curve) with the bleeding scores beside it.

``report_html(model, version, record)`` builds the answer with ``serving.answer.predict`` (so
the page says exactly what ``/predict`` says), adds what the answer cannot hold (the
missing inputs that would most move the estimate) and renders ``templates/report.html``:
self-contained HTML (inline CSS and SVG; no script, font, style sheet or image is
fetched, so it works on an offline hospital network) that prints on one A4 page.
``POST /report`` and ``pe-risk report`` both call it.

Accessibility: every chart has a text equivalent (SVG ``title``/``desc`` and a table for
screen readers), every colour is doubled by words ("raises", "lowers", band names), and
text colours meet WCAG AA contrast (≥4.5:1) on white.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from scipy.special import expit

from features.build import record_columns
from features.contract import BY_NAME as FIELD
from features.contract import FIELDS, Kind, new_pe_column
from features.recommend import REVIEW
from features.records import RecordError, parse_record
from features.scores import REVISED_GENEVA, VIENNA_CATS
from features.spec import FEATURES
from models.artifact import PERiskModel
from serving.answer.predict import KEY_INPUTS, predict_records
from serving.answer.text import label, main_factors, percent

#: the risk axis (log scale) of the risk chart, as probabilities
SCALE = (0.005, 0.99)
TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9)
#: contributions drawn one by one in the waterfall; the rest are summed into one row
WATERFALL_ROWS = 7
#: records with more inputs than this are set in smaller type, so the page stays one A4 page
DENSE_ABOVE = 24
#: scores shown, in order; diagnostic ones only when PE is suspected
PROGNOSTIC = ("khorana", "vienna_cats")
DIAGNOSTIC = ("wells", "revised_geneva", "years")
BLEEDING = ("vte_bleed", "riete_bleeding")
LIMITATIONS = (
    "It estimates probabilities; it does not diagnose or exclude PE.",
    "The new-PE risk counts death as a competing risk and weights follow-up that ended early.",
    "Inputs outside the training range, or missing key inputs, make the estimate less "
    "certain (see the warnings).",
)
_MODEL_FIELDS = tuple(
    dict.fromkeys(f.field for f in FEATURES if f.in_model and f.field is not None)
)


@dataclass(frozen=True)
class WhatIf:
    """How far one missing input could move the estimate, over its usual values."""

    field: str
    label: str
    low: float
    high: float
    low_value: str
    high_value: str

    @property
    def spread(self) -> float:
        return self.high - self.low


def _candidates(name: str, ranges: dict[str, list[float]]) -> list[Any]:
    spec = FIELD[name]
    if spec.kind is Kind.BOOLEAN:
        return [False, True]
    if spec.kind is Kind.CATEGORY:
        return list(spec.choices)
    lo_hi = spec.usual or (tuple(ranges[name]) if name in ranges else None)
    if lo_hi is None:
        return []
    lo, hi = lo_hi
    return [lo, (lo + hi) / 2, hi]


def missing_input_effects(
    model: PERiskModel, record: Any, *, top: int = 4, min_spread: float = 0.005
) -> list[WhatIf]:
    """The missing model inputs whose usual values would move the estimate the most: the
    probability of PE now when PE is suspected, else the risk of a new PE (the estimate the
    report leads with).

    For each input the model uses and the record lacks, the record is scored again with
    the input set to its usual low, middle and high values (booleans both ways, every
    category), all in one vectorised call. Inputs whose range stays under ``min_spread``
    are left out.
    """
    known = record.present()
    ranges = model.info.get("training_ranges", {})
    trials: list[tuple[str, Any]] = []
    raws = []
    for name in _MODEL_FIELDS:
        if name in known:
            continue
        for value in _candidates(name, ranges):
            trials.append((name, value))
            raws.append({**known, name: value})
    if not raws:
        return []
    parsed, kept = [], []
    for trial, raw in zip(trials, raws, strict=True):
        try:
            parsed.append(parse_record(raw))
            kept.append(trial)
        except RecordError:  # e.g. a value a cross-field rule refuses for this patient
            continue
    if not parsed:
        return []
    head = model.pe_now if model.pe_now is not None and record.suspected_pe else model.new_pe
    p = head.probability(model.features(record_columns(parsed))).tolist()
    by_field: dict[str, list[tuple[float, str]]] = {}
    for (name, _), trial_record, prob in zip(kept, parsed, p, strict=True):
        shown = (trial_record.given(name) or "").replace("_", " ")  # as the record shows it
        by_field.setdefault(name, []).append((prob, shown))
    out = []
    for name, results in by_field.items():
        (lo, lo_v), (hi, hi_v) = min(results, key=_first), max(results, key=_first)
        if hi - lo >= min_spread:
            out.append(WhatIf(name, label(name), lo, hi, lo_v, hi_v))
    return sorted(out, key=lambda w: -w.spread)[:top]


def _first(pair: tuple[float, str]) -> float:
    return pair[0]


# ------------------------------------------------------------------------- chart geometry
def _x_risk(p: float, width: float) -> float:
    lo, hi = (math.log10(v) for v in SCALE)
    v = min(max(p, SCALE[0]), SCALE[1])
    return round((math.log10(v) - lo) / (hi - lo) * width, 1)


def horizon(days: int | None) -> str:
    """A published risk's horizon in words: 0 → 'at the work-up', 182 → 'at 6 months'."""
    if days is None:
        return ""
    if days == 0:
        return "at the work-up (prevalence)"
    months = round(days / 30.4)
    return f"at {days} days" if days < 60 else f"at {months} months"


def anchors(model: PERiskModel, question: str = "new_pe") -> list[tuple[str, float]]:
    """Published risks to read an estimate against, each declared where its source is. A new
    PE: the risk bands' anchors (Khorana 0 and ≥2, 6-month risks; ``models.artifact.RiskBands``)
    and the highest Vienna CATS group (≥5 points: 35 % at 6 months; Ay 2010). PE now: the PE
    prevalence of the revised Geneva groups (Le Gal 2006; ``models.artifact.diagnostic_bands``)."""
    if question == "pe_now":
        return [(f"Geneva {b.category}", float(b.risk or 0)) for b in REVISED_GENEVA.bands]
    highest = VIENNA_CATS.bands[-1]
    return [
        ("Khorana 0", model.new_pe.bands.low_below),
        ("Khorana ≥2", model.new_pe.bands.high_from),
        (f"CATS ≥{highest.lo:g}", float(highest.risk or 0)),
    ]


def anchor_text(p: float, bands: dict[str, float], question: str = "new_pe") -> str:
    """Where the estimate sits against the band anchors, in words, so that 9 % and 82 % do
    not read the same."""
    low, high = bands["low_below"], bands["high_from"]
    if question == "pe_now":
        if p < low:
            return f"below the revised Geneva low group's PE prevalence ({percent(low)})"
        if p < high:
            return f"between revised Geneva low ({percent(low)}) and intermediate ({percent(high)})"
        return f"{p / high:.1f} × revised Geneva intermediate ({percent(high)})"
    if p < low:
        return f"below {percent(low)} (6-month risk at Khorana 0)"
    if p < high:
        return f"between Khorana 0 ({percent(low)}) and Khorana ≥2 ({percent(high)})"
    return f"{p / high:.1f} × the 6-month risk at Khorana ≥2 ({percent(high)})"


def curve(by_horizon: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Geometry of the new-PE curve: the cumulative incidence at 0 and each horizon, joined
    by straight lines (the model gives the horizons, not the days between)."""
    w, h = 150.0, 46.0
    last = by_horizon[-1]["horizon_days"]
    top = max(0.02, max(a["probability"] for a in by_horizon) * 1.15)
    pts = [(0.0, 0.0)] + [(a["horizon_days"], a["probability"]) for a in by_horizon]

    def xy(d: float, p: float) -> tuple[float, float]:
        return round(d / last * w, 1), round(h - p / top * h, 1)

    return {
        "width": w,
        "height": h,
        "points": " ".join(f"{x},{y}" for x, y in (xy(d, p) for d, p in pts)),
        "marks": [
            {"x": xy(d, p)[0], "y": xy(d, p)[1], "days": int(d), "text": percent(p)}
            for d, p in pts[1:]
        ],
        "top": percent(top),
    }


def risk_scale(
    p: float,
    bands: dict[str, float],
    base_rate: float | None,
    marks: Sequence[tuple[str, float]] = (),
) -> dict[str, Any]:
    """Geometry of the risk bar: bands, ticks, the patient's marker, the training-data
    average and the published anchors (``marks``)."""
    w = 520.0
    edges = [SCALE[0], bands["low_below"], bands["high_from"], SCALE[1]]
    names = ("low", "intermediate", "high")
    segments = [
        {
            "name": n,
            "x": _x_risk(a, w),
            "w": _x_risk(b, w) - _x_risk(a, w),
            "range": f"{percent(a) if i else '0 %'} – {percent(b) if i < 2 else '100 %'}",
        }
        for i, (n, a, b) in enumerate(zip(names, edges, edges[1:], strict=False))
    ]
    return {
        "width": w,
        "segments": segments,
        "ticks": [{"x": _x_risk(t, w), "text": f"{100 * t:g} %"} for t in TICKS],
        "marker": _x_risk(p, w),
        "marker_anchor": "end" if _x_risk(p, w) > 0.7 * w else "start",
        "base": None if base_rate is None else _x_risk(base_rate, w),
        "anchors": [{"label": k, "value": percent(v), "x": _x_risk(v, w)} for k, v in marks],
    }


def waterfall(explanation: dict[str, Any], probability: float) -> dict[str, Any]:
    """Geometry of the contribution chart, on the calibrated log-odds scale, labelled in %.

    Rows run from the starting point (the base value: every input at its average) to this
    patient; each bar starts where the previous ended, so the last one ends at
    logit(probability) exactly.
    """
    contributions = explanation["contributions"]
    rows = main_factors(explanation, WATERFALL_ROWS)
    rest = contributions[len(rows) :]
    other = sum(c["contribution"] for c in rest)
    if rest and other != 0:
        rows.append(
            {
                "text": f"{len(rest)} other factors together",
                "delta": other,
                "direction": "raises" if other > 0 else "lowers",
            }
        )
    start = explanation["base_value"]
    points = [start]
    for r in rows:
        points.append(points[-1] + r["delta"])
    lo = min(*points, math.log(0.01 / 0.99)) - 0.2
    hi = max(*points, math.log(0.3 / 0.7)) + 0.2
    w = 440.0

    def x(z: float) -> float:
        return round((z - lo) / (hi - lo) * w, 1)

    for r, a, b in zip(rows, points, points[1:], strict=False):
        r.update(x=min(x(a), x(b)), w=max(abs(x(b) - x(a)), 1.5), after=percent(float(expit(b))))
    ticks: list[dict[str, Any]] = []
    for t in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99):
        z = math.log(t / (1 - t))
        if lo <= z <= hi and (not ticks or x(z) - ticks[-1]["x"] >= 34):
            ticks.append({"x": x(z), "text": f"{100 * t:g} %"})
    return {
        "width": w,
        "rows": rows,
        "ticks": ticks,
        "base_x": x(start),
        "end_x": x(points[-1]),
        "end_text": percent(probability),
    }


# ------------------------------------------------------------------------------ rendering
@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("serving.answer", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = percent
    env.filters["horizon"] = horizon
    return env


def _inputs(record: Any) -> list[dict[str, str]]:
    names = [f.name for f in FIELDS if f.name != "patient_id"]
    given = record.given_all(names)
    return [
        {"label": label(n), "value": g.replace("_", " ")}
        for n, g in zip(names, given, strict=True)
        if g is not None
    ]


def render(answer: dict[str, Any], record: Any, model: PERiskModel, what_if: list[WhatIf]) -> str:
    """The page for one answer of ``predict_records`` (with explanation and scores)."""
    scores = answer["clinical_scores"]
    suspected = bool(record.suspected_pe)
    keys = PROGNOSTIC + (DIAGNOSTIC if suspected else ()) + BLEEDING
    question = answer["question"]
    new = answer["estimates"]["new_pe"]
    rates = model.info.get("event_rate") or {}
    base_rate = rates.get("pe_now" if question == "pe_now" else new_pe_column(new["horizon_days"]))
    inputs = _inputs(record)
    metrics = model.info.get("metrics", {})
    return (
        _environment()
        .get_template("report.html")
        .render(
            a=answer,
            model=answer["model"],
            inputs=inputs,
            dense=len(inputs) > DENSE_ABOVE,
            missing=[label(k) for k in KEY_INPUTS if getattr(record, k) is None],
            question=question,
            now=answer["estimates"]["pe_now"],
            new=new,
            curve=curve(new["by_horizon"]),
            bleeding_scores=[dict(scores[k], key=k) for k in BLEEDING if k in scores],
            scale=risk_scale(
                answer["probability"], answer["risk_bands"], base_rate, anchors(model, question)
            ),
            anchor_text=anchor_text(answer["probability"], answer["risk_bands"], question),
            review_path=REVIEW,
            base_rate=base_rate,
            fall=waterfall(answer["explanation"], answer["probability"]),
            scores=[dict(scores[k], key=k) for k in keys if k in scores],
            suspected=suspected,
            what_if=what_if,
            auroc=metrics.get("auroc"),
            now_auroc=((model.info.get("pe_now") or {}).get("metrics") or {}).get("auroc"),
            slope=metrics.get("calibration_slope"),
            khorana_auroc=model.info.get("baselines", {}).get("khorana", {}).get("auroc"),
            limitations=LIMITATIONS,
        )
    )


def report_html(model: PERiskModel, version: str, record: Any) -> str:
    """The report for one validated ``PatientRecord`` (what ``/report`` returns)."""
    answer = predict_records(model, version, [record])[0]
    return render(answer, record, model, missing_input_effects(model, record))
