"""rules.toml and its typed configuration: parsing, validation and site overlays."""

from __future__ import annotations

import copy
import json
import tomllib
from datetime import timedelta
from typing import Any

import pytest

from assessment.config import (
    RULE_IDS,
    Quantity,
    RuleConfigError,
    parse_rule_config,
    validate_rule_config,
)
from assessment.findings import Indicator
from fhir_mapping.overlay import merge_overlay
from tests.unit.test_rules_common import RAW_CONFIG, REPO

ACTION_KEYS = tuple(tomllib.loads((REPO / "knowledge" / "actions.toml").read_text("utf-8"))["actions"])
VALUESET_URLS = {
    json.loads(path.read_text("utf-8"))["url"] for path in (REPO / "knowledge" / "valuesets").glob("*.json")
}


def broken(path: str, value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    """A deep copy of the shipped config with the dotted ``path`` (split on '/') changed."""
    data = copy.deepcopy(RAW_CONFIG)
    *parents, last = path.split("/")
    target = data
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return data


def test_shipped_rules_toml_parses_and_validates_against_the_real_action_keys() -> None:
    assert validate_rule_config(RAW_CONFIG, action_keys=ACTION_KEYS, valueset_urls=VALUESET_URLS) == []
    config = parse_rule_config(RAW_CONFIG)
    assert set(config.rules) == set(RULE_IDS)
    assert config.rule("mscc-red-flags").indicator is Indicator.CRITICAL
    assert config.rule("gcsf-bone-pain").indicators["indicator_severe"] is Indicator.WARNING
    assert config.context.gcsf.long_acting_window == timedelta(days=7)
    assert config.context.nsaid.platelets_below == 50
    assert config.context.quantities["nsaid.egfr_below"] == Quantity(30, "mL/min/{1.73_m2}")
    assert config.rule("progressive-back-pain").quantity("rise_points") == Quantity(2, "{score}")


def test_shipped_rules_cite_the_agreed_sources() -> None:
    urls = {r.citation.url for r in parse_rule_config(RAW_CONFIG).rules.values()}
    urls |= {c.url for r in parse_rule_config(RAW_CONFIG).rules.values() for c in r.references}
    assert {"https://www.nice.org.uk/guidance/ng234", "https://www.nice.org.uk/guidance/qs56",
            "https://pubmed.ncbi.nlm.nih.gov/24041627/", "https://pubmed.ncbi.nlm.nih.gov/26169616/"} <= urls


def test_shipped_summaries_are_short_single_sentences() -> None:
    for rule in parse_rule_config(RAW_CONFIG).rules.values():
        assert len(rule.card.summary) < 120
        assert "What to tell the patient" in rule.card.detail


@pytest.mark.parametrize(("path", "value", "delete", "message"), [
    ("rules/mscc-red-flags/citation", None, True, "rules.mscc-red-flags.citation: missing citation"),
    ("rules/gcsf-bone-pain/citation/url", None, True, "rules.gcsf-bone-pain.citation.url: must be a non-empty string"),
    ("rules/gcsf-bone-pain/citation/title", "", False, "rules.gcsf-bone-pain.citation.title"),
    ("context/back_pain_lookback", {"value": 60}, False, "context.back_pain_lookback: missing unit"),
    ("context/back_pain_lookback", {"value": 60, "unit": "wk"}, False, "unit 'wk' is not one of"),
    ("context/nsaid/platelets_below", {"value": 50, "unit": "d"}, False, "does not fit here"),
    ("context/gcsf/daily_tail", None, True, "context.gcsf.daily_tail: missing quantity"),
    ("rules/progressive-back-pain/rise_points", {"value": "2", "unit": "{score}"}, False, "value must be a number"),
    ("rules/progressive-back-pain/version", "1.0", False, "must be a semantic version"),
    ("version", "v1", False, "version: must be a semantic version"),
    ("rules/mscc-red-flags/indicator", "urgent", False, "rules.mscc-red-flags.indicator: must be one of"),
    ("rules/mscc-red-flags/card/summary", "x" * 120, False, "is 120 characters"),
    ("rules/mscc-red-flags/card/summary", "Cord compression {red flag}", False, "malformed placeholder"),
    ("rules/mscc-red-flags/card/summary", "Cord compression {gcsf}", False, "not a variable this rule sets"),
    ("rules/mscc-red-flags/card/detail", "Unbalanced { brace", False, "malformed placeholder"),
    ("rules/nsaid-caution-post-chemo", None, True, "rules.nsaid-caution-post-chemo: missing rule table"),
    ("rules/made-up-rule", {"version": "1.0.0"}, False, "unknown rule id"),
    ("texts/nsaid_advice_safe", "Use {nsaid}", False, "must not contain braces"),
    ("texts/score_not_recorded", None, True, "texts.score_not_recorded: missing text"),
    ("rules/gcsf-bone-pain/enabled", "yes", False, "must be true or false"),
])
def test_problems_are_reported(path: str, value: Any, delete: bool, message: str) -> None:
    data = broken(path, value, delete=delete)
    problems = validate_rule_config(data)
    assert any(message in problem for problem in problems), problems
    with pytest.raises(RuleConfigError) as caught:
        parse_rule_config(data)
    assert caught.value.problems == problems


def test_every_problem_is_listed_at_once() -> None:
    data = broken("rules/mscc-red-flags/citation", delete=True)
    data["context"]["red_flag_lookback"] = {"value": 14}
    data["rules"]["gcsf-bone-pain"]["version"] = "one"
    with pytest.raises(RuleConfigError) as caught:
        parse_rule_config(data)
    assert len(caught.value.problems) == 3
    assert "rules.gcsf-bone-pain.version" in str(caught.value)


def test_unknown_action_and_value_set_are_reported_when_the_caller_knows_them() -> None:
    data = broken("rules/gcsf-bone-pain/actions", ["paracetamol", "ibuprofen"])
    data["rules"]["mscc-red-flags"]["valuesets"] = ["http://example.org/ValueSet/none"]
    assert validate_rule_config(data) == []  # nothing to check against
    problems = validate_rule_config(data, action_keys=ACTION_KEYS, valueset_urls=VALUESET_URLS)
    assert problems == [
        "rules.mscc-red-flags.valuesets: unknown value set 'http://example.org/ValueSet/none'",
        "rules.gcsf-bone-pain.actions: unknown action 'ibuprofen'",
    ]


def test_a_non_mapping_section_is_reported_not_raised() -> None:
    assert any("rules: must be a table" in p for p in validate_rule_config({**RAW_CONFIG, "rules": []}))
    assert "context: missing table" in validate_rule_config({k: v for k, v in RAW_CONFIG.items() if k != "context"})


# -- overlays ------------------------------------------------------------------------------


def test_overlay_merges_tables_and_replaces_values_and_arrays() -> None:
    overlay = {
        "context": {"gcsf": {"long_acting_window": {"value": 10, "unit": "d"}}},
        "rules": {"gcsf-bone-pain": {"actions": ["paracetamol"], "card": {"summary": "Site text."}}},
        "texts": {"extra": "kept"},
    }
    before = copy.deepcopy(RAW_CONFIG)
    merged = merge_overlay(RAW_CONFIG, overlay)
    assert RAW_CONFIG == before  # inputs untouched
    assert merged["context"]["gcsf"]["long_acting_window"] == {"value": 10, "unit": "d"}
    assert merged["context"]["gcsf"]["daily_tail"] == RAW_CONFIG["context"]["gcsf"]["daily_tail"]
    assert merged["rules"]["gcsf-bone-pain"]["actions"] == ["paracetamol"]
    assert merged["rules"]["gcsf-bone-pain"]["card"]["detail"] == RAW_CONFIG["rules"]["gcsf-bone-pain"]["card"]["detail"]
    assert merged["texts"]["extra"] == "kept"
    config = parse_rule_config(merged)
    assert config.context.gcsf.long_acting_window == timedelta(days=10)
    assert config.rule("gcsf-bone-pain").card.summary == "Site text."
    merged["rules"]["gcsf-bone-pain"]["actions"].append("loratadine")
    assert overlay["rules"]["gcsf-bone-pain"]["actions"] == ["paracetamol"]


def test_overlay_that_breaks_a_unit_is_caught_after_merging() -> None:
    merged = merge_overlay(RAW_CONFIG, {"context": {"imaging_lookback": {"value": 30, "unit": "days"}}})
    with pytest.raises(RuleConfigError, match="context.imaging_lookback"):
        parse_rule_config(merged)


@pytest.mark.parametrize(("quantity", "delta"), [(Quantity(7, "d"), timedelta(days=7)), (Quantity(24, "h"), timedelta(days=1))])
def test_durations_convert_to_timedelta(quantity: Quantity, delta: timedelta) -> None:
    assert quantity.as_timedelta() == delta


def test_non_durations_do_not_convert() -> None:
    with pytest.raises(ValueError):
        Quantity(50, "10*9/L").as_timedelta()
