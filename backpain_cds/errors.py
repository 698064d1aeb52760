"""The one table that turns exceptions into HTTP responses.

400/404/412/413 carry a FHIR OperationOutcome naming the problem (and the field, as
``expression``); 401 is bare, as CDS Hooks best practice asks; anything unexpected is a 500
with a generic OperationOutcome, logged with the hookInstance when known.
"""

from __future__ import annotations

import logging
import typing as t

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from cds_hooks.auth import AuthenticationFailed
from cds_hooks.errors import (
    CdsHooksError,
    InvalidRequest,
    PayloadTooLarge,
    PrefetchUnavailable,
    UnknownService,
)

log = logging.getLogger("backpain_cds.errors")

#: exception class -> (HTTP status, OperationOutcome issue code)
STATUS_TABLE: tuple[tuple[type[CdsHooksError], int, str], ...] = (
    (InvalidRequest, 400, "invalid"),
    (UnknownService, 404, "not-found"),
    (PrefetchUnavailable, 412, "incomplete"),
    (PayloadTooLarge, 413, "too-costly"),
)


def operation_outcome(
    status: int, message: str, *, code: str = "processing", expression: str | None = None
) -> Response:
    """A FHIR OperationOutcome response with one error issue."""
    issue: dict[str, t.Any] = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    body = {"resourceType": "OperationOutcome", "issue": [issue]}
    return Response(orjson.dumps(body), status=status, mimetype="application/fhir+json")


def register_error_handlers(app: Flask) -> None:
    """Install the translation table on the app."""

    @app.errorhandler(AuthenticationFailed)
    def _unauthorised(exc: AuthenticationFailed) -> Response:
        return Response(status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.errorhandler(CdsHooksError)
    def _protocol_error(exc: CdsHooksError) -> Response:
        for cls, status, code in STATUS_TABLE:
            if isinstance(exc, cls):
                return operation_outcome(status, exc.message, code=code, expression=exc.field)
        return operation_outcome(400, exc.message, code="invalid", expression=exc.field)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {404: "not-found", 405: "not-supported", 413: "too-costly"}.get(status, "processing")
        headers = dict(exc.get_headers()) if status == 405 else {}
        response = operation_outcome(status, exc.description or exc.name, code=code)
        if "Allow" in headers:
            response.headers["Allow"] = headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error: %s", exc.__class__.__name__)
        return operation_outcome(500, "internal error; the service log has the details", code="exception")
