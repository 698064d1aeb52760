"""Card wording from real FHIR resources, through the hook (issue 13 item 3: say what the record
says): "given" for a completed MedicationAdministration, "ordered" for a MedicationRequest,
"recorded" for a MedicationStatement or an administration not completed -- on the G-CSF
bone-pain card, the dose-review card's previous-dose line and the chemotherapy context lines;
and a coded NSAID product outside the value set is not called "free text".

Every card here comes from FHIR JSON posted to the service (mapping, assessment, rendering),
not from hand-built facts.
"""

from __future__ import annotations

import copy
import re
import typing as t
from datetime import UTC, datetime, timedelta

import pytest

from backpain_cds.replay import prefetch_from_resources
from tests.support import hook_requests as hr
from tools.harness import scenarios

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
PID = "wording"
SUBJECT = {"reference": f"Patient/{PID}"}
NOW = datetime.now(UTC)
VERBS = ("given", "ordered", "recorded", "drafted")
PEG = {"coding": [{"system": RX, "code": "338036", "display": "pegfilgrastim"}], "text": "pegfilgrastim 6 mg"}
FLUOROURACIL = {"coding": [{"system": RX, "code": "4492", "display": "fluorouracil"}], "text": "fluorouracil"}


def _iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="seconds")


def _medication(kind: str, ident: str, concept: dict[str, t.Any], days_ago: float, **fields: t.Any) -> dict[str, t.Any]:
    """One medication resource of ``kind``, dated ``days_ago`` the way that type carries a date."""
    resource: dict[str, t.Any] = {"resourceType": kind, "id": ident, "subject": SUBJECT,
                                  "medicationCodeableConcept": copy.deepcopy(concept)}
    if kind == "MedicationRequest":
        resource.update(status="completed", intent="order", authoredOn=_iso(days_ago))
    elif kind == "MedicationAdministration":
        resource.update(status="completed", effectiveDateTime=_iso(days_ago))
    else:
        resource.update(status="completed", effectiveDateTime=_iso(days_ago))
    resource.update(fields)
    return {k: v for k, v in resource.items() if v is not None}


def _without(resources: list[dict[str, t.Any]], *suffixes: str) -> list[dict[str, t.Any]]:
    return [r for r in resources if not any(r["id"].endswith(s) for s in suffixes)]


