"""Why a client JWT was refused: :class:`AuthenticationFailed` and its closed set of reasons.

Part of client-JWT verification (:mod:`cds_hooks.auth`, which re-exports
:class:`AuthenticationFailed`). The token is never put in an exception message or kept in an attribute. No Flask
imports here.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "FAILURE_REASONS",
]

#: Every ``AuthenticationFailed.reason`` (a closed set: safe as a metrics label).
FAILURE_REASONS = frozenset(
    {
        "missing-token", "malformed", "alg-not-allowed", "typ", "missing-kid", "unknown-iss",
        "jku-not-allowed", "jwks-unavailable", "unknown-kid", "key-mismatch", "bad-signature",
        "missing-claim", "aud-mismatch", "expired", "not-yet-valid", "iat-in-future", "too-old",
        "tenant", "replay",
    }
)  # fmt: skip
_LOG_VALUE_CHARS = 128


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
