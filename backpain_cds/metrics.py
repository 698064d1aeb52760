"""Prometheus metrics with ``prometheus_client``, summed over gunicorn's workers.

Under ``backpain-cds serve`` every worker writes its counts to files in a private directory
(``PROMETHEUS_MULTIPROC_DIR``, made fresh by :mod:`backpain_cds.server` before the fork) and a
scrape of ``/metrics`` on any worker sums the files of all workers, dead ones included.
In-process (tests, development without gunicorn) the counts live in memory, in a registry of
this :class:`Metrics` object.

No patient data reaches a label: every label value is checked against a bounded set known at
start-up (service ids, hooks and prefetch keys of the service catalogue, rule ids, indicators,
override reason codes of ``actions.toml``, HTTP status codes); anything else is counted as
``unknown`` or ``other``. README "Metrics" lists the metrics.
"""

from __future__ import annotations

import contextlib
import os
import typing as t

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from assessment.config import RULE_IDS
from assessment.findings import Indicator
from cds_hooks.catalog import SUPPORTED_HOOKS, ServiceCatalog
from cds_hooks.ports import FeedbackEntry
from cds_hooks.service import PREFETCH_OUTCOMES, STAGES, CallReport
from fhir_mapping.suggestions import Coding

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "unknown"  #: a service id or hook not in the catalogue (e.g. a 404's path)
OTHER = "other"  #: an override reason code not in actions.toml
NONE = "none"  #: no override reason code (accepted, or a comment only)
FEEDBACK_OUTCOMES = ("accepted", "overridden")
#: why a card was not shown (counted by ``card_suppressed``; the snooze and shadow features)
SUPPRESSION_REASONS = ("snooze", "shadow", "duplicate")
#: feedback entries not counted in ``backpain_cds_feedback_total``: naming a card the service
#: never issued or never showed (kept apart in ``feedback_unmatched``), or already stored
FEEDBACK_SET_APART = ("unmatched", "repeat")
#: per call: 1 ms .. 10 s
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: per stage: from 0.1 ms (assessment and rendering take well under 1 ms)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, *CALL_BUCKETS)

# No ``*_created`` series: multiprocess mode has none, and in-process output should match it.
disable_created_metrics()


