"""The Flask face of the CDS Hooks service: discovery, invocation, feedback.

Routes stay thin: authenticate, parse, call :class:`cds_hooks.service.CdsService`, return JSON.
Errors are raised as typed exceptions and turned into responses by ``backpain_cds.errors``.
"""

from __future__ import annotations

import typing as t

import orjson
from flask import Blueprint, Response, request

from cds_hooks.errors import InvalidRequest
from cds_hooks.feedback import parse_feedback
from cds_hooks.ports import FeedbackStore
from cds_hooks.schemas import validate_cds_response, validate_discovery
from cds_hooks.service import CdsService

Authenticate = t.Callable[[str | None, str], object]


def json_response(body: t.Any, status: int = 200) -> Response:
    """Serialise with orjson (fast, strict UTF-8)."""
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def read_json_body() -> t.Any:
    """Parse the request body as JSON, or raise a 400 naming the problem."""
    raw = request.get_data(cache=False)
    if not raw:
        raise InvalidRequest("the request body is empty; a JSON object is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def create_blueprint(
    service: CdsService,
    *,
    public_base_url: str,
    feedback_store: FeedbackStore,
    authenticate: Authenticate | None,
    validate_responses: bool = False,
) -> Blueprint:
    """Build the blueprint; ``authenticate`` is None only in development mode."""
    bp = Blueprint("cds_hooks", __name__)
    base = public_base_url.rstrip("/")

    def check_client(audience: str) -> None:
        if authenticate is not None:
            authenticate(request.headers.get("Authorization"), audience)

    @bp.get("/cds-services")
    def discovery() -> Response:
        check_client(f"{base}/cds-services")
        body = service.discovery()
        if validate_responses:
            validate_discovery(body)
        return json_response(body)

    @bp.post("/cds-services/<service_id>")
    def invoke(service_id: str) -> Response:
        check_client(f"{base}/cds-services/{service_id}")
        service.check_service_id(service_id)
        outcome = service.invoke(service_id, read_json_body())
        if validate_responses:
            validate_cds_response(outcome.response)
        return json_response(outcome.response)

    @bp.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        check_client(f"{base}/cds-services/{service_id}/feedback")
        service.check_service_id(service_id)
        entries = parse_feedback(read_json_body())
        stored = feedback_store.save_feedback(service_id, entries)
        return json_response({"received": len(entries), "stored": stored})

    return bp
