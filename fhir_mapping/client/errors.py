"""Errors of the FHIR REST client (:mod:`fhir_mapping.client`, which re-exports the public ones).

Exception hierarchy::

    FhirAccessError            base; .key, .query, .reason, .status_code
     ├── ServerNotAllowed      fhirServer not allow-listed (raised before any network I/O)
     └── FhirFetchError        timeout, connection error, non-2xx, redirect, bad JSON,
                               OperationOutcome body, caps exceeded, foreign next link, deadline

``Cancelled`` and ``CancelledFetch`` serve ``fetch_many`` cancellation inside the client
(:mod:`fhir_mapping.client.fetch` and :mod:`fhir_mapping.client.client`) and never reach a caller.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "CancelledFetch",
    "FhirAccessError",
    "FhirFetchError",
    "ServerNotAllowed",
]

class FhirAccessError(Exception):
    """Base of every error this client raises; the message never contains the token or a body."""

    def __init__(
        self,
        reason: str,
        *,
        key: str | None = None,
        query: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.reason = reason
        self.key = key
        self.query = query
        self.status_code = status_code
        super().__init__(reason)

    def __str__(self) -> str:
        # The query is kept as an attribute only: it carries patient ids.
        return f"{self.reason} (key={self.key})" if self.key is not None else self.reason


class ServerNotAllowed(FhirAccessError):
    """The FHIR base URL is not on the allow-list (raised before any network I/O)."""


class FhirFetchError(FhirAccessError):
    """A fetch failed: network, HTTP status, body, limits, paging or deadline."""

    def __init__(
        self,
        reason: str,
        *,
        key: str | None = None,
        query: str | None = None,
        status_code: int | None = None,
        keys: tuple[str, ...] = (),
    ) -> None:
        super().__init__(reason, key=key, query=query, status_code=status_code)
        #: For a ``fetch_many`` deadline: every key that had not finished.
        self.keys = keys or ((key,) if key is not None else ())


class Cancelled(Exception):
    """Internal: a fetch_many worker noticed the cancel flag."""


class CancelledFetch(FhirFetchError):
    """Internal: a fetch_many key stopped because another key failed or time ran out."""
