"""Runtime settings: one object, built by a function, with no side effects at import.

All runtime state (MLflow database and artefacts, BentoML home, generated cohorts,
audit logs) lives under one folder, ``.pe-risk/`` in the checkout by default
(git-ignored). Environment variables point elsewhere:

=========================  ============================================================
``PE_RISK_STATE_DIR``      the state folder
``MLFLOW_TRACKING_URI``    a team MLflow server (default: SQLite in the state folder)
``BENTOML_HOME``           the BentoML model store (default: ``<state>/bentoml``)
``PE_RISK_MODEL_NAME``     registered model name (default ``pe-risk``)
``PE_RISK_API_TOKEN``      bearer token(s) the HTTP API requires, comma-separated
``PE_RISK_API_TOKEN_FILE`` a file holding the token(s), one per line
``PE_RISK_WORKERS``        HTTP worker processes (default: one per CPU core)
``PE_RISK_FHIR_MAP``       a CSV of extra FHIR mapping rows (``serving/interop/fhir_map.csv`` columns)
``PE_RISK_FHIR_SERVERS``   FHIR base URLs a CDS Hooks call may fetch missing prefetch
                           data from, comma-separated (default: none, so never fetch)
``PE_RISK_PUBLIC_URL``     the service's address as clinicians' browsers reach it (report
                           links in cards and RiskAssessments, the ``aud`` of CDS clients'
                           JWTs; default http://localhost:3000, and ``pe-risk serve`` sets
                           the address it serves on). Never taken from a request's Host.
``PE_RISK_CDS_ISSUERS``    JSON file of the CDS clients (EHRs) trusted to call the CDS Hooks
                           routes with a signed JWT: ``{"<iss>": {"jwks_url": ...}}`` or
                           ``{"<iss>": {"jwks": {"keys": [...]}}}`` (default: none, and
                           the API tokens guard those routes)
``PE_RISK_LINK_KEY``       Fernet key sealing report links (default: ``<state>/link.key``)
``PE_RISK_LINK_TTL``       how long a report link opens, in seconds (default 3600)
=========================  ============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _default_state_dir() -> Path:
    """``.pe-risk`` beside pyproject.toml in a checkout, else in the working directory."""
    if (_PACKAGE_ROOT / "pyproject.toml").is_file():
        return _PACKAGE_ROOT / ".pe-risk"
    return Path.cwd() / ".pe-risk"


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    bentoml_home: Path
    model_name: str = "pe-risk"
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    workers: int = 1
    fhir_map: Path | None = None
    fhir_servers: tuple[str, ...] = ()
    public_url: str = "http://localhost:3000"
    cds_issuers: Path | None = None
    link_key: str | None = field(default=None, repr=False)
    link_ttl_s: int = 3600
    #: a request body must arrive whole within this many seconds (then 408)
    body_timeout_s: float = 5.0

    @property
    def cohort_dir(self) -> Path:
        return self.state_dir / "cohorts"

    def cohort_file(self, n: int, seed: int) -> Path:
        """Where ``pe-risk cohort`` and ``pe-risk train --synthetic`` keep a generated cohort."""
        return self.cohort_dir / f"cohort-{n}-{seed}.parquet"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def ensure_dirs(self) -> None:
        """Create the state folders (called by commands that write, never at import)."""
        for d in (
            self.state_dir,
            self.mlflow_artifact_root,
            self.bentoml_home,
            self.cohort_dir,
            self.log_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)


def _tokens(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("PE_RISK_API_TOKEN", "")
    path = env.get("PE_RISK_API_TOKEN_FILE")
    if path:
        raw += "\n" + Path(path).read_text(encoding="utf-8")
    return tuple(t.strip() for t in raw.replace(",", "\n").splitlines() if t.strip())


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    state = Path(env.get("PE_RISK_STATE_DIR") or _default_state_dir()).resolve()
    return Settings(
        state_dir=state,
        mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state / 'mlflow.db'}",
        mlflow_artifact_root=state / "mlartifacts",
        bentoml_home=Path(env.get("BENTOML_HOME") or state / "bentoml").resolve(),
        model_name=env.get("PE_RISK_MODEL_NAME", "pe-risk"),
        api_tokens=_tokens(env),
        workers=int(env.get("PE_RISK_WORKERS") or os.cpu_count() or 1),
        fhir_map=Path(env["PE_RISK_FHIR_MAP"]).resolve() if env.get("PE_RISK_FHIR_MAP") else None,
        fhir_servers=tuple(
            u.strip().rstrip("/")
            for u in env.get("PE_RISK_FHIR_SERVERS", "").split(",")
            if u.strip()
        ),
        public_url=(env.get("PE_RISK_PUBLIC_URL") or "").rstrip("/") or "http://localhost:3000",
        cds_issuers=Path(env["PE_RISK_CDS_ISSUERS"]) if env.get("PE_RISK_CDS_ISSUERS") else None,
        link_key=env.get("PE_RISK_LINK_KEY") or None,
        link_ttl_s=int(env.get("PE_RISK_LINK_TTL", "3600")),
        body_timeout_s=float(env.get("PE_RISK_BODY_TIMEOUT_S", "5")),
    )
