"""Read a compact JWS without trusting it, and check its parts one by one.

The building blocks of :class:`cds_hooks.auth.verifier.ClientAuthenticator`: the bearer header
shape, the unverified JOSE header and claims (read only to choose the client and key), the
NumericDate range, whether a JWK fits an algorithm, and the single-algorithm joserfc
registry used for the signature check. These names serve client-JWT verification only
(:mod:`cds_hooks.auth.verifier` uses them; the package does not re-export them). No Flask imports here.
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

from cds_hooks.auth.errors import AuthenticationFailed
from cds_hooks.auth.jwks import MIN_RSA_BITS, PublicKey
from cds_hooks.auth.policy import SUPPORTED_ALGORITHMS

__all__ = [
    "MAX_ID_CHARS",
    "MAX_JTI_CHARS",
    "MAX_TIMESTAMP",
    "REQUIRED_CLAIMS",
    "UnverifiedToken",
    "bearer_token",
    "is_timestamp",
    "json_object",
    "key_fits",
    "read_unverified",
    "single_alg_registry",
]

_MAX_TOKEN_CHARS = 16_384
MAX_ID_CHARS = 512  # iss, kid, jti, tenant
MAX_JTI_CHARS = 256  # the replay store's column (backpain_cds/storage.py): refuse what it cannot hold
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")


@dataclass
class UnverifiedToken:
    """What we read from the token before its signature is checked."""

    header: dict[str, t.Any]
    claims: dict[str, t.Any]
    ids: dict[str, object] = field(default_factory=dict)


def single_alg_registry(alg: str) -> jws.JWSRegistry:
    """A joserfc registry that accepts exactly ``alg`` and tolerates unknown header members."""
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    registry.max_header_length = 4096  # joserfc's 512 bytes is tight for a long jku + kid
    return registry


def bearer_token(authorization_header: str | None) -> str:
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


def read_unverified(token: str) -> UnverifiedToken:
    """Decode header and payload without trusting them (only to choose the key)."""
    header_segment, payload_segment, _ = token.split(".")
    header = json_object(_b64url_decode(header_segment))
    claims = json_object(_b64url_decode(payload_segment))
    if header is None or claims is None:
        raise AuthenticationFailed("malformed")
    ids = {"iss": claims.get("iss"), "kid": header.get("kid"), "jti": claims.get("jti")}
    return UnverifiedToken(header, claims, ids)


def _b64url_decode(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def json_object(data: bytes | None) -> dict[str, t.Any] | None:
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


def is_timestamp(value: object) -> bool:
    """A NumericDate (RFC 7519) between 1970 and 9999, so datetime arithmetic cannot overflow."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 <= value <= MAX_TIMESTAMP and (isinstance(value, int) or math.isfinite(value))


def key_fits(key: PublicKey, alg: str) -> bool:
    """Check the key's type, curve, size and optional ``use``/``alg``/``key_ops`` against ``alg``."""
    kty, curve = SUPPORTED_ALGORITHMS[alg]
    if key.key_type != kty:
        return False
    if kty == "EC" and getattr(key, "curve_name", None) != curve:
        return False
    if kty == "RSA" and key.public_key.key_size < MIN_RSA_BITS:
        return False
    use = key.get("use")
    if use is not None and use != "sig":
        return False
    key_alg = key.get("alg")
    if key_alg is not None and key_alg != alg:
        return False
    key_ops = key.get("key_ops")
    return key_ops is None or "verify" in key_ops
