"""The suppression decisions (cds_hooks.suppression) on hand-built findings, snoozes and
earlier cards: what counts as new evidence, urgency, critical cards, a failing look-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from assessment.findings import Citation, Finding, Indicator
from cds_hooks.ports import EarlierCard, Snooze
from cds_hooks.suppression import DUPLICATE, SNOOZE, SuppressionPolicy, repeated, snoozed, suppression_reasons

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CITE = Citation("t", "https://example.org")


def finding(rule: str = "gcsf-bone-pain", indicator: Indicator = Indicator.INFO, *evidence: str) -> Finding:
    return Finding(rule, "1.0.0", indicator, evidence or ("Condition/a", "MedicationAdministration/b"), CITE)


def snooze(rule: str = "gcsf-bone-pain", indicator: str = "info", *evidence: str) -> Snooze:
    return Snooze(rule, indicator, frozenset(evidence or ("Condition/a", "MedicationAdministration/b")),
                  NOW + timedelta(days=3))


@pytest.mark.parametrize(("card", "held"), [
    (finding(), True),
    (finding("gcsf-bone-pain", Indicator.INFO, "Condition/a"), True),  # less evidence: nothing new
    (finding("gcsf-bone-pain", Indicator.INFO, "Condition/a", "MedicationAdministration/b", "Observation/new"), False),
    (finding("gcsf-bone-pain", Indicator.WARNING), False),  # more urgent than the card overridden
    (finding("progressive-back-pain"), False),  # another rule
])
def test_a_snooze_covers_only_the_same_rule_no_new_evidence_no_more_urgent(card: Finding, held: bool) -> None:
    assert snoozed(card, [snooze()]) is held


def test_a_critical_card_re_fires_on_a_new_red_flag() -> None:
    old = snooze("mscc-red-flags", "critical", "Condition/retention", "Condition/a")
    assert snoozed(finding("mscc-red-flags", Indicator.CRITICAL, "Condition/retention", "Condition/a"), [old])
    assert not snoozed(finding("mscc-red-flags", Indicator.CRITICAL, "Condition/retention", "Condition/weakness",
                               "Condition/a"), [old])


def earlier(rule: str = "gcsf-order-dose-review", indicator: str = "warning", *evidence: str) -> EarlierCard:
    return EarlierCard(rule, indicator, frozenset(evidence or ("MedicationRequest/d",)), NOW - timedelta(minutes=2))


def test_a_repeat_is_the_same_rule_indicator_and_evidence() -> None:
    card = finding("gcsf-order-dose-review", Indicator.WARNING, "MedicationRequest/d")
    assert repeated(card, [earlier()])
    assert not repeated(card, [earlier("gcsf-order-dose-review", "info")])
    assert not repeated(card, [earlier("gcsf-order-dose-review", "warning", "MedicationRequest/other")])
    assert not repeated(card, [earlier("nsaid-caution-post-chemo")])


def test_a_critical_card_is_never_de_duplicated() -> None:
    card = finding("mscc-red-flags", Indicator.CRITICAL, "Condition/x")
    assert not repeated(card, [earlier("mscc-red-flags", "critical", "Condition/x")])


class Lookup:
    def __init__(self, snoozes=(), cards=(), fail: bool = False) -> None:
        self.snoozes, self.cards, self.fail, self.calls = list(snoozes), list(cards), fail, []

    def active_snoozes(self, patient_id, rule_ids, now):
        self.calls.append(("snoozes", patient_id, sorted(rule_ids), now))
        if self.fail:
            raise RuntimeError("database unreachable")
        return self.snoozes

    def earlier_cards(self, patient_id, rule_ids, *, hook, since, user_id, encounter_id):
        self.calls.append(("earlier", hook, since, user_id, encounter_id))
        return self.cards


DEFAULT = SuppressionPolicy()


def reasons(findings, hidden, lookup, hook="patient-view", policy=DEFAULT):
    return suppression_reasons(findings, hidden, lookup=lookup, policy=policy, patient_id="p1", hook=hook,
                               user_id="Practitioner/1", encounter_id="e1", now=NOW)


def test_reasons_per_finding_and_the_queries_made() -> None:
    lookup = Lookup(snoozes=[snooze()], cards=[earlier()])
    order = [finding(), finding("gcsf-order-dose-review", Indicator.WARNING, "MedicationRequest/d")]
    assert reasons(order, [False, False], lookup, hook="order-sign") == [SNOOZE, DUPLICATE]
    assert lookup.calls == [("snoozes", "p1", ["gcsf-bone-pain", "gcsf-order-dose-review"], NOW),
                            ("earlier", "order-select", NOW - timedelta(minutes=60), "Practitioner/1", "e1")]
    # only order-sign looks for earlier cards; shadow cards are not looked up at all
    lookup = Lookup(cards=[earlier()])
    assert reasons(order, [False, False], lookup, hook="order-select") == [None, None]
    assert [c[0] for c in lookup.calls] == ["snoozes"]
    lookup = Lookup(snoozes=[snooze()])
    assert reasons(order, [True, True], lookup) == [None, None] and lookup.calls == []


def test_a_failing_look_up_holds_nothing_back(caplog) -> None:
    assert reasons([finding()], [False], Lookup(snoozes=[snooze()], fail=True)) == [None]
    assert "suppression look-up failed" in caplog.text


def test_switched_off_or_without_a_store_nothing_is_looked_up() -> None:
    lookup = Lookup(snoozes=[snooze()])
    assert reasons([finding()], [False], lookup, policy=SuppressionPolicy(enabled=False)) == [None]
    assert lookup.calls == []
    assert reasons([finding()], [False], None) == [None]


@pytest.mark.parametrize(("days", "problem"), [(14, False), (0.5, False), (42, False), (0, True), (43, True),
                                               (-1, True), ("14", True), (True, True)])
def test_snooze_days_on_an_override_reason_is_checked(days: object, problem: bool) -> None:
    import tomllib
    from importlib.resources import files

    from fhir_mapping.suggestions import parse_action_catalog

    data = tomllib.loads(files("knowledge").joinpath("actions.toml").read_text())
    reason = next(r for r in data["override_reasons"]["gcsf-bone-pain"] if r["code"] == "snooze-cycle")
    reason["snooze_days"] = days
    catalog, problems = parse_action_catalog(data)
    flagged = [p for p in problems if "snooze_days" in p]
    assert bool(flagged) is problem
    if not problem:
        assert catalog.snooze_periods == {"gcsf-bone-pain": {"snooze-cycle": timedelta(days=days)}}
