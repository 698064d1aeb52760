"""Read a compact JWS without trusting it, and check its parts one by one.

The building blocks of :class:`cds_hooks.auth.ClientAuthenticator`: the bearer header
shape, the unverified JOSE header and claims (read only to choose the client and key), the
NumericDate range, whether a JWK fits an algorithm, and the single-algorithm joserfc
registry used for the signature check. Every name here is private to client-JWT
verification; :mod:`cds_hooks.auth` re-exports them for code that imported them from
there. No Flask imports here.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import typing as t
from dataclasses import dataclass, field

import orjson
from joserfc import jws

from cds_hooks.auth_errors import AuthenticationFailed
from cds_hooks.auth_policy import SUPPORTED_ALGORITHMS
from cds_hooks.jwks import MIN_RSA_BITS, PublicKey

__all__: list[str] = []  # nothing public: see the module docstring

_MAX_TOKEN_CHARS = 16_384
_MAX_ID_CHARS = 512  # iss, kid, jti, tenant
_MAX_JTI_CHARS = 256  # the replay store's column (backpain_cds/storage.py): refuse what it cannot hold
_MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")


@dataclass
class _Unverified:
    """What we read from the token before its signature is checked."""

    header: dict[str, t.Any]
    claims: dict[str, t.Any]
    ids: dict[str, object] = field(default_factory=dict)


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
    """The JSON object in ``data`` (strict RFC 8259, as for request bodies), else None.

    orjson refuses what the stdlib decoder lets through and no database or JSON writer can hold:
    a lone surrogate escape (``"\\ud800"`` in a jti was a 500 at storage), ``NaN``/``Infinity``."""
    if data is None:
        return None
    try:
        value = orjson.loads(data)
    except (orjson.JSONDecodeError, RecursionError):
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