def _call(client, service_id: str, hook: str, resources: list[dict[str, t.Any]],
          drafts: list[dict[str, t.Any]] | None = None) -> list[dict[str, t.Any]]:
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import load_knowledge

    definition = load_service_catalog(load_knowledge()).resolve(service_id, hook)
    prefetch = prefetch_from_resources(definition, resources)
    if hook == "patient-view":
        body = hr.patient_view(PID, prefetch=prefetch)
    else:
        body = hr.order_sign(PID, drafts or [], prefetch=prefetch)
    response = client.post(f"/cds-services/{service_id}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def _card(cards: list[dict[str, t.Any]], rule: str) -> dict[str, t.Any]:
    found = [c for c in cards if c["extension"]["backpain-cds"]["rule"] == rule]
    assert found, [c["extension"]["backpain-cds"]["rule"] for c in cards]
    return found[0]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _verbs_after(text: str, name: str) -> set[str]:
    """The verbs that follow ``name`` (bold or not) in the card text."""
    pattern = rf"\*?\*?{re.escape(name)}\*?\*? \(?({'|'.join(VERBS)}) on"
    return set(re.findall(pattern, _flat(text)))


# -- G-CSF bone-pain card: the dose it names ------------------------------------------------------

GCSF_DOSES = {
    "completed administration": ("given", "MedicationAdministration", {}),
    "administration in progress": ("recorded", "MedicationAdministration", {"status": "in-progress"}),
    "administration stopped": ("recorded", "MedicationAdministration", {"status": "stopped"}),
    "administration without a status": ("recorded", "MedicationAdministration", {"status": None}),
    "completed request": ("ordered", "MedicationRequest", {}),
    "active request": ("ordered", "MedicationRequest", {"status": "active"}),
    "statement": ("recorded", "MedicationStatement", {}),
    "active statement": ("recorded", "MedicationStatement", {"status": "active"}),
}


@pytest.mark.parametrize("case", sorted(GCSF_DOSES))
def test_gcsf_bone_pain_card_says_what_the_record_says_about_the_dose(client, case: str) -> None:
    verb, kind, fields = GCSF_DOSES[case]
    dose = _medication(kind, f"{PID}-dose", PEG, 3, **fields)
    resources = _without(scenarios.gcsf_bone_pain(PID, NOW), "-peg") + [dose]
    card = _card(_call(client, "back-pain-after-chemo", "patient-view", resources), "gcsf-bone-pain")
    situation, why = card["detail"].split("**Why this card**")
    assert _verbs_after(situation, "pegfilgrastim 6 mg") == {verb}, situation
    assert _verbs_after(why, "pegfilgrastim 6 mg") == {verb}, why
    assert _verbs_after(card["summary"], "pegfilgrastim 6 mg") <= {verb}


def test_an_order_and_its_administration_read_given(client) -> None:
    """The usual EHR record: the order (day -4) and the administration it led to (day -3)."""
    order = _medication("MedicationRequest", f"{PID}-order", PEG, 4)
    given = _medication("MedicationAdministration", f"{PID}-given", PEG, 3)
    resources = _without(scenarios.gcsf_bone_pain(PID, NOW), "-peg") + [order, given]
    card = _card(_call(client, "back-pain-after-chemo", "patient-view", resources), "gcsf-bone-pain")
    situation = card["detail"].split("**Why this card**")[0]
    assert _verbs_after(situation, "pegfilgrastim 6 mg") == {"given"}
    assert _iso(3)[:10] in _flat(situation)


# -- gcsf-order-dose-review: the previous dose ---------------------------------------------------

PREVIOUS = {
    "given": ("MedicationAdministration", {}),
    "ordered": ("MedicationRequest", {}),
    "recorded": ("MedicationStatement", {}),
}


@pytest.mark.parametrize("verb", sorted(PREVIOUS))
def test_dose_review_card_names_the_previous_dose_as_the_record_does(client, verb: str) -> None:
    kind, fields = PREVIOUS[verb]
    previous = _medication(kind, f"{PID}-previous", PEG, 24, **fields)
    pain = {"resourceType": "Condition", "id": f"{PID}-old-pain", "subject": SUBJECT,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "resolved"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50",
                                 "display": "Low back pain, unspecified"}]},
            "onsetDateTime": _iso(22), "recordedDate": _iso(22)}
    resources = _without(scenarios.gcsf_bone_pain(PID, NOW), "-peg", "-backpain", "-pain") + [previous, pain]
    draft = {"resourceType": "MedicationRequest", "id": "gcsf-draft", "status": "draft", "intent": "order",
             "subject": SUBJECT, "medicationCodeableConcept": copy.deepcopy(PEG)}
    cards = _call(client, "gcsf-order-review", "order-sign", resources, drafts=[draft])
    card = _card(cards, "gcsf-order-dose-review")
    situation, why = card["detail"].split("**Why this card**")
    date = _iso(24)[:10]
    assert f"**pegfilgrastim 6 mg** ({verb} on {date};" in _flat(situation), situation
    assert _verbs_after(situation, "pegfilgrastim 6 mg") == {verb}
    assert f"inside the window of pegfilgrastim 6 mg {verb} on {date}" in _flat(why), why
    assert _verbs_after(why, "pegfilgrastim 6 mg") == {verb}
    lines = [line for line in why.splitlines() if line.startswith("- ")]
    assert len(lines) == len(set(lines))  # the episode line once, though it has two references


# -- chemotherapy context lines ------------------------------------------------------------------

CHEMO = {
    "given": ("MedicationAdministration", {}),
    "ordered": ("MedicationRequest", {}),
    "recorded": ("MedicationStatement", {}),
}


