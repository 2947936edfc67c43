"""CDS clients' signed JWTs (CDS Hooks 2.0 "Trusting CDS Clients"): the specification's own
example token and key, test keys for RS384 / ES384, a JWKS served over real HTTP, and the
middleware that guards the CDS routes with them."""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from serving.api.auth import BearerAuth
from serving.api.cds_jwt import CdsJwtVerifier, JwtError, ReplayStore, load_issuers
from serving.api.routes import Route, registry

SPEC = Path(__file__).parents[2].parent / "shared/reference/standards"
SPEC_TEXT = (SPEC / "cds-hooks-2.0.1-specification.md").read_text(encoding="utf-8")
#: the specification's example: its token, its public JWK set, its audience and issuer
SPEC_TOKEN = re.search(r"Authorization: Bearer (\S+)", SPEC_TEXT).group(1)
SPEC_JWKS = json.loads(re.search(r'\{\s*"keys": \[.*?\]\s*\}', SPEC_TEXT, re.S).group(0))
SPEC_ISS, SPEC_AUD = (
    "https://fhir-ehr.example.com/",
    "https://cds.example.org/cds-services/some-service",
)
SPEC_IAT, SPEC_EXP = 1311280970, 1422568860

EHR = "https://ehr.hospital.example/"
PUBLIC = "https://pe-risk.hospital.example"
NOW = 1_795_000_000.0  # the tests' chosen "now" (2026-11-18)


def verifier(tmp_path: Path, issuers: dict, now: float) -> CdsJwtVerifier:
    return CdsJwtVerifier(issuers, ReplayStore(tmp_path / "jti.sqlite"), clock=lambda: now)


def test_the_specifications_example_token_verifies_once_at_its_time(tmp_path):
    v = verifier(tmp_path, {SPEC_ISS: {"jwks": SPEC_JWKS}}, SPEC_IAT + 10)
    claims = v.verify(SPEC_TOKEN, SPEC_AUD)
    assert claims["jti"] == "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e"
    with pytest.raises(JwtError, match="already used"):
        v.verify(SPEC_TOKEN, SPEC_AUD)  # a replay


@pytest.mark.parametrize(
    ("now", "audience", "issuers", "said"),
    [
        (SPEC_EXP + 3600, SPEC_AUD, {SPEC_ISS: {"jwks": SPEC_JWKS}}, "expired"),
        (SPEC_IAT - 3600, SPEC_AUD, {SPEC_ISS: {"jwks": SPEC_JWKS}}, "future"),
        (
            SPEC_IAT,
            "https://cds.example.org/cds-services/other",
            {SPEC_ISS: {"jwks": SPEC_JWKS}},
            "aud",
        ),
        (SPEC_IAT, SPEC_AUD, {"https://other-ehr/": {"jwks": SPEC_JWKS}}, "not a registered"),
    ],
)
def test_the_specifications_token_is_refused_when_it_should_be(
    tmp_path, now, audience, issuers, said
):
    with pytest.raises(JwtError, match=said):
        verifier(tmp_path, issuers, now).verify(SPEC_TOKEN, audience)


def keys() -> dict[str, Any]:
    return {
        "RS384": rsa.generate_private_key(65537, 2048),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
    }


def public_jwks(private: dict[str, Any]) -> dict[str, Any]:
    out = []
    for alg, key in private.items():
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        out.append({**jwk, "kid": alg.lower(), "alg": alg, "use": "sig"})
    return {"keys": out}


def token(key: Any, alg: str, aud: str, *, iss: str = EHR, now: float = NOW, **over: Any) -> str:
    claims = {
        "iss": iss,
        "aud": aud,
        "iat": int(now),
        "exp": int(now) + 300,
        "jti": str(uuid.uuid4()),
    }
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": alg.lower()})


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_test_keys_sign_calls_that_verify(tmp_path, alg):
    private = keys()
    v = verifier(tmp_path, {EHR: {"jwks": public_jwks(private)}}, NOW)
    aud = f"{PUBLIC}/cds-services/pe-risk"
    assert v.verify(token(private[alg], alg, aud), aud)["iss"] == EHR
    with pytest.raises(JwtError, match="jti"):
        v.verify(token(private[alg], alg, aud, jti=None), aud)  # jti is required


