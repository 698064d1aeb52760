"""What client-JWT verification trusts: the allowed algorithms, the trusted clients, the policy.

Part of client-JWT verification (:mod:`cds_hooks.auth`, which re-exports the two classes; the
two helpers are for the verifier alone). Everything is validated at construction, so a bad
configuration fails at startup. No Flask imports here.
"""

from __future__ import annotations

import typing as t
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "AuthPolicy",
    "TrustedClient",
    "SUPPORTED_ALGORITHMS",
    "comparable_url",
    "is_forbidden_alg",
]

#: Signature algorithms client-JWT verification supports: alg -> (kty, EC curve or None).
SUPPORTED_ALGORITHMS: t.Mapping[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_forbidden_alg(alg: str) -> bool:
    upper = alg.strip().upper()
    return upper == "NONE" or upper.startswith("HS")


@dataclass(frozen=True)
class TrustedClient:
    """One CDS client (EHR) allowed to call us: ``[[auth.trusted_clients]]`` in the config.

    Exactly one of ``jwks_url`` (also the only ``jku`` we honour) or
    ``jwks_file`` (a pre-registered JWK Set) must be set. ``jwks_url`` must be
    ``https``, or ``http`` to a loopback host (tests, development).
    """

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.iss, str) or not self.iss or self.iss != self.iss.strip():
            raise ValueError(f"trusted client iss must be a non-empty string without surrounding spaces: {self.iss!r}")
        where = f"trusted client {self.iss!r}"
        if self.jwks_url is not None and self.jwks_file is not None:
            raise ValueError(f"{where}: set exactly one of jwks_url or jwks_file, not both")
        if self.jwks_url is None and self.jwks_file is None:
            raise ValueError(f"{where}: one of jwks_url or jwks_file is required")
        if self.jwks_url is not None:
            _check_jwks_url(self.jwks_url, where)
        if self.jwks_file is not None and not isinstance(self.jwks_file, Path):
            if not isinstance(self.jwks_file, str) or not self.jwks_file:
                raise ValueError(f"{where}: jwks_file must be a path")
            object.__setattr__(self, "jwks_file", Path(self.jwks_file))
        if self.tenant is not None and (not isinstance(self.tenant, str) or not self.tenant):
            raise ValueError(f"{where}: tenant must be a non-empty string when set")


def _check_jwks_url(url: object, where: str) -> None:
    if not isinstance(url, str):
        raise ValueError(f"{where}: jwks_url must be a string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{where}: jwks_url is not a valid URL") from exc
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{where}: jwks_url must be an absolute https URL")
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise ValueError(f"{where}: jwks_url must use https (http is allowed only for loopback hosts)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{where}: jwks_url must not contain credentials")
    if parts.fragment:
        raise ValueError(f"{where}: jwks_url must not contain a fragment")


def comparable_url(url: str) -> tuple[object, ...] | None:
    """Trivially normalise a URL for equality: case of scheme and host, default port, empty path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not scheme or not host:
        return None
    if port == {"https": 443, "http": 80}.get(scheme):
        port = None
    return (scheme, parts.username, parts.password, host, port, parts.path or "/", parts.query, parts.fragment)


@dataclass(frozen=True)
class AuthPolicy:
    """Tunable rules for client-JWT verification. Validated at construction.

    ``none`` and HMAC algorithms (``HS*``) are refused even if listed: CDS Hooks
    forbids them, and an HMAC "key" here could only be a public key.
    ``allow_jku_with_jwks_file``: a client with a pinned ``jwks_file`` has no
    URL to compare a ``jku`` with, so by default any ``jku`` is rejected; set
    True to ignore (never fetch) the ``jku`` of such clients -- needed for the
    CDS Hooks sandbox, which always sends its public ``jku``.
    """

    algorithms: tuple[str, ...] = ("ES384", "RS384")
    leeway_seconds: int = 60
    iat_future_leeway_seconds: int = 5
    max_token_age_seconds: int | None = None
    jwks_ttl_seconds: int = 3600
    jwks_min_refresh_seconds: int = 60
    jwks_timeout_seconds: float = 5
    jwks_max_bytes: int = 1_000_000
    allow_jku_with_jwks_file: bool = False

    def __post_init__(self) -> None:
        algorithms = self.algorithms
        if isinstance(algorithms, str) or not isinstance(algorithms, Sequence):
            raise ValueError("AuthPolicy.algorithms must be a sequence of algorithm names")
        object.__setattr__(self, "algorithms", tuple(algorithms))
        if not self.algorithms:
            raise ValueError("AuthPolicy.algorithms must not be empty")
        for alg in self.algorithms:
            if not isinstance(alg, str):
                raise ValueError(f"AuthPolicy.algorithms: not a string: {alg!r}")
            if is_forbidden_alg(alg):
                raise ValueError(f"AuthPolicy.algorithms: {alg!r} is never allowed (none and HMAC are forbidden)")
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"AuthPolicy.algorithms: unsupported algorithm {alg!r}")
        for name in ("leeway_seconds", "iat_future_leeway_seconds", "jwks_min_refresh_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"AuthPolicy.{name} must be >= 0")
        for name in ("jwks_ttl_seconds", "jwks_timeout_seconds", "jwks_max_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"AuthPolicy.{name} must be > 0")
        if self.max_token_age_seconds is not None and self.max_token_age_seconds <= 0:
            raise ValueError("AuthPolicy.max_token_age_seconds must be > 0 when set")
