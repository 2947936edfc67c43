"""The report in a real headless Chromium: no console errors, no network, one A4 page.

Chromium is Debian's ``chromium`` package, driven by Playwright (``executable_path``; no
browser download). When it is missing, the fixture installs it with apt-get (as root);
only where that is impossible is the module skipped, with the reason in the summary.
Screenshots go to ``.pe-risk/test-artifacts/`` (look at them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from features.contract import FIELDS, Kind
from features.records import RecordError, parse_record
from serving.answer.report import percent
from tests.conftest import base_record
from tests.service.test_report import RECORD

pytestmark = [pytest.mark.service, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".pe-risk" / "test-artifacts"

#: WCAG 2 contrast of every text element's colour against white (the page background)
CONTRAST_JS = """
() => {
  const lum = (c) => {
    const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest('.sr-only')) continue;
    const style = getComputedStyle(el);
    const color = el.namespaceURI.includes('svg') ? style.fill : style.color;
    if (!color.startsWith('rgb')) continue;
    out.push([el.tagName, el.textContent.trim().slice(0, 30), 1.05 / (lum(color) + 0.05)]);
  }
  return out;
}
"""


def _chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=False, timeout=1200
        )
        found = shutil.which("chromium")
        if found:
            return found
    pytest.fail(  # never a skip: a report not checked in a real browser is not tested
        "the report needs a real browser: Debian's `chromium` is missing and could not be "
        "installed here (needs root and apt-get); install it and run the suite again"
    )


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    path = _chromium()
    with sync_playwright() as p:
        # `make test-clock` preloads libfaketime to move the clock a year; Chromium's own
        # timers stall under it, and the page holds no clock of its own: start it without.
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "FAKETIME")}
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"], env=env)
        yield b
        b.close()


def _full_record() -> dict:
    """Every field of the contract filled with a mid-range value: the longest page."""
    rec = base_record(patient_id="MRN-FULL-0001", suspected_pe=True)
    for f in FIELDS:
        if f.name in rec:
            continue
        if f.kind is Kind.BOOLEAN:
            rec[f.name] = False
        elif f.kind is Kind.CATEGORY:
            rec[f.name] = f.choices[-1]
        elif f.kind in (Kind.NUMBER, Kind.INTEGER, Kind.LAB) and (f.usual or f.hard):
            lo, hi = f.usual or f.hard
            rec[f.name] = int((lo + hi) / 2) if f.kind is Kind.INTEGER else (lo + hi) / 2
    while True:  # leave out what a cross-field rule refuses
        try:
            parse_record(rec)
            return rec
        except RecordError as err:
            for issue in err.issues:
                rec.pop(issue.field, None)


def _open(browser, html: str):
    page = browser.new_page(viewport={"width": 794, "height": 1123})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    requested: list[str] = []

    def refuse(route):  # the page must not fetch anything: an offline hospital network
        requested.append(route.request.url)
        route.abort()

    page.route("**/*", refuse)
    page.set_content(html, wait_until="load")
    return page, problems, requested


#: a routine oncology visit: no suspicion of PE, a low estimate
ROUTINE = base_record(
    patient_id="MRN-0107",
    age=58,
    sex="female",
    stage="II",
    months_since_diagnosis=14,
    platelets=260,
    hemoglobin=128,
    leukocytes=7.2,
    bmi=26,
    suspected_pe=False,
    chemotherapy=False,
    prior_vte=False,
    anticoagulated=False,
)


@pytest.mark.parametrize("name", ["typical", "full", "routine"])
def test_report_in_chromium(client, browser, name) -> None:
    record = {"typical": RECORD, "routine": ROUTINE}.get(name) or _full_record()
    answer = client.post("/predict", json=record).json()
    r = client.post("/report", json=record)
    assert r.status_code == 200
    page, problems, requested = _open(browser, r.text)
    try:
        assert problems == [] and requested == []
        assert page.inner_text("#risk-value") == percent(answer["probability"])
        assert page.inner_text("#risk-category").lower() == answer["risk_category"]
        assert "SYNTHETIC" in page.inner_text("#synthetic-notice")
        assert (
            page.locator("#waterfall title").text_content()
            and page.locator("#waterfall desc").text_content()
        )
        rows = page.locator("#drivers-table tbody tr").count()
        assert rows >= min(7, len(answer["explanation"]["contributions"]))
        assert page.locator("#scores tbody tr").count() >= 4
        assert page.inner_text("#flags") and page.inner_text("#model")
        low = [t for t in page.evaluate(CONTRAST_JS) if t[2] < 4.5]
        assert low == [], f"text below WCAG AA contrast: {low[:5]}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=True)
        pdf = page.pdf(format="A4", print_background=True)
        (ARTIFACTS / f"report-{name}.pdf").write_bytes(pdf)
        pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
        assert pages == 1, f"the {name} report prints on {pages} A4 pages"
    finally:
        page.close()
    json.dumps(answer)  # the answer the page was checked against is plain JSON