def test_none_and_hmac_tokens_are_refused(tmp_path):
    private = keys()
    v = verifier(tmp_path, {EHR: {"jwks": public_jwks(private)}}, NOW)
    aud = f"{PUBLIC}/cds-services/pe-risk"
    claims = {"iss": EHR, "aud": aud, "iat": int(NOW), "exp": int(NOW) + 300, "jti": "a"}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(JwtError, match="'none'"):
        v.verify(unsigned, aud)
    hmac = jwt.encode(claims, "a-shared-secret-of-32-bytes-long!", algorithm="HS384")
    with pytest.raises(JwtError, match="HS384"):
        v.verify(hmac, aud)
    other = ec.generate_private_key(ec.SECP384R1())  # signed by a key not registered
    with pytest.raises(JwtError, match="InvalidSignatureError"):
        v.verify(token(other, "ES384", aud), aud)


@pytest.fixture
def jwks_server():
    """A JWKS over real HTTP, as an EHR publishes its keys (the sandbox's jwks_url)."""
    private = keys()
    body = json.dumps(public_jwks(private)).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json", private
    httpd.shutdown()


def test_keys_are_fetched_from_the_issuers_jwks_url(tmp_path, jwks_server):
    url, private = jwks_server
    v = verifier(tmp_path, {EHR: {"jwks_url": url}}, NOW)
    aud = f"{PUBLIC}/cds-services/pe-risk"
    assert v.verify(token(private["ES384"], "ES384", aud), aud)["aud"] == aud


@pytest.mark.parametrize(
    "content",
    [
        '{"https://ehr/": {"jwks": {"keys": []}}}',
        '{"https://ehr/": {"url": "x"}}',
        "[]",
        "not json",
    ],
)
def test_a_bad_issuers_file_stops_the_service_naming_it(tmp_path, content):
    path = tmp_path / "issuers.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=str(path)):
        load_issuers(path)


def test_with_cds_clients_registered_the_cds_routes_need_their_jwt(tmp_path):
    """Through the middleware the service runs: the CDS routes take only a valid JWT whose
    aud is PE_RISK_PUBLIC_URL + the path; the API token still opens the other routes."""
    ok = lambda request: JSONResponse({"ok": True})  # noqa: E731
    inner = Starlette(
        routes=[
            StarletteRoute("/predict", ok, methods=["POST"]),
            StarletteRoute("/cds-services/pe-risk", ok, methods=["POST"]),
            StarletteRoute("/cds-services", ok, methods=["GET"]),
        ]
    )
    routes = registry(
        [("/predict", ())], [Route("/cds-services/", auth="cds", mount=True, root_answers=True)]
    )
    private = keys()
    v = verifier(tmp_path, {EHR: {"jwks": public_jwks(private)}}, NOW)
    app = BearerAuth(inner, routes, tokens=["api-token"], cds=v, public_url=PUBLIC)
    client = TestClient(app)
    api = {"Authorization": "Bearer api-token"}
    assert client.post("/predict", headers=api).status_code == 200
    assert client.post("/predict").status_code == 401
    assert client.post("/cds-services/pe-risk", headers=api).status_code == 401  # not an API route
    r = client.post("/cds-services/pe-risk")
    assert r.status_code == 401 and "signed JWT is required" in r.json()["error"]
    good = token(private["RS384"], "RS384", f"{PUBLIC}/cds-services/pe-risk")
    assert (
        client.post(
            "/cds-services/pe-risk", headers={"Authorization": f"Bearer {good}"}
        ).status_code
        == 200
    )
    again = client.post("/cds-services/pe-risk", headers={"Authorization": f"Bearer {good}"})
    assert again.status_code == 401 and "already used" in again.json()["error"]
    wrong_aud = token(private["ES384"], "ES384", f"{PUBLIC}/cds-services/other")
    r = client.post("/cds-services/pe-risk", headers={"Authorization": f"Bearer {wrong_aud}"})
    assert r.status_code == 401 and "aud" in r.json()["error"]
    discovery = token(private["ES384"], "ES384", f"{PUBLIC}/cds-services")
    assert (
        client.get("/cds-services", headers={"Authorization": f"Bearer {discovery}"}).status_code
        == 200
    )
