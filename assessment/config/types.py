"""The typed rule configuration: frozen dataclasses built from ``rules.toml``.

:class:`RuleConfig` holds the knowledge version, the shared :class:`ContextSettings`, the
verbatim texts and one :class:`RuleSettings` per rule. Instances come from
:func:`assessment.config.parser.parse_rule_config` (or are built directly in tests);
:mod:`assessment.config` re-exports the ones the rest of the service uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from assessment.findings import Citation, Indicator

__all__ = [
    "CardText",
    "CkdEpiConstants",
    "ContextSettings",
    "GcsfWindowSettings",
    "NsaidSafetySettings",
    "Quantity",
    "RuleConfig",
    "RuleSettings",
]


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number with its UCUM unit, e.g. ``Quantity(7, "d")`` or ``Quantity(50, "10*9/L")``."""

    value: float
    unit: str

    def as_timedelta(self) -> timedelta:
        """Return this duration as a :class:`timedelta` (units ``d`` or ``h`` only)."""
        if self.unit == "d":
            return timedelta(days=self.value)
        if self.unit == "h":
            return timedelta(hours=self.value)
        raise ValueError(f"{self.value} {self.unit} is not a duration")

    def __str__(self) -> str:
        number = f"{self.value:g}"
        return f"{number} {self.unit}"


@dataclass(frozen=True, slots=True)
class CardText:
    """A rule's card texts: one-sentence ``summary`` and GitHub-flavoured Markdown ``detail``."""

    summary: str
    detail: str


@dataclass(frozen=True)
class RuleSettings:
    """Everything one rule reads from configuration."""

    rule_id: str
    version: str
    enabled: bool
    indicator: Indicator
    citation: Citation
    card: CardText
    actions: tuple[str, ...]
    title: str = ""  #: short human name of the rule (card source topic)
    valuesets: tuple[str, ...] = ()
    references: tuple[Citation, ...] = ()
    quantities: Mapping[str, Quantity] = field(default_factory=lambda: MappingProxyType({}))
    indicators: Mapping[str, Indicator] = field(default_factory=lambda: MappingProxyType({}))
    #: shadow mode: the rule runs and its cards are audited and counted, never returned
    shadow: bool = False

    @property
    def critical(self) -> bool:
        """True when any card of the rule can be ``critical`` (its indicator or an extra one)."""
        return Indicator.CRITICAL in (self.indicator, *self.indicators.values())

    def quantity(self, name: str) -> Quantity:
        """Return the rule's quantity ``name`` (parse guarantees the ones the rule needs)."""
        return self.quantities[name]

    def duration(self, name: str) -> timedelta:
        """Return the rule's time quantity ``name`` as a :class:`timedelta`."""
        return self.quantities[name].as_timedelta()


@dataclass(frozen=True, slots=True)
class GcsfWindowSettings:
    """How long after a G-CSF dose back pain is attributed to it."""

    long_acting_window: timedelta  #: [dose, dose + this]
    on_body_injector_delay: timedelta  #: added for on-body injector kits
    daily_tail: timedelta  #: daily course: [first dose, last dose + this]
    daily_course_gap: timedelta  #: a longer gap between daily doses starts a new course
    #: a long-acting order this close to an administration/statement of long-acting G-CSF is
    #: the same dose recorded twice (the order and what was given), not a second cycle
    same_dose_within: timedelta = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class CkdEpiConstants:
    """Constants of the race-free CKD-EPI 2021 creatinine equation (``assessment.egfr``)."""

    multiplier: float  #: 142
    beta: float  #: exponent of max(Scr/κ, 1): −1.200
    age_base: float  #: 0.9938 (raised to the age in years)
    female_factor: float  #: 1.012
    kappa_female: float  #: 0.7 mg/dL
    kappa_male: float  #: 0.9 mg/dL
    alpha_female: float  #: −0.241
    alpha_male: float  #: −0.302
    citation: str = ""


@dataclass(frozen=True, slots=True)
class NsaidSafetySettings:
    """R4: when NSAID advice is suppressed."""

    platelets_below: float  #: 10*9/L; a latest count below this is unsafe
    egfr_below: float  #: mL/min/{1.73_m2}; a latest eGFR below this is unsafe
    lab_lookback: timedelta
    anticoagulant_lookback: timedelta
    #: eGFR from creatinine when no eGFR is recorded in the lookback (None: not computed)
    ckd_epi: CkdEpiConstants | None = None


@dataclass(frozen=True)
class ContextSettings:
    """Settings shared by several rules (oncology context, back pain, windows, NSAID safety)."""

    active_statuses: frozenset[str]
    present_statuses: frozenset[str]
    excluded_statuses: frozenset[str]
    chemotherapy_lookback: timedelta
    back_pain_lookback: timedelta
    red_flag_lookback: timedelta
    imaging_lookback: timedelta
    severe_score: float
    gcsf: GcsfWindowSettings
    nsaid: NsaidSafetySettings
    quantities: Mapping[str, Quantity]  #: every context quantity with its unit, for display


@dataclass(frozen=True)
class RuleConfig:
    """The whole parsed ``rules.toml``."""

    version: str  #: knowledge version
    context: ContextSettings
    texts: Mapping[str, str]
    rules: Mapping[str, RuleSettings]
    #: short stand-ins for summary variables whose value is too long for the summary
    summary_fallbacks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def rule(self, rule_id: str) -> RuleSettings:
        """Return the settings of ``rule_id``."""
        return self.rules[rule_id]
