"""Typed errors of the CDS Hooks protocol layer.

The exceptions carry no HTTP status codes: ``backpain_cds.errors`` holds the single table that
turns them into responses (400/404/412/413 with an OperationOutcome, 401 bare).

    CdsHooksError
     ├── InvalidRequest          malformed body or a field that breaks the spec (400)
     │    └── HookNotSupported   the service exists but is not registered for that hook (400)
     ├── UnknownService          no service with that id (404)
     ├── PrefetchUnavailable     data neither prefetched nor obtainable from FHIR (412)
     └── PayloadTooLarge         body over the configured cap (413)
"""

from __future__ import annotations


class CdsHooksError(Exception):
    """Base of the protocol errors; ``message`` is safe to show to the caller."""

    def __init__(
        self, message: str, *, field: str | None = None, fields: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        #: the JSON path of the offending field, e.g. ``context.patientId``
        self.field = field or (fields[0] if fields else None)
        #: every offending field when there are several (one OperationOutcome issue each),
        #: e.g. each missing prefetch key of a 412 as ``prefetch.<key>``
        self.fields = fields or ((field,) if field else ())


class InvalidRequest(CdsHooksError):
    """The request body is malformed or breaks a CDS Hooks rule."""


class HookNotSupported(InvalidRequest):
    """The service exists, but is not registered for the requested hook."""


class UnknownService(CdsHooksError):
    """No service is registered under the requested id."""


class PrefetchUnavailable(CdsHooksError):
    """Required data is in neither the prefetch nor reachable on the FHIR server."""


class PayloadTooLarge(CdsHooksError):
    """The request body is larger than the configured limit."""
