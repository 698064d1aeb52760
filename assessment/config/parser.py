"""Build and check the typed rule configuration from the parsed ``rules.toml`` mapping.

:func:`parse_rule_config` turns the mapping into a frozen
:class:`~assessment.config.types.RuleConfig` or raises :class:`RuleConfigError` listing every
problem; :func:`validate_rule_config` returns the problems instead, and can also check
references to value sets and card actions that live in other knowledge files. Never touches
files (a site overlay is merged by the caller, :func:`fhir_mapping.overlay.merge_overlay`).
:mod:`assessment.config` re-exports every public name here.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from assessment.config.schema import (
    ACTION_VARIABLES,
    ALLOWED_UNITS,
    CITATION_LABEL_MAX,
    CONTEXT_QUANTITIES,
    CONTEXT_STATUS_LISTS,
    EXTRA_INDICATORS,
    GCSF_QUANTITIES,
    NSAID_QUANTITIES,
    RULE_IDS,
    RULE_QUANTITIES,
    RULE_VARIABLES,
    SUMMARY_WARN_CHARS,
    TEXT_KEYS,
)
from assessment.config.text import CardTextChecks, number_placeholders
from assessment.config.types import (
    CardText,
    ContextSettings,
    GcsfWindowSettings,
    NsaidSafetySettings,
    Quantity,
    RuleConfig,
    RuleSettings,
)
from assessment.findings import Citation, Indicator

__all__ = [
    "RuleConfigError",
    "parse_rule_config",
    "validate_rule_config",
]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.-]+)?$")
_PLACEHOLDER = re.compile(r"^[a-z][a-z0-9_]*$")


class RuleConfigError(ValueError):
    """The rule configuration is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid rule configuration:\n- " + "\n- ".join(self.problems))


def parse_rule_config(
    data: Mapping[str, Any], *, action_windows: Mapping[str, Quantity] | None = None
) -> RuleConfig:
    """Build a :class:`RuleConfig` from parsed TOML.

    :raises RuleConfigError: listing every problem found (structure, units, citations,
        versions, card-text placeholders and lengths).
    """
    parser = _Parser(action_windows)
    config = parser.parse(data)
    if parser.problems or config is None:
        raise RuleConfigError(parser.problems)
    return config


def validate_rule_config(
    data: Mapping[str, Any],
    *,
    valueset_urls: Collection[str] = (),
    action_keys: Collection[str] = (),
    action_windows: Mapping[str, Quantity] | None = None,
) -> list[str]:
    """Return every problem with ``data`` (empty when it is usable).

    Besides what :func:`parse_rule_config` checks, every ``valuesets`` URL a rule lists must be
    in ``valueset_urls`` and every action key in ``action_keys``. An empty collection means
    "not known to the caller": that cross-check is skipped.
    """
    parser = _Parser(action_windows)
    parser.parse(data)
    problems = list(parser.problems)
    rules = data.get("rules")
    if not isinstance(rules, Mapping):
        return problems
    for rule_id, table in rules.items():
        if not isinstance(table, Mapping):
            continue
        if valueset_urls:
            for url in _string_list(table.get("valuesets", [])):
                if url not in valueset_urls:
                    problems.append(f"rules.{rule_id}.valuesets: unknown value set {url!r}")
        if action_keys:
            for key in _string_list(table.get("actions", [])):
                if key not in action_keys:
                    problems.append(f"rules.{rule_id}.actions: unknown action {key!r}")
    return problems


