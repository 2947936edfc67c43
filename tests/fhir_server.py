"""A small FHIR read/search server over real HTTP for the CDS Hooks fetch tests.

No FHIR server runs on this machine (HAPI needs a JVM), so this one answers the queries
pe-risk's prefetch templates make: ``GET /Patient/{id}`` and ``GET /{Type}?patient={id}``
(other search parameters ignored), as searchset Bundles of ``PAGE`` entries with ``next``
links, and only with the bearer token it was given, the way a SMART-protected server does.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGE = 3


class FhirServer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.resources: list[dict[str, Any]] = []
        self.requests: list[str] = []
        #: fixed answers by resource type, for servers that misbehave (a list, a string, a
        #: Bundle whose next link leads elsewhere or back to itself)
        self.answers: dict[str, Any] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self._send(401, {"resourceType": "OperationOutcome", "issue": []})
                    return
                status, body = server.answer(self.path)
                self._send(status, body)

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[int, Any]:
        parts = urlsplit(path)
        rtype = parts.path.removeprefix("/fhir/")
        if rtype in self.answers:
            return 200, self.answers[rtype]
        query = parse_qs(parts.query)
        if "/" in rtype:  # a read: Type/id
            for r in self.resources:
                if f"{r['resourceType']}/{r.get('id')}" == rtype:
                    return 200, r
            return 404, {"resourceType": "OperationOutcome", "issue": []}
        pid = (query.get("patient") or [""])[0]
        hits = [
            r
            for r in self.resources
            if r["resourceType"] == rtype
            and r.get("subject", {}).get("reference") == f"Patient/{pid}"
        ]
        page = int((query.get("_page") or ["1"])[0])
        chunk = hits[(page - 1) * PAGE : page * PAGE]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(hits),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in chunk],
            "link": [{"relation": "self", "url": self.url + path.removeprefix("/fhir")}],
        }
        if page * PAGE < len(hits):
            nxt = f"{self.url}/{rtype}?patient={pid}&_page={page + 1}"
            bundle["link"].append({"relation": "next", "url": nxt})
        return 200, bundle

    def close(self) -> None:
        self.httpd.shutdown()