class Metrics:
    """The service's metrics; implements :class:`cds_hooks.service.CallObserver`."""

    def __init__(
        self,
        catalog: ServiceCatalog,
        override_reasons: t.Mapping[str, t.Sequence[Coding]],
        *,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir and values.ValueClass is values.MutexValue:
            raise RuntimeError(
                f"{MULTIPROC_ENV} was set after prometheus_client was imported; set it first"
            )
        self._services = frozenset(s.id for s in catalog.services)
        self._keys = frozenset(k for s in catalog.services for k in s.prefetch)
        self._reasons = {c.code: c.system for rows in override_reasons.values() for c in rows}
        self._paused = False
        #: (metric, label values) -> child: prometheus_client's labels() costs a few us a call
        self._children: dict[tuple[int, tuple[str, ...]], t.Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._calls = Counter("backpain_cds_hook_calls_total", "Hook calls by service, hook and HTTP status.",
                              ["service", "hook", "status"], registry=reg)
        self._call_seconds = Histogram("backpain_cds_hook_call_seconds",
                                       "Time to answer a hook call (request in to response out).",
                                       ["service", "hook", "status"], buckets=CALL_BUCKETS, registry=reg)
        self._stage_seconds = Histogram("backpain_cds_stage_seconds", "Time spent per stage of a hook call.",
                                        ["stage"], buckets=STAGE_BUCKETS, registry=reg)
        self._cards = Counter("backpain_cds_cards_total", "Cards returned, by rule and indicator.",
                              ["rule", "indicator"], registry=reg)
        self._suppressed = Counter("backpain_cds_cards_suppressed_total",
                                   "Cards a rule produced but the service did not show, by reason.",
                                   ["rule", "reason"], registry=reg)
        self._feedback = Counter("backpain_cds_feedback_total",
                                 "Feedback entries stored about cards the service showed, by outcome and override reason code.",
                                 ["outcome", "override_reason"], registry=reg)
        self._feedback_apart = Counter("backpain_cds_feedback_set_apart_total",
                                       "Feedback entries not counted as feedback: on a card never issued or "
                                       "shown (unmatched), or already stored (repeat).",
                                       ["reason"], registry=reg)
        self._prefetch = Counter("backpain_cds_prefetch_total",
                                 "Prefetch keys of hook calls, by how each was obtained.",
                                 ["key", "outcome"], registry=reg)
        self._deadline = Counter("backpain_cds_deadline_exceeded_total",
                                 "Hook calls answered with no cards because the deadline passed.",
                                 ["service"], registry=reg)
        self._errors = Counter("backpain_cds_errors_total", "Error responses (any path) by HTTP status.",
                               ["status"], registry=reg)
        # Known series start at 0, so that rate() and absence alerts work from the first scrape.
        for s in catalog.services:
            if not s.deprecated:
                self._calls.labels(s.id, s.hook, "200")
                self._deadline.labels(s.id)
        for rule in RULE_IDS:
            for reason in SUPPRESSION_REASONS:
                self._suppressed.labels(rule, reason)
        for reason in FEEDBACK_SET_APART:
            self._feedback_apart.labels(reason)

    # -- label hygiene: bounded values only -------------------------------------------------

    def _service(self, service_id: str | None) -> str:
        return service_id if service_id in self._services else UNKNOWN

    @staticmethod
    def _hook(hook: str | None) -> str:
        return hook if hook in SUPPORTED_HOOKS else UNKNOWN

    @staticmethod
    def _status(status: int) -> str:
        return str(status) if 100 <= status <= 599 else OTHER

    def _override_reason(self, entry: FeedbackEntry) -> str:
        code = entry.override_code
        if code is None:
            return NONE
        known_system = self._reasons.get(code)
        if known_system is None or entry.override_system not in (None, known_system):
            return OTHER
        return code

    # -- recording ----------------------------------------------------------------------------

    def _child(self, metric: t.Any, *labels: str) -> t.Any:
        """The metric's child for these (already bounded) label values, looked up once."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @contextlib.contextmanager
    def paused(self) -> t.Iterator[None]:
        """Record nothing inside (the warm-up's synthetic calls, :mod:`backpain_cds.warm`)."""
        was, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = was

    def call_finished(self, report: CallReport) -> None:
        """The service's report of one hook call (stages, cards, prefetch keys, deadline)."""
        if self._paused:
            return
        for stage, seconds in report.stages.items():
            if stage in STAGES:
                self._child(self._stage_seconds, stage).observe(seconds)
        for rule, indicator in report.cards:
            self._child(self._cards, rule if rule in RULE_IDS else OTHER,
                        indicator if indicator in _INDICATORS else OTHER).inc()
        for key, outcome in report.prefetch.items():
            if key in self._keys and outcome in PREFETCH_OUTCOMES:
                self._child(self._prefetch, key, outcome).inc()
        if report.deadline_exceeded:
            self._child(self._deadline, self._service(report.service_id)).inc()
        for rule, reason in report.suppressed:
            self.card_suppressed(rule, reason)

    def hook_answered(self, *, service_id: str | None, hook: str | None, status: int, seconds: float) -> None:
        """One HTTP hook call answered (any status)."""
        if self._paused:
            return
        labels = (self._service(service_id), self._hook(hook), self._status(status))
        self._child(self._calls, *labels).inc()
        self._child(self._call_seconds, *labels).observe(seconds)

    def stage(self, stage: str, seconds: float) -> None:
        """A stage measured outside the service (``auth``: the client JWT check)."""
        if not self._paused and stage in STAGES:
            self._child(self._stage_seconds, stage).observe(seconds)

    def feedback(self, entries: t.Iterable[FeedbackEntry]) -> None:
        if self._paused:
            return
        for entry in entries:
            if entry.outcome in FEEDBACK_OUTCOMES:
                self._child(self._feedback, entry.outcome, self._override_reason(entry)).inc()

    def feedback_set_apart(self, reason: str, count: int) -> None:
        """Entries of a feedback post not counted as feedback (:data:`FEEDBACK_SET_APART`)."""
        if not self._paused and count > 0 and reason in FEEDBACK_SET_APART:
            self._child(self._feedback_apart, reason).inc(count)

    def card_suppressed(self, rule: str, reason: str) -> None:
        """A card not shown (snoozed, shadow mode, shown already in this ordering session)."""
        if not self._paused:
            self._child(self._suppressed, rule if rule in RULE_IDS else OTHER,
                        reason if reason in SUPPRESSION_REASONS else OTHER).inc()

    def error(self, status: int) -> None:
        if not self._paused:
            self._child(self._errors, self._status(status)).inc()

    # -- exposition -----------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition: summed over every worker's files in multiprocess mode."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)

    #: the classic text format, which every Prometheus version reads (our names are plain ASCII)
    content_type = "text/plain; version=0.0.4; charset=utf-8"


_INDICATORS = frozenset(i.value for i in Indicator)
