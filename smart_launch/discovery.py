"""``GET {iss}/.well-known/smart-configuration`` with the checks SMART App Launch 2.2 asks for.

Required for an EHR launch with PKCE (SMART.md §1.2): ``authorization_endpoint``,
``token_endpoint`` (absolute; https unless on loopback), ``grant_types_supported`` with
``authorization_code``, ``code_challenge_methods_supported`` with ``S256`` (no S256: refused,
never downgraded to ``plain`` or to no PKCE), ``capabilities`` with ``launch-ehr``.
With ``sso-openid-connect`` listed, ``issuer`` and ``jwks_uri`` are required too (the id_token
is checked against them: :mod:`smart_launch.identity`); ``id_token_signing_alg_values_supported``,
when given, narrows the algorithms accepted for it. Redirects are not followed and the body is bounded. Every failure is a :class:`DiscoveryError`.
"""

from __future__ import annotations

import ipaddress
import typing as t
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import orjson
import requests

from smart_launch.identity import OidcSettings, accepted_algorithms

_MAX_BYTES = 256 * 1024
WELL_KNOWN = "/.well-known/smart-configuration"


class DiscoveryError(Exception):
    """The EHR's SMART configuration is unreachable or unusable (shown as a 502 page)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SmartConfiguration:
    """The fields of the discovery document the launch uses."""

    authorization_endpoint: str
    token_endpoint: str
    capabilities: tuple[str, ...]
    issuer: str | None = None
    token_endpoint_auth_methods: tuple[str, ...] = ()
    jwks_uri: str | None = None
    id_token_algorithms: tuple[str, ...] = ()  #: as advertised (empty: not advertised)

    @property
    def oidc(self) -> OidcSettings:
        """What the id_token is checked against."""
        return OidcSettings(self.issuer, self.jwks_uri, accepted_algorithms(self.id_token_algorithms))


def fetch_smart_configuration(
    iss: str, *, session: requests.Session, timeout_seconds: float
) -> SmartConfiguration:
    """Fetch and check the discovery document of the FHIR base ``iss``."""
    url = iss.rstrip("/") + WELL_KNOWN
    try:
        response = session.get(
            url,
            headers={"Accept": "application/json"},
            timeout=(timeout_seconds, timeout_seconds),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout:
        raise DiscoveryError("the EHR's SMART configuration timed out") from None
    except requests.RequestException as exc:
        raise DiscoveryError(f"the EHR's SMART configuration is unreachable ({type(exc).__name__})") from None
    with response:
        if response.status_code != 200:
            raise DiscoveryError(f"the EHR's SMART configuration answered HTTP {response.status_code}")
        body = bytearray()
        for chunk in response.iter_content(chunk_size=16 * 1024):
            body += chunk
            if len(body) > _MAX_BYTES:
                raise DiscoveryError("the EHR's SMART configuration is too large")
    try:
        document = orjson.loads(bytes(body))
    except orjson.JSONDecodeError:
        raise DiscoveryError("the EHR's SMART configuration is not JSON") from None
    return parse_smart_configuration(document, iss)


def parse_smart_configuration(document: t.Any, iss: str) -> SmartConfiguration:
    """Check the required fields; relative endpoint URLs resolve against the FHIR base."""
    if not isinstance(document, dict):
        raise DiscoveryError("the EHR's SMART configuration is not a JSON object")
    methods = _str_list(document, "code_challenge_methods_supported", required=False)
    if "S256" not in methods:
        raise DiscoveryError(
            "the EHR does not offer PKCE with S256 (code_challenge_methods_supported); "
            "this app does not launch without it"
        )
    if "authorization_code" not in _str_list(document, "grant_types_supported"):
        raise DiscoveryError("the EHR does not offer the authorization_code grant")
    capabilities = _str_list(document, "capabilities")
    if "launch-ehr" not in capabilities:
        raise DiscoveryError("the EHR does not advertise the launch-ehr capability")
    base = iss.rstrip("/") + "/"
    endpoints = {}
    for key in ("authorization_endpoint", "token_endpoint"):
        value = document.get(key)
        if not isinstance(value, str) or not value:
            raise DiscoveryError(f"the EHR's SMART configuration has no {key}")
        endpoints[key] = _checked_endpoint(urljoin(base, value), key)
    issuer = document.get("issuer")
    issuer = issuer if isinstance(issuer, str) and issuer else None
    jwks_uri = document.get("jwks_uri")
    if isinstance(jwks_uri, str) and jwks_uri:
        jwks_uri = _checked_endpoint(urljoin(base, jwks_uri), "jwks_uri")
    else:
        jwks_uri = None
    if "sso-openid-connect" in capabilities and (issuer is None or jwks_uri is None):
        raise DiscoveryError(
            "the EHR lists sso-openid-connect but not the issuer and jwks_uri needed to check "
            "its identity tokens"
        )
    auth_methods = _str_list(document, "token_endpoint_auth_methods_supported", required=False)
    return SmartConfiguration(
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        capabilities=capabilities,
        issuer=issuer,
        token_endpoint_auth_methods=auth_methods,
        jwks_uri=jwks_uri,
        id_token_algorithms=_str_list(document, "id_token_signing_alg_values_supported", required=False),
    )


def _str_list(document: dict[str, t.Any], key: str, *, required: bool = True) -> tuple[str, ...]:
    value = document.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        if required:
            raise DiscoveryError(f"the EHR's SMART configuration has no valid {key}")
        return ()
    return tuple(value)


def _checked_endpoint(url: str, key: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return url
    raise DiscoveryError(f"the EHR's {key} must be an https URL")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