def _string_list(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


class _Parser(CardTextChecks):
    """Collects every problem while building the typed configuration."""

    def __init__(self, action_windows: Mapping[str, Quantity] | None = None) -> None:
        self.problems: list[str] = []
        #: action key -> its configured ``within`` (actions.toml): a rule's card text states
        #: its first such action's deadline as {action_within_hours} / {action_within_days}
        self.action_windows: Mapping[str, Quantity] = action_windows or {}
        #: placeholder -> (displayed value, config key, literal check) of configured numbers
        self.numbers: dict[str, tuple[str, str, bool]] = {}
        self.fallbacks: dict[str, str] = {}
        self.parsed_texts: dict[str, str] = {}

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    # -- top level ---------------------------------------------------------------------------

    def parse(self, data: Mapping[str, Any]) -> RuleConfig | None:
        version = self.semver(data.get("version"), "version")
        context = self.context(self.table(data, "context", "context"))
        self.fallbacks = self.summary_fallbacks(data.get("summary_fallbacks", {}))
        texts = self.texts(self.table(data, "texts", "texts"))
        self.parsed_texts = texts
        rules_table = self.table(data, "rules", "rules")
        rules: dict[str, RuleSettings] = {}
        for rule_id in RULE_IDS:
            if rule_id not in rules_table:
                self.problem(f"rules.{rule_id}", "missing rule table")
                continue
            settings = self.rule(rule_id, rules_table[rule_id])
            if settings is not None:
                rules[rule_id] = settings
        for rule_id in rules_table:
            if rule_id not in RULE_IDS:
                self.problem(f"rules.{rule_id}", "unknown rule id (the engine has no such rule)")
        if self.problems or context is None or version is None:
            return None
        return RuleConfig(
            version=version,
            context=context,
            texts=MappingProxyType(texts),
            rules=MappingProxyType(rules),
            summary_fallbacks=MappingProxyType(dict(self.fallbacks)),
        )

    # -- building blocks ---------------------------------------------------------------------

    def table(self, data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = data.get(key)
        if isinstance(value, Mapping):
            return value
        self.problem(where, "missing table" if value is None else "must be a table")
        return {}

    def semver(self, value: Any, where: str) -> str | None:
        if not isinstance(value, str) or not _SEMVER.match(value):
            self.problem(where, f"must be a semantic version like '1.0.0', got {value!r}")
            return None
        return value

    def string(self, data: Mapping[str, Any], key: str, where: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{where}.{key}", "must be a non-empty string")
            return ""
        return value

    def quantity(
        self, data: Mapping[str, Any], key: str, units: frozenset[str], where: str
    ) -> Quantity | None:
        where = f"{where}.{key}"
        value = data.get(key)
        if not isinstance(value, Mapping):
            self.problem(where, "missing quantity { value = ..., unit = ... }")
            return None
        number, unit = value.get("value"), value.get("unit")
        ok = True
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            self.problem(where, f"value must be a number, got {number!r}")
            ok = False
        elif number < 0:
            self.problem(where, f"value must not be negative, got {number}")
            ok = False
        if unit is None:
            self.problem(where, "missing unit")
            ok = False
        elif unit not in ALLOWED_UNITS:
            self.problem(where, f"unit {unit!r} is not one of {sorted(ALLOWED_UNITS)}")
            ok = False
        elif unit not in units:
            self.problem(where, f"unit {unit!r} does not fit here; expected one of {sorted(units)}")
            ok = False
        if ok and isinstance(number, (int, float)) and isinstance(unit, str):  # (ok implies both)
            return Quantity(float(number), unit)
        return None

    def quantities(
        self, data: Mapping[str, Any], spec: Mapping[str, frozenset[str]], where: str
    ) -> dict[str, Quantity]:
        found = {key: self.quantity(data, key, units, where) for key, units in spec.items()}
        return {key: value for key, value in found.items() if value is not None}

    def statuses(self, data: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(f"{where}.{key}", "must be a list of status codes")
            return frozenset()
        return frozenset(value)

    def citation(self, value: Any, where: str) -> Citation | None:
        if not isinstance(value, Mapping):
            self.problem(where, "missing citation { label, title, url, recommendation, grade }")
            return None
        label = self.string(value, "label", where)
        if len(label) > CITATION_LABEL_MAX:
            self.problem(
                f"{where}.label",
                f"is {len(label)} characters; card source and link labels are never cut, keep "
                f"it to {CITATION_LABEL_MAX} (e.g. 'NICE QS56')",
            )
        title = self.string(value, "title", where)
        url = self.string(value, "url", where)
        if url and not url.startswith(("https://", "http://")):
            self.problem(f"{where}.url", f"must be an http(s) URL, got {url!r}")
        return Citation(
            title=title,
            url=url,
            recommendation=str(value.get("recommendation", "")),
            grade=str(value.get("grade", "")),
            label=label,
        )

    def indicator(self, value: Any, where: str) -> Indicator | None:
        try:
            return Indicator(value)
        except ValueError:
            allowed = [i.value for i in Indicator]
            self.problem(where, f"must be one of {allowed}, got {value!r}")
            return None

    def template(self, text: str, allowed: frozenset[str], where: str) -> None:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
        except ValueError as exc:
            self.problem(where, f"malformed placeholder ({exc})")
            return
        for name in fields:
            if not _PLACEHOLDER.match(name):
                self.problem(where, f"malformed placeholder {{{name}}}: use {{lower_snake_case}}")
            elif name not in allowed:
                self.problem(where, f"placeholder {{{name}}} is not a variable this rule sets")

    # -- sections ----------------------------------------------------------------------------

    def context(self, data: Mapping[str, Any]) -> ContextSettings | None:
        where = "context"
        found = self.quantities(data, CONTEXT_QUANTITIES, where)
        gcsf_data = self.table(data, "gcsf", "context.gcsf")
        gcsf = self.quantities(gcsf_data, GCSF_QUANTITIES, "context.gcsf")
        nsaid_data = self.table(data, "nsaid", "context.nsaid")
        nsaid = self.quantities(nsaid_data, NSAID_QUANTITIES, "context.nsaid")
        statuses = {key: self.statuses(data, key, where) for key in CONTEXT_STATUS_LISTS}
        every = dict(found)
        every.update({f"gcsf.{k}": v for k, v in gcsf.items()})
        every.update({f"nsaid.{k}": v for k, v in nsaid.items()})
        for key, quantity in every.items():
            self.register_number(f"context.{key}", quantity)
        complete = (
            len(found) == len(CONTEXT_QUANTITIES)
            and len(gcsf) == len(GCSF_QUANTITIES)
            and len(nsaid) == len(NSAID_QUANTITIES)
        )
        if not complete:
            return None
        return ContextSettings(
            active_statuses=statuses["active_statuses"],
            present_statuses=statuses["present_statuses"],
            excluded_statuses=statuses["excluded_statuses"],
            chemotherapy_lookback=found["chemotherapy_lookback"].as_timedelta(),
            back_pain_lookback=found["back_pain_lookback"].as_timedelta(),
            red_flag_lookback=found["red_flag_lookback"].as_timedelta(),
            imaging_lookback=found["imaging_lookback"].as_timedelta(),
            severe_score=found["severe_score"].value,
            gcsf=GcsfWindowSettings(**{k: v.as_timedelta() for k, v in gcsf.items()}),
            nsaid=NsaidSafetySettings(
                platelets_below=nsaid["platelets_below"].value,
                egfr_below=nsaid["egfr_below"].value,
                lab_lookback=nsaid["lab_lookback"].as_timedelta(),
                anticoagulant_lookback=nsaid["anticoagulant_lookback"].as_timedelta(),
                ckd_epi=self.ckd_epi(nsaid_data.get("ckd_epi_2021")),
            ),
            quantities=MappingProxyType(every),
        )

    def texts(self, data: Mapping[str, Any]) -> dict[str, str]:
        texts: dict[str, str] = {}
        for key in TEXT_KEYS:
            value = data.get(key)
            if not isinstance(value, str):
                self.problem(f"texts.{key}", "missing text")
                continue
            value = self.fill_numbers(value, self.numbers, f"texts.{key}")
            if "{" in value or "}" in value:
                self.problem(
                    f"texts.{key}",
                    "is inserted verbatim: it must not contain braces other than configured "
                    "numbers ({platelets_below}, {lab_lookback_days} ...)",
                )
            texts[key] = value
        return texts

    def rule(self, rule_id: str, data: Any) -> RuleSettings | None:
        where = f"rules.{rule_id}"
        if not isinstance(data, Mapping):
            self.problem(where, "must be a table")
            return None
        before = len(self.problems)
        version = self.semver(data.get("version"), f"{where}.version")
        title = data.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 80:
            self.problem(f"{where}.title", "must be a short name (1-80 characters)")
            title = ""
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(f"{where}.enabled", "must be true or false")
        shadow = data.get("shadow", False)
        if not isinstance(shadow, bool):
            self.problem(f"{where}.shadow", "must be true or false")
        indicator = self.indicator(data.get("indicator"), f"{where}.indicator")
        indicators = {
            key: self.indicator(data.get(key), f"{where}.{key}")
            for key in EXTRA_INDICATORS.get(rule_id, ())
        }
        citation = self.citation(data.get("citation"), f"{where}.citation")
        references = data.get("references", [])
        if not isinstance(references, list):
            self.problem(f"{where}.references", "must be an array of citations")
            references = []
        cited = [self.citation(ref, f"{where}.references[{i}]") for i, ref in enumerate(references)]
        actions = data.get("actions")
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            self.problem(f"{where}.actions", "must be a list of action keys")
            actions = []
        valuesets = data.get("valuesets", [])
        if not isinstance(valuesets, list) or not all(isinstance(v, str) for v in valuesets):
            self.problem(f"{where}.valuesets", "must be a list of ValueSet URLs")
            valuesets = []
        quantities = self.quantities(data, RULE_QUANTITIES[rule_id], where)
        numbers = dict(self.numbers)
        for key, quantity in quantities.items():
            numbers.update(number_placeholders(f"{where}.{key}", key, quantity))
        window = next((k for k in actions if k in self.action_windows), None)
        if window is not None:
            numbers.update(number_placeholders(f"actions.{window}.within", "action_within", self.action_windows[window]))
        card = self.card(rule_id, data.get("card"), f"{where}.card", numbers)
        if len(self.problems) > before or version is None or indicator is None or citation is None or card is None:
            return None
        return RuleSettings(
            rule_id=rule_id,
            version=version,
            enabled=enabled,
            shadow=shadow,
            indicator=indicator,
            citation=citation,
            card=card,
            actions=tuple(actions),
            title=title,
            valuesets=tuple(valuesets),
            references=tuple(c for c in cited if c is not None),
            quantities=MappingProxyType(quantities),
            indicators=MappingProxyType({k: v for k, v in indicators.items() if v is not None}),
        )

    def card(
        self, rule_id: str, data: Any, where: str, numbers: Mapping[str, tuple[str, str, bool]]
    ) -> CardText | None:
        if not isinstance(data, Mapping):
            self.problem(where, "missing card table with summary and detail")
            return None
        summary = self.fill_numbers(self.string(data, "summary", where), numbers, f"{where}.summary")
        detail = self.fill_numbers(self.string(data, "detail", where), numbers, f"{where}.detail")
        allowed = RULE_VARIABLES[rule_id] | ACTION_VARIABLES
        if summary:
            self.summary_fits(summary, allowed, f"{where}.summary")
            if "\n" in summary:
                self.problem(f"{where}.summary", "must be one line")
            if len(summary) >= SUMMARY_WARN_CHARS:
                self.problem(
                    f"{where}.summary",
                    f"is {len(summary)} characters before substitution; keep it under "
                    f"{SUMMARY_WARN_CHARS} (cards cap at 139 after substitution)",
                )
            self.template(summary, allowed, f"{where}.summary")
        if detail:
            self.template(detail, allowed, f"{where}.detail")
        return CardText(summary=summary, detail=detail)
