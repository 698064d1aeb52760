"""The Flask face of the CDS Hooks service: discovery, invocation, feedback.

Routes stay thin: authenticate, parse, call :class:`cds_hooks.service.CdsService`, return JSON.
Errors are raised as typed exceptions and turned into responses by ``backpain_cds.errors``.

Order of checks on a POST (each answer reveals nothing the previous step did not allow):

1. the service id in the path must look like an id (``[A-Za-z0-9._-]{1,64}``), else 404
   before anything else (such a URL can never be a valid JWT ``aud`` of ours);
2. the client JWT (401, bare);
3. the Content-Type: ``application/json``, ``application/fhir+json`` (any parameters) or none
   (the sandbox always sends JSON); anything else is 415. Refusing form, multipart and
   text/plain bodies also means a browser cannot send a hook call or feedback without a CORS
   preflight, which matters in development mode where unsigned calls are accepted;
4. the service id must exist (404, without echoing the id);
5. the body: at most ``MAX_CONTENT_LENGTH`` bytes (413: Werkzeug refuses a declared length,
   :func:`read_body_bytes` counts a chunked body while it streams), valid JSON (400), nested at most :data:`cds_hooks.limits.MAX_JSON_DEPTH`
   levels (400); then the protocol validation of ``hook_request`` or ``feedback``. A hook
   call's prefetch Bundles are decoded lazily (:mod:`cds_hooks.json_body`).

The call log: every answered POST to a known service id (whatever the status: 200, 400, 401,
412, ...) becomes one :class:`cds_hooks.ports.HookCallRecord`, written through the
:class:`cds_hooks.ports.CallLog` port *after* the response has been sent (Werkzeug's
``call_on_close``), so it adds nothing to the EHR's wait. The call's time is measured once here,
request in to response out, and left on ``flask.g`` as ``call_seconds`` (the metrics' per-call
histogram observes the same figure); the service's :class:`cds_hooks.service.CallReport` (cards
returned, deadline exceeded) reaches this layer through :class:`CallReportTap`. A failing write
never changes the response: it is logged (ids and the error class only) once, until a write
succeeds again.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from collections import Counter
from datetime import UTC, datetime

import orjson
from flask import Blueprint, Response, current_app, g, has_request_context, request
from werkzeug.exceptions import UnsupportedMediaType

from cds_hooks.catalog import SUPPORTED_HOOKS
from cds_hooks.errors import PayloadTooLarge, UnknownService
from cds_hooks.feedback import parse_feedback
from cds_hooks.hook_request import HOOK_INSTANCE
from cds_hooks.json_body import decode_hook_body, decode_json_body
from cds_hooks.limits import SERVICE_ID
from cds_hooks.ports import CallLog, FeedbackStore, HookCallRecord
from cds_hooks.schemas import validate_cds_response, validate_discovery
from cds_hooks.service import CallObserver, CallReport, CdsService

log = logging.getLogger("backpain_cds.service")

_READ_BYTES = 64 * 1024

#: at most this many card uuids are named in one feedback log line
_LOGGED_CARDS = 20

Authenticate = t.Callable[[str | None, str], object]

#: the endpoint of ``POST /cds-services/<service_id>`` (a hook call)
INVOKE_ENDPOINT = "cds_hooks.invoke"
#: the hook of a call logged before its body named one (401, 415, bad JSON, unknown hook)
UNKNOWN_HOOK = "unknown"


def json_response(body: t.Any, status: int = 200) -> Response:
    """Serialise with orjson (fast, strict UTF-8)."""
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


#: media types a POST body may be declared as (parameters such as charset are ignored)
JSON_MEDIA_TYPES = frozenset({"application/json", "application/fhir+json"})


def check_content_type() -> None:
    """415 unless the body is declared as JSON (or not declared at all)."""
    declared = request.headers.get("Content-Type")
    if declared is None or not declared.strip():
        return
    if request.mimetype not in JSON_MEDIA_TYPES:
        raise UnsupportedMediaType(
            "the request body must be JSON (Content-Type application/json or application/fhir+json)"
        )


def read_body_bytes() -> bytes:
    """The request body, refused with 413 past ``MAX_CONTENT_LENGTH`` however it is framed.

    A declared Content-Length over the limit is refused by Werkzeug before anything is read.
    A chunked body (no Content-Length) is counted while it streams in and refused one byte
    past the limit: Werkzeug's limited stream would silently cut it there instead.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    environ = request.environ
    if limit is None or request.content_length is not None or not environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    stream = environ["wsgi.input"]
    buf = bytearray()
    while True:
        chunk = stream.read(min(_READ_BYTES, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")


def read_json_body(decode: t.Callable[[bytes], t.Any] = decode_json_body) -> t.Any:
    """Parse the request body as JSON, or raise a 400 naming the problem (413 if too large)."""
    body = decode(read_body_bytes())
    if isinstance(body, dict):
        hook_instance = body.get("hookInstance")
        if isinstance(hook_instance, str) and HOOK_INSTANCE.fullmatch(hook_instance):
            g.hook_instance = hook_instance  # for the error log (backpain_cds.errors)
        hook = body.get("hook")
        if isinstance(hook, str) and hook in SUPPORTED_HOOKS:
            g.hook = hook  # for the metrics of a call refused later (a label from a fixed set)
    return body


def check_service_id_syntax(service_id: str) -> None:
    """404 for a path segment that cannot be a service id (never echoed back)."""
    if not SERVICE_ID.fullmatch(service_id):
        raise UnknownService("no CDS service with this id")


class CallReportTap:
    """A :class:`cds_hooks.service.CallObserver` in front of another: also keeps the report of
    the current request's hook call on ``flask.g`` for the call log."""

    def __init__(self, observer: CallObserver | None = None) -> None:
        self._observer = observer

    def call_finished(self, report: CallReport) -> None:
        if has_request_context():
            g.call_report = report
        if self._observer is not None:
            self._observer.call_finished(report)


class CallLogWriter:
    """Writes call records through the port; a failure is logged once, until a write succeeds."""

    def __init__(self, call_log: CallLog) -> None:
        self._call_log = call_log
        self._lock = threading.Lock()
        self._failures = 0  #: consecutive failed writes

    def write(self, record: HookCallRecord) -> None:
        try:
            self._call_log.record_call(record)
        except Exception as exc:  # noqa: BLE001 - the response is sent; nothing may escape
            with self._lock:
                self._failures += 1
                first = self._failures == 1
            if first:
                log.warning("call log write failed; further failures are not logged until a write succeeds",
                            extra={"service": record.service_id, "error": exc.__class__.__name__})
            return
        if self._failures:
            with self._lock:
                failed, self._failures = self._failures, 0
            if failed:
                log.info("call log writes resumed", extra={"failed": failed})


def call_record(service_id: str, status: int, seconds: float, received_at: datetime,
                report: CallReport | None, hook: str | None) -> HookCallRecord:
    """The call log row of one answered hook call (cards and deadline from the service's report)."""
    answered = status == 200 and report is not None
    return HookCallRecord(
        received_at=received_at,
        service_id=service_id,
        hook=report.hook if report is not None else hook or UNKNOWN_HOOK,
        status=status,
        duration_ms=seconds * 1000.0,
        deadline_exceeded=bool(answered and report is not None and report.deadline_exceeded),
        cards=len(report.cards) if answered and report is not None else 0,
    )


def create_blueprint(
    service: CdsService,
    *,
    public_base_url: str,
    feedback_store: FeedbackStore,
    authenticate: Authenticate | None,
    validate_responses: bool = False,
    call_log: CallLog | None = None,
) -> Blueprint:
    """Build the blueprint; ``authenticate`` is None only in development mode.

    With ``call_log`` every answered hook call of a known service id is recorded (module
    docstring); the service's observer should then be a :class:`CallReportTap`.
    """
    bp = Blueprint("cds_hooks", __name__)
    base = public_base_url.rstrip("/")
    writer = CallLogWriter(call_log) if call_log is not None else None

    @bp.before_request
    def _start_call_clock() -> None:
        if request.endpoint == INVOKE_ENDPOINT:
            g.call_started = time.perf_counter()
            g.call_received_at = datetime.now(UTC)

    @bp.after_request
    def _end_call_clock(response: Response) -> Response:
        started = g.get("call_started")
        if request.endpoint != INVOKE_ENDPOINT or started is None:
            return response
        g.call_seconds = seconds = time.perf_counter() - started
        service_id = (request.view_args or {}).get("service_id")
        if writer is not None and isinstance(service_id, str) and service.catalog.has_id(service_id):
            record = call_record(service_id, response.status_code, seconds, g.call_received_at,
                                 g.get("call_report"), g.get("hook"))
            response.call_on_close(lambda: writer.write(record))
        return response

    def check_client(audience: str) -> None:
        if authenticate is not None:
            authenticate(request.headers.get("Authorization"), audience)

    def check_post(service_id: str, audience: str) -> None:
        check_service_id_syntax(service_id)
        check_client(audience)
        check_content_type()
        if not service.catalog.has_id(service_id):
            raise UnknownService("no CDS service with this id")

    @bp.get("/cds-services")
    def discovery() -> Response:
        check_client(f"{base}/cds-services")
        body = service.discovery()
        if validate_responses:
            validate_discovery(body)
        return json_response(body)

    @bp.post("/cds-services/<service_id>")
    def invoke(service_id: str) -> Response:
        check_post(service_id, f"{base}/cds-services/{service_id}")
        started = time.perf_counter()
        body = read_json_body(decode_hook_body)
        outcome = service.invoke(service_id, body, decode_seconds=time.perf_counter() - started)
        if validate_responses:
            validate_cds_response(outcome.response)
        return json_response(outcome.response)

    @bp.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        check_post(service_id, f"{base}/cds-services/{service_id}/feedback")
        entries = parse_feedback(read_json_body())
        saved = feedback_store.save_feedback(service_id, entries)
        # One line per call, like "hook call answered": ids only (card uuids are ours, not
        # hookInstance or patient identifiers), never a userComment or override text.
        log.info(
            "feedback received",
            extra={
                "service": service_id,
                "entries": len(entries),
                "outcomes": dict(sorted(Counter(e.outcome for e in entries).items())),
                "stored": saved.stored,
                "unmatched": saved.unmatched,
                "cards": sorted({e.card_uuid for e in entries})[:_LOGGED_CARDS],
            },
        )
        return json_response(
            {"received": len(entries), "stored": saved.stored, "unmatched": saved.unmatched}
        )

    return bp
