"""Moved to :mod:`tools.harness.jwt_factory` (bench/warm_start.py signs calls too, and nothing
outside tests/ may import tests/); re-exported here so existing test imports keep working."""

from tools.harness.jwt_factory import (  # noqa: F401
    DROP,
    JwksServer,
    TestSigner,
    b64url,
    hmac_token,
    jwks_of,
    tamper_payload,
    unsigned_token,
)
