"""The view's findings equal the cards' for every patient-view scenario fixture (sekmet data)."""

from __future__ import annotations

import json
import re

import pytest

from tests.smart.conftest import FIXTURES, fixture_bundle, patient_of, run_launch
from tests.support import hook_requests as hr

pytestmark = pytest.mark.fhir_server

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
