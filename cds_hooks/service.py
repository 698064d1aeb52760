"""One hook call from validated JSON to cards, without Flask (the CLI's replay uses it too).

Steps (ARCHITECTURE §3): validate the request, route on (id, hook), resolve prefetch with
FHIR fallback, map FHIR to facts, assess, render cards, write the audit trail. A card in shadow mode (every rule
with ``shadow``, or a rule whose settings say so) is rendered, audited and reported to the
observer as suppressed, but left out of the response; so is a card held back by a snooze or
as a repeat within an ordering session (:mod:`cds_hooks.suppression`).
"""

from __future__ import annotations

import logging
import time
import typing as t
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from assessment.engine import assess
from assessment.findings import Assessment
from cds_hooks.cards import CardLinks, render_cards
from cds_hooks.catalog import ServiceCatalog, ServiceDefinition
from cds_hooks.errors import InvalidRequest, PrefetchUnavailable, UnknownService
from cds_hooks.hook_request import HookRequest, parse_hook_request
from cds_hooks.ports import CardAuditLog, CardAuditRecord, SuppressionLookup
from cds_hooks.prefetch import FetchPolicy, ResolvedData, resolve_prefetch
from cds_hooks.suppression import SuppressionPolicy, suppression_reasons
from fhir_mapping.client import FhirClient
from fhir_mapping.extract import MalformedResource, extract_record
from fhir_mapping.knowledge import Knowledge

log = logging.getLogger("backpain_cds.service")


#: the stages of a hook call as metrics name them (``auth`` is measured by the HTTP layer)
STAGES = ("auth", "parse", "prefetch", "fetch", "mapping", "assessment", "render", "storage")
#: how a prefetch key was obtained: in the request, ``null`` in the request (nothing found),
#: fetched from fhirServer (absent, an OperationOutcome, or a Bundle's next pages), or not at all
PREFETCH_OUTCOMES = ("supplied", "null", "fetched", "failed")
#: HookOutcome.timings key -> metrics stage (``prefetch`` is split into prefetch and fetch)
_STAGE_OF = {"validate": "parse", "prefetch": "prefetch", "mapping": "mapping",
             "assessment": "assessment", "cards": "render", "audit": "storage"}


@dataclass(frozen=True)
class CallReport:
    """What one hook call did, for metrics: enums and durations only, never patient data."""

    service_id: str
    hook: str
    stages: t.Mapping[str, float]  #: seconds per stage of :data:`STAGES` the call went through
    cards: tuple[tuple[str, str], ...] = ()  #: (rule id, indicator) of each card returned
    prefetch: t.Mapping[str, str] = field(default_factory=dict)  #: key -> PREFETCH_OUTCOMES
    deadline_exceeded: bool = False
    #: (rule id, reason) of each card produced but not shown (snooze, shadow mode, duplicate)
    suppressed: tuple[tuple[str, str], ...] = ()


class CallObserver(t.Protocol):
    """Receives one report per hook call that got past parsing (whatever its outcome);
    the composition root turns them into metrics."""

    def call_finished(self, report: CallReport) -> None: ...


class _DeadlinePassed(Exception):
    """The call's time budget ran out between two stages."""


@dataclass
class HookOutcome:
    """Everything one call produced (the HTTP layer sends ``response``)."""

    request: HookRequest
    response: dict[str, t.Any]
    assessment: Assessment
    data: ResolvedData
    timings: dict[str, float] = field(default_factory=dict)
    #: (rule id, indicator) of each card returned, and rule id of each card held back in
    #: shadow mode (rendered and audited, not in ``response``)
    shown: tuple[tuple[str, str], ...] = ()
    shadowed: tuple[str, ...] = ()
    #: (rule id, reason) of each card held back by a suppression (``snooze``, ``duplicate``)
    suppressed: tuple[tuple[str, str], ...] = ()


