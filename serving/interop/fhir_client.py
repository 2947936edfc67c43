"""Reading a FHIR server on a CDS client's behalf: one search, page by page, safely.

The CDS client's access token is the EHR's credential: it is sent to the allow-listed
FHIR server the call names, and only there. A ``next`` link that leads anywhere else (another
host, another base path) is not followed. Paging stops after ``MAX_PAGES`` and says so, and
an answer that is not a FHIR resource (a list, a string, ``entry`` as a number) is
unobtainable data, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

FHIR_JSON = "application/fhir+json"
MAX_PAGES = 20


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one search gave: the resource (a Bundle holds every page's entries) and why, if
    so, it is incomplete."""

    resource: dict[str, Any]
    truncated: str | None = None


def under(url: str, base: str) -> bool:
    """Whether ``url`` lies under the FHIR base ``base`` (same scheme, host, port and path)."""
    u, b = urlsplit(url), urlsplit(base.rstrip("/"))
    return (u.scheme, u.hostname, u.port) == (b.scheme, b.hostname, b.port) and (
        u.path == b.path or u.path.startswith(b.path + "/")
    )


def _page(r: httpx.Response) -> dict[str, Any]:
    try:
        page = r.json()
    except ValueError:
        raise OSError("answered something that is not JSON") from None
    if not isinstance(page, dict) or not isinstance(page.get("resourceType"), str):
        raise OSError(f"answered JSON that is not a FHIR resource ({type(page).__name__})")
    if page["resourceType"] == "Bundle" and not isinstance(page.get("entry") or [], list):
        raise OSError("answered a Bundle whose entry is not a list")
    if not isinstance(page.get("link") or [], list):
        raise OSError("answered a Bundle whose link is not a list")
    return page


def fetch(url: str, base: str, token: str | None) -> Fetched:
    """GET one FHIR query under ``base``, following the searchset's ``next`` links.

    Raises
    ------
    OSError
        When the server cannot be reached, does not answer 200 or answers something that is
        not a FHIR resource (the caller answers 412: the data are unobtainable).
    """
    headers = {"Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    doc: dict[str, Any] | None = None
    entries: list[Any] = []
    truncated = None
    with httpx.Client(timeout=5.0, follow_redirects=False) as client:
        for pages in range(MAX_PAGES + 1):
            if pages == MAX_PAGES:
                truncated = f"more than {MAX_PAGES} pages; the first {MAX_PAGES} were read"
                break
            try:
                r = client.get(url, headers=headers)
            except httpx.HTTPError as exc:  # refused, timed out, bad URL: unobtainable
                raise OSError(f"{type(exc).__name__}: {exc}") from None
            if r.status_code != 200:
                raise OSError(f"HTTP {r.status_code}")
            page = _page(r)
            doc = doc or page
            if page["resourceType"] == "Bundle":
                entries += page.get("entry") or []
            links = [ln for ln in page.get("link") or [] if isinstance(ln, dict)]
            nxt = next((ln.get("url") for ln in links if ln.get("relation") == "next"), None)
            if not isinstance(nxt, str) or not nxt:
                break
            if not under(nxt, base):  # the EHR's token goes to the named server only
                truncated = f"a next link outside {base} was not followed"
                break
            url = nxt
    assert doc is not None
    if doc["resourceType"] == "Bundle":
        doc = {**doc, "entry": entries}
    return Fetched(doc, truncated)
