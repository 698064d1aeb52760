"""The detail view's data: re-read the patient's record with the app's token, assess it.

The queries are the patient-view service's prefetch templates (handed in by the composition
root), so the view reads what the hook reads and runs the same assessment: the findings on the
page are the findings on the cards. Reads run in parallel through
:meth:`fhir_mapping.client.FhirClient.fetch_many` (allow-listed to the launch's ``iss``,
bounded in time and size, no redirects). Types the token's granted scope does not cover are not
read; the page says so.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime

from assessment.differential import Differential, DifferentialConfig, build_differential
from assessment.engine import assess
from assessment.findings import Finding
from fhir_mapping.client import FhirClient
from fhir_mapping.extract import extract_record
from fhir_mapping.knowledge import Knowledge
from smart_launch.app_context import AppContext, HandleCheck
from smart_launch.config import SmartConfig
from smart_launch.session_store import ViewSession
from smart_launch.timeline import Timeline, build_timeline
from smart_launch.view_text import ViewText

_PATIENT_TOKEN = re.compile(r"\{\{\s*context\.patientId\s*\}\}")
_ANY_TOKEN = re.compile(r"\{\{[^{}]*\}\}")
_SCOPE = re.compile(r"^(patient|user)/([A-Za-z*]+)\.(read|\*|c?r?u?d?s?)(\?.*)?$")


class PatientMissing(Exception):
    """The token response named no patient: the view cannot be built."""


@dataclass(frozen=True)
class Banner:
    """The patient banner (shown when the EHR asks for ``need_patient_banner``)."""

    name: str
    birth_date: str
    gender: str


@dataclass(frozen=True)
class ShownFinding:
    """One finding as the page shows it."""

    finding: Finding
    title: str
    actions: tuple[str, ...]  #: labels of the card's suggestions
    from_card: bool  #: the card's own finding (else: also fired, in the differential)
    highlighted: bool  #: the finding the card link was opened from


@dataclass(frozen=True)
class DetailView:
    patient_id: str
    banner: Banner | None
    findings: tuple[ShownFinding, ...]
    notes: tuple[str, ...]  #: warnings the clinician must see (context ignored, scope narrowed)
    silence: tuple[str, ...]  #: the assessment's notes on why rules did not fire
    text: ViewText
    app_context: AppContext | None
    resources_read: int
    timeline: Timeline
    differential: Differential  #: the leaflet's causes with facts for and against
    differential_text: DifferentialConfig  #: the section's heading, intro and empty text
    card_rules: tuple[str, ...] = ()  #: the rule ids of the cards (the cause they stand for is marked)
    fhir_user: str | None = None  #: the signed-in user's fhirUser, from a validated id_token


def granted_types(scope: str) -> set[str] | None:
    """Resource types the granted scope lets us read (v1 ``.read``/``.*`` or v2 with ``r`` and
    ``s``); ``None`` means every type (``patient/*.rs`` and the like)."""
    types: set[str] = set()
    for item in scope.split():
        match = _SCOPE.match(item)
        if not match:
            continue
        _, rtype, perms, _ = match.groups()
        if perms in ("read", "*") or ("r" in perms and "s" in perms):
            if rtype == "*":
                return None
            types.add(rtype)
    return types


def query_type(query: str) -> str:
    return re.split(r"[/?]", query, maxsplit=1)[0]


class DetailViewBuilder:
    """Builds :class:`DetailView` for one launch session."""

    def __init__(
        self,
        *,
        knowledge: Knowledge,
        queries: t.Mapping[str, str],
        config: SmartConfig,
        text: ViewText,
        clock: t.Callable[[], datetime] = lambda: datetime.now(UTC),
        client_factory: t.Callable[..., FhirClient] = FhirClient,
    ) -> None:
        self.knowledge = knowledge
        self.queries = dict(queries)
        self.config = config
        self.text = text
        self.clock = clock
        self.client_factory = client_factory

    def resource_types(self) -> list[str]:
        """The types the view reads (for the scope it asks for)."""
        return sorted({query_type(q) for q in self.queries.values()})

    def build(self, session: ViewSession, handle: HandleCheck) -> DetailView:
        """Read, map, assess. :raises FhirAccessError: the FHIR server failed."""
        patient_id = session.patient
        if not patient_id:
            raise PatientMissing
        notes: list[str] = []
        if handle.note:
            notes.append(handle.note)
        allowed = granted_types(session.scope)
        queries = {}
        for key, template in self.queries.items():
            query = _PATIENT_TOKEN.sub(patient_id, template)
            if _ANY_TOKEN.search(query):
                continue  # a token the view cannot fill (none in the patient-view templates)
            if allowed is not None and query_type(query) not in allowed:
                notes.append(
                    f"The EHR did not grant read access to {query_type(query)}: this view may be "
                    "incomplete. Check the record in the EHR."
                )
                continue
            if "?" in query and "_count=" not in query and self.config.page_size:
                query += f"&_count={self.config.page_size}"
            queries[key] = query
        with self.client_factory(
            session.iss,
            allowed_servers=[session.iss],
            access_token=session.access_token,
            limits=self.config.fhir_limits,
        ) as client:
            results = client.fetch_many(
                queries,
                deadline_seconds=self.config.timeout_seconds * 2,
                max_workers=self.config.max_workers,
            )
        resources = list(_flatten(results.values()))
        knowledge = self.knowledge
        record = extract_record(
            resources, knowledge.valuesets, knowledge.matching, patient_id=patient_id
        )
        now = self.clock()
        assessment = assess(record, now=now, config=knowledge.rules, hook="patient-view")
        card_rules = {f.rule_id for f in assessment.findings}
        wanted = handle.context.rule if handle.context else None
        shown = []
        for finding in tuple(assessment.findings) + tuple(
            f for f in assessment.differential if f.rule_id not in card_rules
        ):
            rule = knowledge.rules.rules[finding.rule_id]
            shown.append(
                ShownFinding(
                    finding=finding,
                    title=rule.title or finding.rule_id,
                    actions=self._action_labels(finding),
                    from_card=finding.rule_id in card_rules,
                    highlighted=finding.rule_id == wanted,
                )
            )
        if handle.context and wanted not in {s.finding.rule_id for s in shown}:
            notes.append(
                f"The card was about {wanted}, which no longer fires on the current record."
            )
        banner = _banner(resources, patient_id) if session.need_patient_banner else None
        return DetailView(
            patient_id=patient_id,
            banner=banner,
            findings=tuple(shown),
            notes=tuple(notes),
            silence=tuple(assessment.notes),
            text=self.text,
            app_context=handle.context,
            resources_read=len(resources),
            timeline=build_timeline(record, knowledge.rules, now),
            differential=build_differential(record, now, knowledge.rules, knowledge.differential),
            differential_text=knowledge.differential,
            card_rules=tuple(sorted(card_rules)),
            fhir_user=session.fhir_user,
        )

    def _action_labels(self, finding: Finding) -> tuple[str, ...]:
        catalog = self.knowledge.actions.actions
        return tuple(catalog[key].label for key in finding.actions if key in catalog)


def _flatten(values: t.Iterable[t.Any]) -> t.Iterator[dict[str, t.Any]]:
    for value in values:
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            for entry in value.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and resource.get("resourceType") != "OperationOutcome":
                    yield resource
        else:
            yield value


def _banner(resources: t.Sequence[dict[str, t.Any]], patient_id: str) -> Banner:
    for resource in resources:
        if resource.get("resourceType") == "Patient" and resource.get("id") == patient_id:
            return Banner(
                name=_name(resource.get("name")),
                birth_date=str(resource.get("birthDate") or "unknown"),
                gender=str(resource.get("gender") or "unknown"),
            )
    return Banner(name="(patient record not readable)", birth_date="unknown", gender="unknown")


def _name(names: t.Any) -> str:
    if not isinstance(names, list):
        return "(no name on record)"
    for name in names:
        if not isinstance(name, dict):
            continue
        if isinstance(name.get("text"), str) and name["text"]:
            return name["text"]
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        full = f"{given} {family}".strip()
        if full:
            return full
    return "(no name on record)"
