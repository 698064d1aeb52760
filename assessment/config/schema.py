"""What ``rules.toml`` must contain: rule ids, card-text variables, quantities and their units.

The parser (:mod:`assessment.config.parser`) checks a configuration against these tables;
:mod:`assessment.config` re-exports :data:`RULE_IDS`. Data about the *shape* of the file
only: the values themselves (windows, thresholds, citations, texts) live in ``knowledge/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "ALLOWED_UNITS",
    "CONTEXT_QUANTITIES",
    "CONTEXT_STATUS_LISTS",
    "COUNT_UNITS",
    "EGFR_UNITS",
    "EXTRA_INDICATORS",
    "GCSF_QUANTITIES",
    "NSAID_QUANTITIES",
    "PLATELET_UNITS",
    "RULE_IDS",
    "RULE_QUANTITIES",
    "RULE_VARIABLES",
    "SCORE_UNITS",
    "SUMMARY_WARN_CHARS",
    "ACTION_VARIABLES",
    "TEXT_KEYS",
    "TIME_UNITS",
    "config_placeholder",
]

TIME_UNITS = frozenset({"d", "h"})
SCORE_UNITS = frozenset({"{score}"})
COUNT_UNITS = frozenset({"{cycles}"})
PLATELET_UNITS = frozenset({"10*9/L"})
EGFR_UNITS = frozenset({"mL/min/{1.73_m2}"})
#: Every unit a threshold or window may carry (UCUM; ``{...}`` are UCUM annotations).
ALLOWED_UNITS = TIME_UNITS | SCORE_UNITS | COUNT_UNITS | PLATELET_UNITS | EGFR_UNITS

#: The rules the engine knows, in triage priority order first, then the order-hook rules.
RULE_IDS = (
    "mscc-red-flags",
    "progressive-back-pain",
    "gcsf-bone-pain",
    "back-pain-supportive-care",
    "gcsf-order-dose-review",
    "nsaid-caution-post-chemo",
)

_TRIAGE_VARIABLES = frozenset(
    {"onset_date", "days_since_onset", "latest_score", "nsaid_advice", "context", "analgesia",
     "analgesia_step"}
)
#: Card-text placeholders each rule always fills (``Finding.variables`` keys).
RULE_VARIABLES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "mscc-red-flags": _TRIAGE_VARIABLES | {"red_flag", "red_flag_date"},
        # analgesia_step: "Paracetamol first" / the step-up advice, by the latest score
        "progressive-back-pain": _TRIAGE_VARIABLES | {"features", "imaging_note"},
        "gcsf-bone-pain": _TRIAGE_VARIABLES
        | {"gcsf", "dose_date", "onset_day", "days_since_dose", "dose_verb"},
        "back-pain-supportive-care": _TRIAGE_VARIABLES,
        "gcsf-order-dose-review": frozenset(
            {"gcsf", "previous_gcsf", "previous_verb", "episode_date", "episode_count", "nsaid_advice"}
        ),
        "nsaid-caution-post-chemo": frozenset({"nsaid", "concerns", "concern_names"}),
    }
)

#: Rule-specific quantities (name -> allowed units) each rule table must carry.
RULE_QUANTITIES: Mapping[str, Mapping[str, frozenset[str]]] = {
    "mscc-red-flags": {},
    "progressive-back-pain": {
        "rise_window": TIME_UNITS,
        "rise_points": SCORE_UNITS,
        "persistence_after": TIME_UNITS,
        "persistence_score": SCORE_UNITS,
        "persistence_score_window": TIME_UNITS,
        "recurrence_cycles": COUNT_UNITS,
        "recurrence_lookback": TIME_UNITS,
    },
    "gcsf-bone-pain": {},
    "back-pain-supportive-care": {},
    "gcsf-order-dose-review": {"episode_lookback": TIME_UNITS},
    "nsaid-caution-post-chemo": {},
}
#: Extra indicator keys a rule table must carry besides ``indicator``.
EXTRA_INDICATORS: Mapping[str, tuple[str, ...]] = {"gcsf-bone-pain": ("indicator_severe",)}

CONTEXT_QUANTITIES: Mapping[str, frozenset[str]] = {
    "chemotherapy_lookback": TIME_UNITS,
    "back_pain_lookback": TIME_UNITS,
    "red_flag_lookback": TIME_UNITS,
    "imaging_lookback": TIME_UNITS,
    "severe_score": SCORE_UNITS,
}
GCSF_QUANTITIES: Mapping[str, frozenset[str]] = {
    "long_acting_window": TIME_UNITS,
    "on_body_injector_delay": TIME_UNITS,
    "daily_tail": TIME_UNITS,
    "daily_course_gap": TIME_UNITS,
    "same_dose_within": TIME_UNITS,
}
NSAID_QUANTITIES: Mapping[str, frozenset[str]] = {
    "platelets_below": PLATELET_UNITS,
    "egfr_below": EGFR_UNITS,
    "lab_lookback": TIME_UNITS,
    "anticoagulant_lookback": TIME_UNITS,
}
CONTEXT_STATUS_LISTS = ("active_statuses", "present_statuses", "excluded_statuses")
TEXT_KEYS = (
    "nsaid_advice_safe",
    "nsaid_advice_unchecked",
    "nsaid_advice_unsafe",
    "imaging_note_existing",
    "imaging_note_none",
    "score_not_recorded",
    "onset_not_recorded",
    "days_not_recorded",
    "analgesia_mild",
    "analgesia_severe",
    "analgesia_step_mild",
    "analgesia_step_severe",
    "concern_platelets",
    "concern_egfr",
    "concern_anticoagulant",
)

#: A summary template this long (before substitution) is flagged: CDS Hooks caps at < 140.
SUMMARY_WARN_CHARS = 120
#: Cards cap summaries at this length (the spec says "<140 characters").
SUMMARY_MAX_CHARS = 139
#: A summary variable longer than this is replaced by its ``[summary_fallbacks]`` text (the
#: full value stays in the detail), so every summary fits by construction.
SUMMARY_VARIABLE_MAX = 32
#: Summary variables the rules fill with short values of bounded length (dates, counts,
#: scores): counted at this length, no fallback needed.
SHORT_VARIABLE_CHARS: Mapping[str, int] = MappingProxyType(
    {
        "onset_day": 4,
        "days_since_onset": 5,
        "days_since_dose": 5,
        "episode_count": 3,
        "onset_date": 10,
        "red_flag_date": 18,
        "dose_date": 10,
        "episode_date": 10,
        "latest_score": 14,
        "action_within_hours": 4,
        "action_within_days": 4,
    }
)
#: Placeholders every rule's card text may use: the deadline of the rule's first action that has
#: one (actions.toml ``within``), filled when the knowledge is loaded (or, for a rule
#: configuration parsed without the actions, when the card is rendered).
ACTION_VARIABLES = frozenset({"action_within_hours", "action_within_days"})
#: Summary variables filled from [texts]: counted at the length of their longest text.
TEXT_VARIABLES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"analgesia_step": ("analgesia_step_mild", "analgesia_step_severe")}
)
#: Summary variables that join [texts] ("low platelets, low eGFR and an active
#: anticoagulant"): counted at the length of all of them joined.
JOINED_TEXT_VARIABLES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"concern_names": ("concern_platelets", "concern_egfr", "concern_anticoagulant")}
)
#: Citation labels (card source label, link label) are short by design: never cut.
CITATION_LABEL_MAX = 32


def config_placeholder(key: str, unit: str) -> str:
    """The card-text placeholder of a configured quantity: ``lab_lookback`` in days is
    ``lab_lookback_days``, in hours ``..._hours``; other units keep the key
    (``platelets_below``, ``severe_score``)."""
    suffix = {"d": "_days", "h": "_hours"}.get(unit, "")
    return f"{key}{suffix}"
