"""The ``[smart]`` settings: EHRs that may launch the detail view, the signing secret, framing.

Parsed with the value checks of :mod:`backpain_cds.settings` (its parser is passed in, and the
functions take the settings they read, so this module does not import the settings module that
imports it). ``[smart]`` keys::

    [smart]
    secret = "..."                      # signs card appContext handles and encrypts stored tokens
    frame_ancestors = ["https://ehr.example.org"]   # CSP frame-ancestors of the detail view
    client_id = "backpain-cds"          # default for every [[smart.ehrs]] entry
    # client_secret = "..."             # default secret (confidential client, client_secret_basic)
    session_minutes = 60                # how long one launch's view stays usable
    timeout_seconds = 5                 # discovery, token and FHIR requests

    [[smart.ehrs]]
    iss = "https://ehr.example.org/fhir/r4"   # exact FHIR base the EHR sends as iss
    # client_id / client_secret: override the defaults for this EHR
"""

from __future__ import annotations

import secrets
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from backpain_cds.server_settings import is_loopback_host

#: the shortest secret accepted (characters; 32 random URL-safe characters carry 192 bits)
MIN_SECRET_LENGTH = 32
_SMART_KEYS = {
    "ehrs", "secret", "frame_ancestors", "client_id", "client_secret", "session_minutes",
    "timeout_seconds",
}
_EHR_KEYS = {"iss", "client_id", "client_secret"}
#: one secret per process when none is configured (development mode only)
_DEVELOPMENT_SECRET = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SmartEhrSettings:
    """An EHR that may launch the SMART detail view."""

    iss: str
    client_id: str
    client_secret: str | None = None


@dataclass(frozen=True)
class SmartSettings:
    """The SMART detail view (``[smart]``)."""

    ehrs: tuple[SmartEhrSettings, ...] = ()
    secret: str | None = None
    #: CSP frame-ancestors sources; empty: 'self' plus the origin of every configured iss
    frame_ancestors: tuple[str, ...] = ()
    session_minutes: int = 60
    timeout_seconds: float = 5.0


class _Parser(t.Protocol):
    """What is used of :class:`backpain_cds.settings.SettingsParser` (passed in: this module
    does not import the settings module that imports it)."""

    problems: list[str]

    def unknown_keys(self, data: t.Mapping[str, t.Any], allowed: set[str], prefix: str) -> None: ...

    def text(self, value: t.Any, key: str, *, required: bool = False) -> str | None: ...

    def url(self, value: t.Any, key: str, *, required: bool = False) -> str | None: ...

    def text_list(self, value: t.Any, key: str) -> tuple[str, ...]: ...

    def integer(self, value: t.Any, key: str, low: int, high: int) -> int: ...

    def number(self, value: t.Any, key: str, low: float, high: float) -> float: ...


class _ServiceSettings(t.Protocol):
    """What :func:`smart_app_config` reads of :class:`backpain_cds.settings.Settings`."""

    @property
    def smart(self) -> SmartSettings: ...

    @property
    def public_base_url(self) -> str: ...

    @property
    def fhir(self) -> t.Any: ...

    @property
    def limits(self) -> t.Any: ...


def parse_smart(parser: _Parser, data: t.Mapping[str, t.Any]) -> SmartSettings:
    """The ``[smart]`` table; problems go to ``parser.problems``."""
    parser.unknown_keys(data, _SMART_KEYS, "smart.")
    default_id = parser.text(data.get("client_id"), "smart.client_id")
    default_secret = parser.text(data.get("client_secret"), "smart.client_secret")
    ehrs = []
    raw_ehrs = data.get("ehrs", [])
    if not isinstance(raw_ehrs, list):
        parser.problems.append("smart.ehrs must be an array of tables")
        raw_ehrs = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_ehrs):
        key = f"smart.ehrs[{i}]"
        if not isinstance(raw, dict):
            parser.problems.append(f"{key} must be a table")
            continue
        parser.unknown_keys(raw, _EHR_KEYS, f"{key}.")
        iss = parser.url(raw.get("iss"), f"{key}.iss", required=True) or ""
        client_id = parser.text(raw.get("client_id"), f"{key}.client_id") or default_id
        if client_id is None:
            parser.problems.append(f"{key}.client_id is required (or set smart.client_id)")
        if iss and iss in seen:
            parser.problems.append(f"{key}.iss {iss!r} is configured twice")
        seen.add(iss)
        secret = parser.text(raw.get("client_secret"), f"{key}.client_secret") or default_secret
        ehrs.append(SmartEhrSettings(iss=iss, client_id=client_id or "", client_secret=secret))
    secret = parser.text(data.get("secret"), "smart.secret")
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        parser.problems.append(
            f"smart.secret must be at least {MIN_SECRET_LENGTH} characters (use a random value)"
        )
    ancestors = parser.text_list(data.get("frame_ancestors", []), "smart.frame_ancestors")
    for i, source in enumerate(ancestors):
        if not _valid_frame_ancestor(source):
            parser.problems.append(
                f"smart.frame_ancestors[{i}] must be 'self' or an http(s) origin, got {source!r}"
            )
    return SmartSettings(
        ehrs=tuple(ehrs),
        secret=secret,
        frame_ancestors=ancestors,
        session_minutes=parser.integer(data.get("session_minutes", 60), "smart.session_minutes", 1, 24 * 60),
        timeout_seconds=parser.number(data.get("timeout_seconds", 5.0), "smart.timeout_seconds", 0.1, 60),
    )


def check_smart(smart: SmartSettings, public_base_url: str, problems: list[str], *, development_mode: bool) -> None:
    """Cross-section rules: a secret outside development mode, https outside loopback."""
    if not smart.ehrs:
        return
    if smart.secret is None and not development_mode:
        problems.append(
            "smart.secret is required when [[smart.ehrs]] are configured (it signs the cards' "
            "appContext handles); only development mode (no trusted clients) may run without one"
        )
    parts = urlsplit(public_base_url)
    if parts.scheme != "https" and not is_loopback_host(parts.hostname or ""):
        problems.append(
            "public_base_url must be https when [[smart.ehrs]] are configured (the detail view's "
            "cookies are Secure); plain http is allowed on loopback only"
        )


def smart_secret(smart: SmartSettings) -> str:
    """The configured secret, or (development mode) one random secret per process."""
    return smart.secret or _DEVELOPMENT_SECRET


def _valid_frame_ancestor(source: str) -> bool:
    if source == "'self'":
        return True
    if any(c in source for c in " ;,'\"") or not source:
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path in ("", "/")


def smart_app_config(settings: _ServiceSettings) -> t.Any:
    """The :class:`smart_launch.config.SmartConfig` for these settings."""
    from fhir_mapping.client import FhirClientLimits
    from smart_launch.config import EhrRegistration, SmartConfig

    fhir = settings.fhir
    return SmartConfig(
        public_base_url=settings.public_base_url,
        ehrs=tuple(EhrRegistration(e.iss, e.client_id, e.client_secret) for e in settings.smart.ehrs),
        secret=smart_secret(settings.smart),
        frame_ancestors=settings.smart.frame_ancestors,
        session_seconds=settings.smart.session_minutes * 60,
        timeout_seconds=settings.smart.timeout_seconds,
        fhir_limits=FhirClientLimits(
            timeout_seconds=settings.smart.timeout_seconds,
            max_pages=fhir.max_pages,
            max_response_bytes=fhir.max_response_bytes,
            max_resources=settings.limits.max_prefetch_resources,
        ),
        max_workers=fhir.max_workers,
        page_size=fhir.page_size,
    )
