"""What the SMART app is configured with (built by the composition root from ``[smart]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fhir_mapping.client import FhirClientLimits

#: how long an authorization request (its ``state``) may wait for the callback
LAUNCH_SECONDS = 10 * 60


@dataclass(frozen=True)
class EhrRegistration:
    """Our client registration at one EHR, keyed by the FHIR base it sends as ``iss``."""

    iss: str
    client_id: str
    client_secret: str | None = None

    @property
    def confidential(self) -> bool:
        return self.client_secret is not None


@dataclass(frozen=True)
class SmartConfig:
    """Everything the launch, callback and view need (no Flask, no environment)."""

    public_base_url: str
    ehrs: tuple[EhrRegistration, ...]
    secret: str
    frame_ancestors: tuple[str, ...] = ()
    session_seconds: int = 3600
    timeout_seconds: float = 5.0
    fhir_limits: FhirClientLimits = field(default_factory=FhirClientLimits)
    max_workers: int = 16
    page_size: int = 500

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_base_url.rstrip('/')}/smart/callback"

    def ehr_for(self, iss: str) -> EhrRegistration | None:
        """The registration for ``iss``: exact match, ignoring only a trailing ``/``."""
        wanted = iss.rstrip("/")
        for ehr in self.ehrs:
            if ehr.iss.rstrip("/") == wanted:
                return ehr
        return None

    def csp_frame_ancestors(self) -> str:
        """The CSP ``frame-ancestors`` sources: configured, else 'self' + every iss origin."""
        if self.frame_ancestors:
            return " ".join(self.frame_ancestors)
        origins = ["'self'"]
        for ehr in self.ehrs:
            parts = urlsplit(ehr.iss)
            origin = f"{parts.scheme}://{parts.netloc}"
            if origin not in origins:
                origins.append(origin)
        return " ".join(origins)
