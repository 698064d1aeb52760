"""The NSAID caution card over HTTP (issue 11 deliverable 4): on order-sign with two drafts, a
G-CSF and an NSAID, and low platelets, the card deletes only the NSAID draft and proposes
paracetamol as a draft of its own; the response obeys the CDS Hooks schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backpain_cds.app import load_service_catalog
from backpain_cds.replay import prefetch_from_resources
from cds_hooks.schemas import CdsResponse
from fhir_mapping.knowledge import load_knowledge
from tests.support import hook_requests as hr
from tools.harness import scenarios


def _platelets(pid: str, now: datetime, value: float) -> dict:
    return {"resourceType": "Observation", "id": f"{pid}-plt", "status": "final", "subject": {"reference": f"Patient/{pid}"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
            "effectiveDateTime": (now - timedelta(days=1)).isoformat(),
            "valueQuantity": {"value": value, "unit": "10*3/uL", "system": "http://unitsofmeasure.org", "code": "10*3/uL"}}


def test_order_sign_deletes_only_the_nsaid_draft_and_proposes_paracetamol(client):
    now = datetime.now(UTC)
    pid = "nsaid-http"
    resources = scenarios.gcsf_bone_pain(pid, now) + [_platelets(pid, now, 20)]
    prefetch = prefetch_from_resources(load_service_catalog(load_knowledge()).resolve("gcsf-order-review", "order-sign"),
                                       resources)
    drafts = [hr.draft_medication_request("draft-naproxen", "Naproxen 500 mg oral tablet", pid),
              hr.draft_medication_request("draft-peg", "Pegfilgrastim 6 mg subcutaneous", pid)]
    response = client.post("/cds-services/gcsf-order-review", json=hr.order_sign(pid, drafts, prefetch=prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    CdsResponse.model_validate(body)
    (card,) = [c for c in body["cards"] if c["extension"]["backpain-cds"]["rule"] == "nsaid-caution-post-chemo"]
    assert "low platelets" in card["summary"]
    deletes = [a for s in card["suggestions"] for a in s["actions"] if a["type"] == "delete"]
    assert deletes == [{"type": "delete", "description": deletes[0]["description"], "resourceId": "MedicationRequest/draft-naproxen"}]
    creates = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    assert [r["resourceType"] for r in creates] == ["MedicationRequest"]
    assert "aracetamol" in creates[0]["medicationCodeableConcept"]["text"]
    assert creates[0]["subject"] == {"reference": f"Patient/{pid}"}
