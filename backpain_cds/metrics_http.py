"""The Flask side of the metrics: ``GET /metrics`` and what only the HTTP layer sees.

Counted here: every hook call with its HTTP status and time (request in to response out, as
measured by the blueprint, :mod:`cds_hooks.blueprint`, for the call log too),
the client JWT check (the ``auth`` stage), feedback entries once stored, error responses.
The service itself reports its stages, cards and prefetch keys (``CdsService`` observer).
"""

from __future__ import annotations

import hmac
import time
import typing as t

from flask import Flask, Response, g, request

from backpain_cds.metrics import Metrics
from backpain_cds.settings import Settings
from cds_hooks.blueprint import INVOKE_ENDPOINT, json_response
from cds_hooks.ports import FeedbackEntry, FeedbackSaved, FeedbackStore

#: the blueprint endpoint of ``POST /cds-services/<service_id>``
HOOK_ENDPOINT = INVOKE_ENDPOINT


def install_metrics(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """Count hook calls and error responses, and serve ``GET /metrics``."""

    @app.after_request
    def _count(response: Response) -> Response:
        status = response.status_code
        if request.endpoint == HOOK_ENDPOINT:
            metrics.hook_answered(
                service_id=(request.view_args or {}).get("service_id"),
                hook=g.get("hook"),
                status=status,
                seconds=g.get("call_seconds", 0.0),  # the blueprint's clock, as in the call log
            )
        if status >= 400:
            metrics.error(status)
        return response

    install_metrics_endpoint(app, settings, metrics)


def install_metrics_endpoint(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """``GET /metrics``: open by default; optionally behind a bearer token and/or only on a
    separate listener (``[metrics]`` settings, README "Metrics")."""
    token = settings.metrics.bearer_token
    bind = settings.metrics.bind
    metrics_port = bind.rpartition(":")[2] if bind else None

    def on_metrics_listener() -> bool:
        return metrics_port is not None and request.environ.get("SERVER_PORT") == metrics_port

    if metrics_port is not None:

        @app.before_request
        def _metrics_listener_serves_only_metrics() -> Response | None:
            if on_metrics_listener() != (request.path == "/metrics"):
                return json_response({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-found", "diagnostics": "not found"}]}, status=404)
            return None

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        if token is not None:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        return Response(metrics.render(), content_type=metrics.content_type)


def timed_authenticate(
    authenticate: t.Callable[[str | None, str], object], metrics: Metrics
) -> t.Callable[[str | None, str], object]:
    """The client JWT check, observed as the ``auth`` stage (refused tokens included)."""

    def timed(header: str | None, audience: str) -> object:
        started = time.perf_counter()
        try:
            return authenticate(header, audience)
        finally:
            metrics.stage("auth", time.perf_counter() - started)

    return timed


class CountingFeedbackStore:
    """Stores feedback, then counts the entries stored about cards the service showed, by outcome
    and override reason; entries kept apart (unknown card) or already stored (a repeat) are
    counted apart, never in those statistics."""

    def __init__(self, store: FeedbackStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def save_feedback(self, service_id: str, entries: t.Sequence[FeedbackEntry]) -> FeedbackSaved:
        saved = self._store.save_feedback(service_id, entries)
        self._metrics.feedback([entries[i] for i in saved.stored_entries])
        self._metrics.feedback_set_apart("unmatched", saved.unmatched)
        self._metrics.feedback_set_apart("repeat", len(entries) - saved.stored - saved.unmatched)
        return saved
