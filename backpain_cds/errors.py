"""The one table that turns exceptions into HTTP responses.

400/404/412/413/415 carry a FHIR OperationOutcome naming the problem (and the field, as
``expression``); 401 is bare, as CDS Hooks best practice asks; anything unexpected is a 500
with a generic OperationOutcome, logged with the hookInstance when known.

Logging never carries request content: a rejected request is logged with its status, the
JSON path of the bad field and the hookInstance; an unexpected exception with its class
names and the code locations of its traceback only (``backpain_cds.logs.safe_traceback``),
never the exception messages, which may quote clinical values or tokens.
"""

from __future__ import annotations

import logging
import typing as t

import orjson
from flask import Flask, Response, g, has_request_context, request
from werkzeug.exceptions import HTTPException

from backpain_cds.logs import safe_traceback
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
    status: int,
    message: str,
    *,
    code: str = "processing",
    expression: str | None = None,
    expressions: t.Sequence[str] = (),
) -> Response:
    """A FHIR OperationOutcome response: one error issue, or one per field in ``expressions``.

    Each issue carries the same ``diagnostics`` and its own ``expression`` (a 412 names every
    missing prefetch key as ``prefetch.<key>`` so that a client can act on each).
    """
    paths: list[str | None] = list(expressions) or ([expression] if expression else [])
    issues: list[dict[str, t.Any]] = []
    for path in paths or [None]:
        issue: dict[str, t.Any] = {"severity": "error", "code": code, "diagnostics": message}
        if path:
            issue["expression"] = [path]
        issues.append(issue)
    body = {"resourceType": "OperationOutcome", "issue": issues}
    return Response(orjson.dumps(body), status=status, mimetype="application/fhir+json")


def _request_ids() -> dict[str, t.Any]:
    """What a log line may say about the current request: ids, never content."""
    if not has_request_context():
        return {}
    ids: dict[str, t.Any] = {"method": request.method, "path": request.url_rule.rule if request.url_rule else "?"}
    hook_instance = g.get("hook_instance")
    if hook_instance:
        ids["hookInstance"] = hook_instance
    return ids


def register_error_handlers(app: Flask) -> None:
    """Install the translation table on the app."""

    @app.errorhandler(AuthenticationFailed)
    def _unauthorised(exc: AuthenticationFailed) -> Response:
        # cds_hooks.auth has logged the reason (with iss/kid/jti, never the token)
        return Response(status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.errorhandler(CdsHooksError)
    def _protocol_error(exc: CdsHooksError) -> Response:
        status, code = 400, "invalid"
        for cls, table_status, table_code in STATUS_TABLE:
            if isinstance(exc, cls):
                status, code = table_status, table_code
                break
        log.info(
            "request rejected",
            extra={"status": status, "reason": exc.field or exc.__class__.__name__, **_request_ids()},
        )
        return operation_outcome(status, exc.message, code=code, expressions=exc.fields)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}.get(
            status, "processing"
        )
        headers = dict(exc.get_headers()) if status == 405 else {}
        log.info("request rejected", extra={"status": status, "reason": exc.name, **_request_ids()})
        response = operation_outcome(status, exc.description or exc.name, code=code)
        if "Allow" in headers:
            response.headers["Allow"] = headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Not log.exception: a traceback's messages may quote request content (tokens,
        # clinical values). Class names and code locations are enough to find the bug.
        log.error(
            "unexpected error: %s",
            exc.__class__.__name__,
            extra={"status": 500, "error": exc.__class__.__name__, "traceback": safe_traceback(exc), **_request_ids()},
        )
        return operation_outcome(500, "internal error; the service log has the details", code="exception")
