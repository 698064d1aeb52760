"""The view's findings equal the cards' for every patient-view scenario fixture (sekmet data),
and the differential on the same page agrees with the card."""

from __future__ import annotations

import json
import re

import pytest

from tests.smart.conftest import FIXTURES, fixture_bundle, patient_of, run_launch
from tests.support import hook_requests as hr

pytestmark = pytest.mark.fhir_server

CAUSE_KEYS = ("gcsf-timing", "chemotherapy-side-effects", "spread-to-spine", "posture-non-specific")
#: the cause each triage card stands for (knowledge/differential.toml ``rules``)
CARD_CAUSE = {
    "gcsf-bone-pain": "gcsf-timing",
    "mscc-red-flags": "spread-to-spine",
    "progressive-back-pain": "spread-to-spine",
    "back-pain-supportive-care": "posture-non-specific",
}

TRIAGE_FIXTURES = sorted(
    p.name.removesuffix(".expected.json")
    for p in FIXTURES.glob("*.expected.json")
    if json.loads(p.read_text())["hook"] in ("patient-view", "encounter-start")
)


@pytest.fixture(scope="module")
def all_loaded(loaded_fhir):
    for name in TRIAGE_FIXTURES:
        loaded_fhir.load(fixture_bundle(name))
    return loaded_fhir


def test_there_are_triage_fixtures() -> None:
    assert len(TRIAGE_FIXTURES) >= 40


@pytest.mark.parametrize("name", TRIAGE_FIXTURES)
def test_view_findings_equal_card_findings(name, all_loaded, browser, ehr) -> None:
    patient = patient_of(name)
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    answer = browser.post("/cds-services/back-pain-after-chemo",
                          json=hr.patient_view(patient, fhir_server=ehr.fhir_upstream))
    assert answer.status_code == 200
    cards = answer.get_json()["cards"]
    card_rules = sorted(c["extension"]["backpain-cds"]["rule"] for c in cards)
    assert card_rules == sorted(c["rule"] for c in expected["cards"])
    flow = run_launch(browser, ehr, ehr.add_launch(patient))
    assert flow.view is not None and flow.view.status_code == 200
    html = flow.view.get_data(as_text=True)
    view_rules = sorted(re.findall(r'data-rule="([^"]+)"', html))
    assert view_rules == card_rules
    assert ('data-findings="none"' in html) == (not cards)
    indicators = dict(re.findall(r'data-rule="([^"]+)"\s+data-indicator="([^"]+)"', html))
    assert indicators == {c["extension"]["backpain-cds"]["rule"]: c["indicator"] for c in cards}
    for card in cards:
        for ref in card["extension"]["backpain-cds"]["evidence"]:
            assert f'data-evidence="{ref}"' in html
    check_differential(html, cards)


def differential_causes(html: str) -> dict[str, str]:
    """The HTML of each cause article of the differential, by its data-differential key."""
    return dict(re.findall(r'<article class="cause[^"]*" data-differential="([^"]+)"(.*?)</article>', html, re.S))


def facts(article: str, side: str) -> list[tuple[str, list[str]]]:
    """(data-fact, data-refs) of each item of the "for" or "against" list of one cause."""
    block = re.search(rf'<ul class="facts-{side}" data-facts="{side}">(.*?)</ul>', article, re.S)
    assert block, side
    return [(key, re.findall(r'data-ref="([^"]+)"', body))
            for key, body in re.findall(r'<li[^>]*data-fact="([^"]+)">(.*?)</li>', block.group(1), re.S)]


def check_differential(html: str, cards: list[dict]) -> None:
    assert 'data-section="differential"' in html
    causes = differential_causes(html)
    if not cards:  # no card on patient-view: no back pain with oncology context to weigh
        assert causes == {} and 'data-differential="none"' in html
        return
    assert list(causes) == list(CAUSE_KEYS)
    (card,) = cards
    rule = card["extension"]["backpain-cds"]["rule"]
    evidence = set(card["extension"]["backpain-cds"]["evidence"])
    mine = causes[CARD_CAUSE[rule]]
    assert f'data-cause-card="{rule}"' in mine
    assert sum('data-cause-card="' in article for article in causes.values()) == 1
    facts_for = facts(mine, "for")
    assert facts_for and all(key != "none" for key, _ in facts_for)
    if rule == "gcsf-bone-pain":  # the card's dose, "for" G-CSF timing
        (dose,) = [refs for key, refs in facts_for if key == "gcsf_dose_in_window"]
        assert dose and set(dose) <= evidence
    if rule == "mscc-red-flags":  # the card's red flag, "for" spread to the spine
        flags = [ref for key, refs in facts_for if key == "red-flag" for ref in refs]
        assert flags and set(flags) <= evidence
    if rule == "progressive-back-pain":
        features = [ref for key, refs in facts_for if key == "feature" for ref in refs]
        assert features and set(features) <= evidence
    if rule == "back-pain-supportive-care":
        # no red flag and no progressive feature (night pain alone may still be listed), no window
        assert not [key for key, _ in facts(causes["spread-to-spine"], "for") if key in ("red-flag", "feature")]
        assert all(key == "none" for key, _ in facts(causes["gcsf-timing"], "for"))
    else:  # a card other than supportive care is a fact against posture / non-specific pain
        assert any(key != "none" for key, _ in facts(causes["posture-non-specific"], "against"))
