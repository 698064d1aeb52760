"""One id per discovery entry (ARCHITECTURE.md §4 Services); the old id/hook pairs still work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backpain_cds.app import load_service_catalog
from backpain_cds.replay import prefetch_from_resources
from fhir_mapping.knowledge import load_knowledge
from tests.support import hook_requests as hr
from tools.harness import scenarios

EXPECTED = {
    "back-pain-after-chemo": "patient-view",
    "back-pain-after-chemo-encounter": "encounter-start",
    "gcsf-order-select": "order-select",
    "gcsf-order-review": "order-sign",
}


def test_discovery_parsed_as_a_map_keyed_by_id_keeps_all_four_hooks(client):
    services = client.get("/cds-services").get_json()["services"]
    # The CDS Hooks sandbox stores services as {id: definition}: a repeated id would drop a hook.
    by_id = {s["id"]: s for s in services}
    assert len(by_id) == len(services)
    assert {i: s["hook"] for i, s in by_id.items()} == EXPECTED


def test_discovery_does_not_publish_the_deprecated_pairs(client):
    pairs = {(s["id"], s["hook"]) for s in client.get("/cds-services").get_json()["services"]}
    assert ("back-pain-after-chemo", "encounter-start") not in pairs
    assert ("gcsf-order-review", "order-select") not in pairs


@pytest.mark.parametrize("service_id", ["back-pain-after-chemo", "back-pain-after-chemo-encounter"])
def test_deprecated_encounter_start_pair_still_triages(client, service_id):
    now = datetime.now(UTC)
    catalog = load_service_catalog(load_knowledge())
    prefetch = prefetch_from_resources(catalog.resolve(service_id, "encounter-start"), scenarios.mscc("dep1", now))
    response = client.post(f"/cds-services/{service_id}", json=hr.encounter_start("dep1", prefetch=prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [c["indicator"] for c in response.get_json()["cards"]] == ["critical"]


@pytest.mark.parametrize("service_id", ["gcsf-order-review", "gcsf-order-select"])
def test_deprecated_order_select_pair_still_answers(client, service_id):
    response = client.post(f"/cds-services/{service_id}", json=hr.order_select(
        "dep2", prefetch=hr.nothing_found_prefetch(scenarios.patient("dep2"), "gcsf-order-review", "order-sign")))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}


def test_new_ids_reject_the_other_hooks(client):
    response = client.post("/cds-services/gcsf-order-select", json=hr.order_sign(
        "dep3", prefetch=hr.nothing_found_prefetch(scenarios.patient("dep3"), "gcsf-order-review", "order-sign")))
    assert response.status_code == 400