class CdsService:
    """The CDS Hooks service: discovery and invocation."""

    def __init__(
        self,
        *,
        knowledge: Knowledge,
        catalog: ServiceCatalog,
        fetch_policy: FetchPolicy,
        audit: CardAuditLog | None = None,
        links: CardLinks = CardLinks(),
        observer: CallObserver | None = None,
        client_factory: t.Callable[..., FhirClient] = FhirClient,
        clock: t.Callable[[], datetime] = lambda: datetime.now(UTC),
        deadline_seconds: float | None = None,
        shadow: bool = False,
        suppressions: SuppressionLookup | None = None,
        suppression: SuppressionPolicy | None = None,
    ) -> None:
        self.knowledge = knowledge
        self.catalog = catalog
        self.fetch_policy = fetch_policy
        self.audit = audit
        self.links = links
        self.observer = observer
        self.client_factory = client_factory
        self.clock = clock
        #: overall time budget of one call; past it the answer is 200 with no cards
        self.deadline_seconds = deadline_seconds
        #: shadow mode for every rule (else per rule: ``RuleSettings.shadow``)
        self.shadow = shadow
        #: where snoozes and the cards of an ordering session are looked up, and the policy
        self.suppressions = suppressions
        self.suppression = suppression or SuppressionPolicy()

    def discovery(self) -> dict[str, t.Any]:
        """The discovery document."""
        return self.catalog.discovery()

    def check_service_id(self, service_id: str) -> None:
        """404 for an id no service has (before the body is even read)."""
        if not self.catalog.has_id(service_id):
            raise UnknownService(f"no CDS service with id {service_id!r}")

    def invoke(
        self, service_id: str, body: t.Any, *, now: datetime | None = None, decode_seconds: float = 0.0
    ) -> HookOutcome:
        """Run one hook call; raises the protocol errors of :mod:`cds_hooks.errors`.

        When the call's time budget (``deadline_seconds``) runs out, the answer is 200 with no
        cards: a late card is worse than none, as clients drop late answers anyway. Work is
        never left running: FHIR queries get at most the remaining time (their threads are
        bounded by it too), the mapping checks the deadline before each resource, the
        assessment before each rule, and every stage is checked when it ends.

        ``decode_seconds`` is the time the caller spent decoding the body (the ``parse`` stage
        of the report to the observer, with the validation here).
        """
        started = time.perf_counter()
        deadline = None if self.deadline_seconds is None else started + self.deadline_seconds
        timings: dict[str, float] = {}
        mark = started

        def lap(stage: str) -> None:
            nonlocal mark
            current = time.perf_counter()
            timings[stage] = current - mark
            mark = current
            if deadline is not None and current > deadline:
                raise _DeadlinePassed(stage)

        def checkpoint(stage: str) -> t.Callable[[], None] | None:
            """A cancellation point for a stage's inner loop (per resource, per rule)."""
            if deadline is None:
                return None
            clock = time.perf_counter

            def check() -> None:
                if clock() > deadline:
                    timings[stage] = clock() - mark
                    raise _DeadlinePassed(stage)

            return check

        self.check_service_id(service_id)
        request = parse_hook_request(body)
        service = self.catalog.resolve(service_id, request.hook)
        fetch = _FetchClock(self.client_factory)
        prefetch: dict[str, str] = {}
        cards: tuple[tuple[str, str], ...] = ()
        shadowed: tuple[tuple[str, str], ...] = ()
        too_late = False
        try:
            lap("validate")
            policy = self.fetch_policy
            if deadline is not None:
                remaining = max(deadline - time.perf_counter(), 0.001)
                if remaining < policy.overall_timeout_seconds:
                    policy = replace(policy, overall_timeout_seconds=remaining)
            try:
                data = resolve_prefetch(service, request, policy, client_factory=fetch.factory)
            except PrefetchUnavailable as exc:
                fetch.stop()
                timings["prefetch"] = time.perf_counter() - mark
                prefetch = prefetch_outcomes(service, request, None, failed=exc.fields)
                if deadline is not None and time.perf_counter() >= deadline - 0.01:
                    raise _DeadlinePassed("prefetch") from None
                raise
            fetch.stop()
            prefetch = prefetch_outcomes(service, request, data)
            lap("prefetch")
            outcome = self._evaluate(service_id, request, data, now, timings, lap, checkpoint)
            cards = outcome.shown
            shadowed = tuple((rule, "shadow") for rule in outcome.shadowed) + outcome.suppressed
            return outcome
        except _DeadlinePassed as passed:
            too_late = True
            return self._too_late(service_id, request, str(passed), timings)
        finally:
            if self.observer is not None:
                stages = _stages(timings, decode_seconds, fetch.seconds)
                self.observer.call_finished(
                    CallReport(service_id, request.hook, stages, cards, prefetch, too_late, shadowed)
                )

    def _evaluate(
        self,
        service_id: str,
        request: HookRequest,
        data: ResolvedData,
        now: datetime | None,
        timings: dict[str, float],
        lap: t.Callable[[str], None],
        checkpoint: t.Callable[[str], t.Callable[[], None] | None] = lambda stage: None,
    ) -> HookOutcome:
        knowledge = self.knowledge
        try:
            record = extract_record(
                data.iter_resources(),
                knowledge.valuesets,
                knowledge.matching,
                patient_id=request.patient_id,
                draft_orders=request.draft_orders,
                selections=request.selections,
                check=checkpoint("mapping"),
            )
        except MalformedResource as exc:
            # From the request: the caller's fault (400). Fetched from fhirServer: the data
            # cannot be used (412). Either way no partial answer is given.
            if data.fetched:
                raise PrefetchUnavailable(f"unusable FHIR data: {exc}") from None
            raise InvalidRequest(str(exc), field=f"resource {exc.ref}") from None
        lap("mapping")
        now = now or self.clock()
        assessment = assess(
            record, now=now, config=knowledge.rules, hook=request.hook, check=checkpoint("assessment")
        )
        lap("assessment")
        cards = render_cards(
            assessment, knowledge, patient_id=request.patient_id, now=now, links=self.links,
            hook_instance=request.hook_instance,
        )
        lap("cards")
        findings = assessment.findings
        shadow = [self.shadow or knowledge.rules.rule(f.rule_id).shadow for f in findings]
        held = suppression_reasons(
            findings, shadow, lookup=self.suppressions, policy=self.suppression,
            patient_id=request.patient_id, hook=request.hook, user_id=request.user_id,
            encounter_id=request.encounter_id, now=now,
        ) if cards else [None] * len(findings)
        if self.audit is not None and cards:
            audit_started = time.perf_counter()
            self.audit.record_cards(
                [
                    CardAuditRecord(
                        card_uuid=card["uuid"],
                        service_id=service_id,
                        hook=request.hook,
                        hook_instance=request.hook_instance,
                        rule_id=finding.rule_id,
                        rule_version=finding.rule_version,
                        indicator=finding.indicator.value,
                        patient_id=request.patient_id,
                        created_at=now,
                        shadow=hidden,
                        evidence=finding.evidence,
                        suppress_reason=reason,
                        user_id=request.user_id,
                        encounter_id=request.encounter_id,
                    )
                    for card, finding, hidden, reason in zip(cards, findings, shadow, held, strict=True)
                ]
            )
            timings["audit"] = time.perf_counter() - audit_started
        rows = list(zip(cards, findings, shadow, held, strict=True))
        shown = tuple((f.rule_id, f.indicator.value) for _, f, hidden, reason in rows if not hidden and not reason)
        shadowed = tuple(f.rule_id for _, f, hidden, _ in rows if hidden)
        suppressed = tuple((f.rule_id, reason) for _, f, hidden, reason in rows if reason and not hidden)
        log.info(
            "hook call answered",
            extra={
                "hookInstance": request.hook_instance,
                "service": service_id,
                "hook": request.hook,
                "cards": [rule for rule, _ in shown],
                "shadow": list(shadowed),
                "suppressed": [f"{rule}:{reason}" for rule, reason in suppressed],
                "fetched": list(data.fetched),
                "ms": round(sum(timings.values()) * 1000, 1),
            },
        )
        returned = [card for card, _, hidden, reason in rows if not hidden and not reason]
        return HookOutcome(request, {"cards": returned}, assessment, data, timings, shown, shadowed, suppressed)

    def _too_late(
        self, service_id: str, request: HookRequest, stage: str, timings: dict[str, float]
    ) -> HookOutcome:
        log.warning(
            "hook deadline passed; answering with no cards",
            extra={
                "hookInstance": request.hook_instance,
                "service": service_id,
                "hook": request.hook,
                "reason": f"deadline passed during {stage}",
                "ms": round(sum(timings.values()) * 1000, 1),
            },
        )
        note = f"deadline of {self.deadline_seconds} s passed during {stage}"
        empty = Assessment(findings=(), notes=(note,))
        return HookOutcome(request, {"cards": []}, empty, ResolvedData([], (), ()), timings)


