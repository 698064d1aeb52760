"""Verify the signed JWT a CDS client (EHR) sends (CDS Hooks 2.0.1, "Trusting CDS Clients").

Every call carries ``Authorization: Bearer <JWT>``. :class:`ClientAuthenticator`
checks it in this order and raises :class:`AuthenticationFailed` with a short
machine ``reason`` at the first problem:

1. header shape: ``Bearer`` + one compact JWS (``missing-token``, ``malformed``);
2. unverified JOSE header: ``alg`` on the allow-list, never ``none`` or HMAC
   (``alg-not-allowed``); ``typ`` is ``JWT`` (``typ``); ``kid`` present
   (``missing-kid``); no ``crit``/``b64`` (``malformed``);
3. unverified ``iss`` -- read only to choose the client and its keys -- is a
   configured trusted client (``unknown-iss``);
4. ``jku``, if sent, equals that client's configured ``jwks_url``; it is never
   fetched itself (``jku-not-allowed``);
5. ``kid`` selects a key of the right type (``unknown-kid`` after at most one
   rate-limited refresh, ``key-mismatch``, ``jwks-unavailable``);
6. signature, verified by joserfc (``bad-signature``);
7. claims, now trusted: ``iss aud exp iat jti`` present (``missing-claim``),
   ``aud`` (``aud-mismatch``), ``exp`` (``expired``), ``nbf``
   (``not-yet-valid``), ``iat`` (``iat-in-future``, ``too-old``), ``tenant``;
8. ``jti`` not seen before (``replay``).

Each failure is logged once (logger ``backpain_cds.auth``, WARNING) with reason,
iss, kid and jti. The token and the Authorization header are never logged, put
in an exception message, or kept in an attribute. No Flask imports here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
import typing as t
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import requests
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError

from cds_hooks.jwks import MIN_RSA_BITS, FileKeySource, JwksError, KeySource, PublicKey, UrlKeySource

__all__ = [
    "AuthenticationFailed",
    "AuthPolicy",
    "ClientAuthenticator",
    "InMemoryJtiStore",
    "JtiStore",
    "TrustedClient",
    "VerifiedClient",
    "FAILURE_REASONS",
    "SUPPORTED_ALGORITHMS",
]

logger = logging.getLogger("backpain_cds.auth")

#: Signature algorithms this module can verify: alg -> (kty, EC curve or None).
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
#: Every ``AuthenticationFailed.reason`` (a closed set: safe as a metrics label).
FAILURE_REASONS = frozenset(
    {
        "missing-token", "malformed", "alg-not-allowed", "typ", "missing-kid", "unknown-iss",
        "jku-not-allowed", "jwks-unavailable", "unknown-kid", "key-mismatch", "bad-signature",
        "missing-claim", "aud-mismatch", "expired", "not-yet-valid", "iat-in-future", "too-old",
        "tenant", "replay",
    }
)  # fmt: skip
_MAX_TOKEN_CHARS = 16_384
_MAX_ID_CHARS = 512  # iss, kid, jti, tenant
_LOG_VALUE_CHARS = 128
_MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _is_forbidden_alg(alg: str) -> bool:
    upper = alg.strip().upper()
    return upper == "NONE" or upper.startswith("HS")


class AuthenticationFailed(Exception):
    """The client JWT was missing or did not verify.

    ``reason`` is short machine text (``"expired"``, ``"replay"``, ...);
    ``iss``, ``kid`` and ``jti`` are set when known -- before the signature is
    checked they are the *claimed* values, cut to printable text of at most
    128 characters. ``str()`` is the reason only; the token is never kept.
    """

    def __init__(
        self,
        reason: str,
        *,
        iss: object = None,
        kid: object = None,
        jti: object = None,
    ) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown authentication failure reason {reason!r}")
        super().__init__(reason)
        self.reason = reason
        self.iss = _loggable(iss)
        self.kid = _loggable(kid)
        self.jti = _loggable(jti)

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"AuthenticationFailed(reason={self.reason!r}, iss={self.iss!r}, kid={self.kid!r}, jti={self.jti!r})"


def _loggable(value: object) -> str | None:
    """Make an untrusted identifier safe for logs: printable, short, or None."""
    if not isinstance(value, str):
        return None
    cut = value[:_LOG_VALUE_CHARS]
    text = "".join(ch if ch.isprintable() else "?" for ch in cut)
    return text + "..." if len(value) > _LOG_VALUE_CHARS else text


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


def _comparable_url(url: str) -> tuple[object, ...] | None:
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


class JtiStore(t.Protocol):
    """Remembers seen ``jti`` values (per ``iss``) until they expire: replay protection."""

    def remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti``; return True the first time, False if already seen and not yet expired."""
        ...