@pytest.mark.parametrize("verb", sorted(CHEMO))
def test_chemotherapy_context_line_says_what_the_record_says(client, verb: str) -> None:
    kind, fields = CHEMO[verb]
    chemo = _medication(kind, f"{PID}-5fu", FLUOROURACIL, 4, **fields)
    resources = _without(scenarios.gcsf_bone_pain(PID, NOW), "-chemo") + [chemo]
    card = _card(_call(client, "back-pain-after-chemo", "patient-view", resources), "gcsf-bone-pain")
    why = card["detail"].split("**Why this card**")[1]
    assert f"- Chemotherapy fluorouracil {verb} on {_iso(4)[:10]}" in why, why
    assert _verbs_after(why, "Chemotherapy fluorouracil") == {verb}
    assert "MedicationRequest/" not in why and "MedicationAdministration/" not in why


def test_a_chemotherapy_procedure_line_names_no_verb_it_cannot_know(client) -> None:
    card = _card(_call(client, "back-pain-after-chemo", "patient-view", scenarios.gcsf_bone_pain(PID, NOW)),
                 "gcsf-bone-pain")
    why = card["detail"].split("**Why this card**")[1]
    assert f"- Chemotherapy on {_iso(4)[:10]}" in why, why
    assert "Chemotherapy Chemotherapy" not in why


# -- a coded NSAID product outside the value set -------------------------------------------------

NAPROXEN_220 = {"coding": [{"system": RX, "code": "849574", "display": "Naproxen sodium 220 MG Oral Tablet"}]}
FREE_TEXT = "recognised from free text only"
BY_NAME = "recognised by its name (code not in the value set)"


def _nsaid_draft(concept: dict[str, t.Any]) -> dict[str, t.Any]:
    return {"resourceType": "MedicationRequest", "id": "nsaid-draft", "status": "draft", "intent": "order",
            "subject": SUBJECT, "medicationCodeableConcept": copy.deepcopy(concept),
            "dosageInstruction": [{"text": "220 mg twice daily"}]}


def _low_platelets() -> dict[str, t.Any]:
    return {"resourceType": "Observation", "id": f"{PID}-plt", "subject": SUBJECT, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "777-3",
                                 "display": "Platelets [#/volume] in Blood by Automated count"}]},
            "effectiveDateTime": _iso(2), "valueQuantity": {"value": 40, "unit": "10*9/L",
                                                            "system": "http://unitsofmeasure.org", "code": "10*9/L"}}


def _nsaid_card(client, hook: str, concept: dict[str, t.Any]) -> dict[str, t.Any]:
    service_id = {"order-select": "gcsf-order-select", "order-sign": "gcsf-order-review"}[hook]
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import load_knowledge

    definition = load_service_catalog(load_knowledge()).resolve(service_id, hook)
    resources = scenarios.gcsf_bone_pain(PID, NOW) + [_low_platelets()]
    prefetch = prefetch_from_resources(definition, resources)
    draft = _nsaid_draft(concept)
    body = (hr.order_select(PID, [draft], prefetch=prefetch) if hook == "order-select"
            else hr.order_sign(PID, [draft], prefetch=prefetch))
    response = client.post(f"/cds-services/{service_id}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return _card(response.get_json()["cards"], "nsaid-caution-post-chemo")


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_coded_nsaid_outside_the_value_set_is_not_called_free_text(client, hook: str) -> None:
    card = _nsaid_card(client, hook, NAPROXEN_220)
    text = _flat(card["summary"] + " " + card["detail"])
    assert "Naproxen sodium 220 MG Oral Tablet" in text
    assert BY_NAME in text
    assert FREE_TEXT not in text and "free text" not in text
    assert "platelet" in text.lower()


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_an_uncoded_nsaid_is_said_to_come_from_free_text(client, hook: str) -> None:
    """The contrast: the same product with no code at all is "free text only"."""
    card = _nsaid_card(client, hook, {"text": "Naproxen sodium 220 MG Oral Tablet"})
    text = _flat(card["detail"])
    assert FREE_TEXT in text
    assert BY_NAME not in text