class _FetchClock:
    """Times the FHIR fallback: from the client's creation to the end of prefetch resolution
    (nothing when no client was made: no fhirServer, or one not on the allow-list)."""

    def __init__(self, client_factory: t.Callable[..., FhirClient]) -> None:
        self._client_factory = client_factory
        self._started: float | None = None
        self.seconds: float | None = None  #: None when nothing was fetched

    def factory(self, *args: t.Any, **kwargs: t.Any) -> FhirClient:
        started = time.perf_counter()
        client = self._client_factory(*args, **kwargs)  # refuses a server not allow-listed
        self._started = started
        return client

    def stop(self) -> None:
        if self._started is not None:
            self.seconds = time.perf_counter() - self._started


def prefetch_outcomes(
    service: ServiceDefinition, request: HookRequest, data: ResolvedData | None,
    *, failed: t.Sequence[str] = (),
) -> dict[str, str]:
    """How each prefetch key of the service was obtained (:data:`PREFETCH_OUTCOMES`).

    ``failed`` names the keys that could not be had (``prefetch.<key>``, from a 412). A key
    the request could not fill (a template token without a value) is not listed.
    """
    lost = {f.partition(".")[2] for f in failed if f.startswith("prefetch.")}
    fetched = set(data.fetched) if data is not None else set()
    out = {}
    for key in service.prefetch:
        if key in lost:
            out[key] = "failed"
        elif key in fetched:
            out[key] = "fetched"
        elif key in request.prefetch:
            value = request.prefetch[key]
            if value is None:
                out[key] = "null"
            elif not (isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"):
                out[key] = "supplied"
    return out


def _stages(
    timings: t.Mapping[str, float], decode_seconds: float, fetch_seconds: float | None
) -> dict[str, float]:
    """HookOutcome.timings as metrics stages: parse includes the body's decoding, and the
    FHIR fallback is its own ``fetch`` stage rather than part of ``prefetch``."""
    stages: dict[str, float] = {}
    for key, seconds in timings.items():
        stage = _STAGE_OF.get(key)
        if stage is not None:
            stages[stage] = stages.get(stage, 0.0) + seconds
    if "parse" in stages:
        stages["parse"] += decode_seconds
    if fetch_seconds is not None:
        stages["fetch"] = fetch_seconds
        if "prefetch" in stages:
            stages["prefetch"] = max(stages["prefetch"] - fetch_seconds, 0.0)
    return stages