class InMemoryJtiStore:
    """A :class:`JtiStore` for tests and single-process development (not shared between instances)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}

    def remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` for ``iss`` until ``expires_at``; False if it is already recorded."""
        now = self._clock()
        with self._lock:
            if len(self._seen) >= 1024:
                self._seen = {key: until for key, until in self._seen.items() if until > now}
            previous = self._seen.get((iss, jti))
            if previous is not None and previous > now:
                return False
            self._seen[(iss, jti)] = expires_at.timestamp()
            return True

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(frozen=True)
class VerifiedClient:
    """Who called us, after every check passed."""

    iss: str
    jti: str
    tenant: str | None
    kid: str
    expires_at: datetime


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
            if _is_forbidden_alg(alg):
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


@dataclass
class _Unverified:
    """What we read from the token before its signature is checked."""

    header: dict[str, t.Any]
    claims: dict[str, t.Any]
    ids: dict[str, object] = field(default_factory=dict)


class ClientAuthenticator:
    """Verify ``Authorization: Bearer <JWT>`` headers from trusted CDS clients.

    File-based key sets are loaded here (a bad file is a ``ValueError``);
    URL-based ones are fetched on first use. Thread-safe.

    :param clients: the trusted clients (at least one; ``iss`` unique)
    :param jti_store: replay protection, shared by all instances in production
    :param policy: verification rules
    :param session: HTTP session for JWKS fetches (a new one if omitted)
    :param clock: seconds since the epoch; injected by tests
    """

    def __init__(
        self,
        clients: Sequence[TrustedClient],
        *,
        jti_store: JtiStore,
        policy: AuthPolicy = AuthPolicy(),
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not clients:
            raise ValueError("ClientAuthenticator needs at least one trusted client")
        self._policy = policy
        self._jti_store = jti_store
        self._clock = clock
        self._session = session if session is not None else requests.Session()
        self._clients: dict[str, TrustedClient] = {}
        self._sources: dict[str, KeySource] = {}
        url_sources: dict[tuple[object, ...] | None, UrlKeySource] = {}
        for client in clients:
            if not isinstance(client, TrustedClient):
                raise ValueError(f"not a TrustedClient: {client!r}")
            if client.iss in self._clients:
                raise ValueError(f"trusted client {client.iss!r} is configured twice")
            self._clients[client.iss] = client
            if client.jwks_url is not None:
                comparable = _comparable_url(client.jwks_url)
                if comparable not in url_sources:
                    url_sources[comparable] = UrlKeySource(
                        client.jwks_url,
                        session=self._session,
                        ttl_seconds=policy.jwks_ttl_seconds,
                        min_refresh_seconds=policy.jwks_min_refresh_seconds,
                        timeout_seconds=policy.jwks_timeout_seconds,
                        max_bytes=policy.jwks_max_bytes,
                        clock=clock,
                    )
                self._sources[client.iss] = url_sources[comparable]
            else:
                assert client.jwks_file is not None  # guaranteed by TrustedClient
                try:
                    self._sources[client.iss] = FileKeySource(client.jwks_file)
                except JwksError as exc:
                    raise ValueError(f"trusted client {client.iss!r}: {exc}") from exc
        self._owns_session = session is None
        self._registries = {alg: _single_alg_registry(alg) for alg in policy.algorithms}

    def close(self) -> None:
        """Close the HTTP session if this authenticator created it."""
        if self._owns_session:
            self._session.close()

    @property
    def policy(self) -> AuthPolicy:
        """The rules this authenticator applies."""
        return self._policy

    def key_source(self, iss: str) -> KeySource:
        """Return the key source of a trusted client (for health checks and tests)."""
        return self._sources[iss]

    def verify(self, authorization_header: str | None, audience: str) -> VerifiedClient:
        """Verify the Authorization header of a call to the endpoint whose public URL is ``audience``.

        :param authorization_header: the raw header value, or None if absent
        :param audience: the exact URL the client must have put in ``aud``
            (built from configuration, never from the request)
        :raises AuthenticationFailed: on any problem; logged once at WARNING
        """
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be a non-empty string")
        try:
            return self._verify(authorization_header, audience)
        except AuthenticationFailed as failure:
            logger.warning(
                "client JWT rejected: reason=%s iss=%s kid=%s jti=%s",
                failure.reason,
                failure.iss,
                failure.kid,
                failure.jti,
            )
            raise

    # -- steps -----------------------------------------------------------------

    def _verify(self, authorization_header: str | None, audience: str) -> VerifiedClient:
        token = _bearer_token(authorization_header)
        unverified = _read_unverified(token)
        header, ids = unverified.header, unverified.ids

        alg = header.get("alg")
        if not isinstance(alg, str) or _is_forbidden_alg(alg) or alg not in self._policy.algorithms:
            raise AuthenticationFailed("alg-not-allowed", **ids)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthenticationFailed("typ", **ids)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("missing-kid", **ids)
        if len(kid) > _MAX_ID_CHARS or "crit" in header or "b64" in header:
            raise AuthenticationFailed("malformed", **ids)

        iss = unverified.claims.get("iss")
        if iss is None:
            raise AuthenticationFailed("missing-claim", **ids)
        if not isinstance(iss, str):
            raise AuthenticationFailed("malformed", **ids)
        client = self._clients.get(iss)
        if client is None:
            raise AuthenticationFailed("unknown-iss", **ids)

        self._check_jku(header, client, ids)
        keys = self._candidate_keys(client, kid, alg, ids)
        claims = self._verified_claims(token, keys, alg, ids)
        return self._check_claims(claims, client, kid, audience, ids)

    def _check_jku(self, header: dict[str, t.Any], client: TrustedClient, ids: dict[str, object]) -> None:
        if "jku" not in header:
            return
        jku = header["jku"]
        if client.jwks_url is None:
            # Keys are pinned in a file: the jku is never fetched either way.
            if not self._policy.allow_jku_with_jwks_file:
                raise AuthenticationFailed("jku-not-allowed", **ids)
            return
        expected = _comparable_url(client.jwks_url)
        if not isinstance(jku, str) or expected is None or _comparable_url(jku) != expected:
            raise AuthenticationFailed("jku-not-allowed", **ids)

    def _candidate_keys(
        self, client: TrustedClient, kid: str, alg: str, ids: dict[str, object]
    ) -> list[PublicKey]:
        source = self._sources[client.iss]
        failure: AuthenticationFailed | None = None
        try:
            keys = source.current().find(kid)
        except JwksError:
            failure = AuthenticationFailed("jwks-unavailable", **ids)
        if failure is not None:
            raise failure
        if not keys:
            refreshed = source.refresh_for_unknown_kid()
            keys = refreshed.find(kid) if refreshed is not None else ()
        if not keys:
            raise AuthenticationFailed("unknown-kid", **ids)
        usable = [key for key in keys if _key_fits(key, alg)]
        if not usable:
            raise AuthenticationFailed("key-mismatch", **ids)
        return usable

    def _verified_claims(
        self, token: str, keys: list[PublicKey], alg: str, ids: dict[str, object]
    ) -> dict[str, t.Any]:
        registry = self._registries[alg]
        payload: bytes | None = None
        reason = "bad-signature"
        for key in keys:
            try:
                payload = jws.deserialize_compact(token, key, registry=registry).payload
                break
            except BadSignatureError:
                continue
            except (JoseError, ValueError, TypeError):
                reason = "malformed"  # e.g. a registered header with an invalid value
                break
        if payload is None:
            raise AuthenticationFailed(reason, **ids)
        claims = _json_object(payload)
        if claims is None:
            raise AuthenticationFailed("malformed", **ids)
        return claims

    def _check_claims(
        self,
        claims: dict[str, t.Any],
        client: TrustedClient,
        kid: str,
        audience: str,
        ids: dict[str, object],
    ) -> VerifiedClient:
        ids = {"iss": claims.get("iss"), "kid": kid, "jti": claims.get("jti")}
        for name in _REQUIRED_CLAIMS:
            if name not in claims:
                raise AuthenticationFailed("missing-claim", **ids)
        iss, jti, aud, tenant = claims["iss"], claims["jti"], claims["aud"], claims.get("tenant")
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf")
        if (
            iss != client.iss
            or not isinstance(jti, str)
            or not jti
            or len(jti) > _MAX_ID_CHARS
            or not _is_timestamp(exp)
            or not _is_timestamp(iat)
            or (nbf is not None and not _is_timestamp(nbf))
            or (tenant is not None and not isinstance(tenant, str))
        ):
            raise AuthenticationFailed("malformed", **ids)

        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise AuthenticationFailed("malformed", **ids)
        if audience not in audiences:
            raise AuthenticationFailed("aud-mismatch", **ids)

        policy = self._policy
        now = self._clock()
        if now > exp + policy.leeway_seconds:
            raise AuthenticationFailed("expired", **ids)
        if nbf is not None and nbf > now + policy.iat_future_leeway_seconds:
            raise AuthenticationFailed("not-yet-valid", **ids)
        if iat > now + policy.iat_future_leeway_seconds:
            raise AuthenticationFailed("iat-in-future", **ids)
        if policy.max_token_age_seconds is not None and now - iat > policy.max_token_age_seconds:
            raise AuthenticationFailed("too-old", **ids)
        if client.tenant is not None and tenant != client.tenant:
            raise AuthenticationFailed("tenant", **ids)

        remember_until = datetime.fromtimestamp(exp + policy.leeway_seconds, tz=timezone.utc)
        if not self._jti_store.remember(iss, jti, remember_until):
            raise AuthenticationFailed("replay", **ids)
        return VerifiedClient(
            iss=iss,
            jti=jti,
            tenant=tenant,
            kid=kid,
            expires_at=datetime.fromtimestamp(exp, tz=timezone.utc),
        )


def _single_alg_registry(alg: str) -> jws.JWSRegistry:
    """A joserfc registry that accepts exactly ``alg`` and tolerates unknown header members."""
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    registry.max_header_length = 4096  # joserfc's 512 bytes is tight for a long jku + kid
    return registry


def _bearer_token(authorization_header: str | None) -> str:
    if not isinstance(authorization_header, str) or not authorization_header.strip():
        raise AuthenticationFailed("missing-token")
    parts = authorization_header.split()
    if parts[0].lower() != "bearer" or len(parts) == 1:
        raise AuthenticationFailed("missing-token")
    if len(parts) != 2:
        raise AuthenticationFailed("malformed")
    token = parts[1]
    if len(token) > _MAX_TOKEN_CHARS or not _COMPACT_JWS.fullmatch(token):
        raise AuthenticationFailed("malformed")
    return token


def _read_unverified(token: str) -> _Unverified:
    """Decode header and payload without trusting them (only to choose the key)."""
    header_segment, payload_segment, _ = token.split(".")
    header = _json_object(_b64url_decode(header_segment))
    claims = _json_object(_b64url_decode(payload_segment))
    if header is None or claims is None:
        raise AuthenticationFailed("malformed")
    ids = {"iss": claims.get("iss"), "kid": header.get("kid"), "jti": claims.get("jti")}
    return _Unverified(header, claims, ids)


def _b64url_decode(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def _json_object(data: bytes | None) -> dict[str, t.Any] | None:
    if data is None:
        return None
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_timestamp(value: object) -> bool:
    """A NumericDate (RFC 7519) between 1970 and 9999, so datetime arithmetic cannot overflow."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 <= value <= _MAX_TIMESTAMP and (isinstance(value, int) or math.isfinite(value))


def _key_fits(key: PublicKey, alg: str) -> bool:
    """Check the key's type, curve, size and optional ``use``/``alg``/``key_ops`` against ``alg``."""
    kty, curve = SUPPORTED_ALGORITHMS[alg]
    if key.key_type != kty:
        return False
    if kty == "EC" and getattr(key, "curve_name", None) != curve:
        return False
    if kty == "RSA" and key.public_key.key_size < MIN_RSA_BITS:  # type: ignore[union-attr]
        return False
    use = key.get("use")
    if use is not None and use != "sig":
        return False
    key_alg = key.get("alg")
    if key_alg is not None and key_alg != alg:
        return False
    key_ops = key.get("key_ops")
    return key_ops is None or "verify" in key_ops
