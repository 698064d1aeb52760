"""What the rules conclude: findings with their evidence, arguments and recommended actions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Indicator(str, enum.Enum):
    """CDS Hooks card indicator, in increasing urgency."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Urgency rank: higher is more urgent."""
        return ("info", "warning", "critical").index(self.value)


@dataclass(frozen=True, slots=True)
class Reason:
    """One argument for or against a rule, with the FHIR reference it rests on (if any)."""

    text: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Citation:
    """The evidence a rule rests on (from rules.toml)."""

    title: str
    url: str
    recommendation: str = ""
    grade: str = ""
    label: str = ""  #: short label for the card's source and link (e.g. "NICE QS56")


@dataclass(frozen=True)
class Finding:
    """A rule that fired (or, in the differential, was considered).

    ``actions`` are keys of ``knowledge/actions.toml`` (suggestions the card offers, in
    order of preference). ``variables`` fill the ``{placeholders}`` of the rule's card texts.
    """

    rule_id: str
    rule_version: str
    indicator: Indicator
    evidence: tuple[str, ...]  #: FHIR refs (Type/id) that made the rule fire
    citation: Citation
    reasons_for: tuple[Reason, ...] = ()
    reasons_against: tuple[Reason, ...] = ()
    actions: tuple[str, ...] = ()
    nsaid_safe: bool = True  #: False when NSAID advice must be suppressed (R4)
    nsaid_concerns: tuple[Reason, ...] = ()  #: why NSAIDs are unsafe / need caution
    existing_imaging: tuple[str, ...] = ()  #: refs of spine imaging already ordered/done
    low_confidence: bool = False  #: some evidence matched by text only
    free_text: bool = False  #: ... of it uncoded (free text)
    coded_by_name: bool = False  #: ... of it coded, but recognised by name (code outside the value sets)
    draft_refs: tuple[str, ...] = ()  #: draft orders (Type/id) the card is about (delete suggestions)
    #: medication records coded only in systems this service cannot read (e.g. NDC), with no
    #: name: a reassuring card says it could not check them for G-CSF or chemotherapy
    unchecked_medications: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """The result of assessing one record: the cards to show and the whole differential."""

    findings: tuple[Finding, ...]  #: what becomes cards (patient-view: at most one triage card)
    differential: tuple[Finding, ...] = ()  #: every rule that fired, most urgent first
    notes: tuple[str, ...] = ()  #: e.g. "no oncology context": why nothing fired
