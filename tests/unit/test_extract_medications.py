"""Medication resources -> MedicationFact: codes, references, text fallback, times, drafts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from assessment.facts import Confidence, DrugClass, GcsfClass, MedicationSource
from tests.support.knowledge import extract

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SCT = "http://snomed.info/sct"


def admin(rid: str = "a1", *, concept: dict | None = None, reference: str | None = None, **extra) -> dict:
    resource = {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-02T09:30:00Z",
    }
    if concept is not None:
        resource["medicationCodeableConcept"] = concept
    if reference is not None:
        resource["medicationReference"] = {"reference": reference}
    resource.update(extra)
    return resource


def text(value: str) -> dict:
    return {"text": value}


def coded(system: str, code: str, display: str = "") -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def test_pegfilgrastim_via_medication_reference_to_a_contained_medication_is_long_acting() -> None:
    resource = admin(reference="#med1")
    resource["contained"] = [{"resourceType": "Medication", "id": "med1", "code": coded(RX, "727539")}]
    (fact,) = extract(resource).medications
    assert fact.drug_class is DrugClass.GCSF
    assert fact.gcsf_class is GcsfClass.LONG_ACTING
    assert fact.confidence is Confidence.CODED
    assert fact.source is MedicationSource.ADMINISTRATION
    assert fact.ref == "MedicationAdministration/a1"
    assert fact.time == datetime(2024, 5, 2, 9, 30, tzinfo=UTC)


def test_medication_id_reference_is_resolved_from_the_resource_list() -> None:
    medication = {"resourceType": "Medication", "id": "m9", "code": coded(RX, "1649944")}
    (fact,) = extract(admin(reference="Medication/m9"), medication).medications
    assert fact.gcsf_class is GcsfClass.DAILY


def test_an_absolute_medication_url_and_ingredient_codings_are_used() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m2",
        "ingredient": [{"itemCodeableConcept": coded(RX, "338036", "pegfilgrastim")}],
    }
    (fact,) = extract(admin(reference="https://ehr.example.org/fhir/Medication/m2"), medication).medications
    assert fact.gcsf_class is GcsfClass.LONG_ACTING


def test_an_unresolvable_reference_gives_no_fact() -> None:
    assert extract(admin(reference="Medication/missing")).medications == ()


def test_a_biosimilar_known_only_by_brand_text_is_long_acting_with_text_confidence() -> None:
    (fact,) = extract(admin(concept=text("Udenyca 6 mg/0.6 mL syringe"))).medications
    assert fact.gcsf_class is GcsfClass.LONG_ACTING
    assert fact.confidence is Confidence.TEXT
    assert fact.label == "Udenyca 6 mg/0.6 mL syringe"


@pytest.mark.parametrize(
    "name", ["pegfilgrastim", "PEGFILGRASTIM-JMDB 6 MG", "peg-filgrastim 6mg", "Pegfilgrastim (G-CSF)", "Rolvedon"]
)
def test_pegfilgrastim_text_is_never_classified_daily(name: str) -> None:
    (fact,) = extract(admin(concept=text(name))).medications
    assert fact.gcsf_class is GcsfClass.LONG_ACTING


@pytest.mark.parametrize("name", ["filgrastim 300 mcg", "tbo-filgrastim", "Zarxio", "Granix", "filgrastim-aafi"])
def test_daily_g_csf_names_are_daily(name: str) -> None:
    (fact,) = extract(admin(concept=text(name))).medications
    assert fact.gcsf_class is GcsfClass.DAILY


def test_an_onpro_kit_sets_the_on_body_injector_flag() -> None:
    (fact,) = extract(admin(concept=text("Neulasta Onpro kit 6 mg"))).medications
    assert fact.on_body_injector and fact.gcsf_class is GcsfClass.LONG_ACTING
    (plain,) = extract(admin(concept=text("Neulasta 6 mg syringe"))).medications
    assert not plain.on_body_injector


def test_rxnorm_wins_over_a_contradicting_text() -> None:
    concept = {"text": "filgrastim", "coding": [{"system": RX, "code": "338036"}]}
    (fact,) = extract(admin(concept=concept)).medications
    assert fact.gcsf_class is GcsfClass.LONG_ACTING and fact.confidence is Confidence.CODED


def test_an_atc_class_prefix_without_a_product_falls_back_to_the_configured_class() -> None:
    (fact,) = extract(admin(concept=coded(ATC, "L03AA16"))).medications
    assert fact.drug_class is DrugClass.GCSF and fact.gcsf_class is GcsfClass.DAILY
    (named,) = extract(admin(concept={"text": "empegfilgrastim", **coded(ATC, "L03AA16")})).medications
    assert named.gcsf_class is GcsfClass.LONG_ACTING and named.confidence is Confidence.CODED


def test_ancestim_is_not_a_g_csf() -> None:
    assert extract(admin(concept=coded(ATC, "L03AA12"))).medications == ()


def test_snomed_pegfilgrastim_substance_is_long_acting() -> None:
    (fact,) = extract(admin(concept=coded(SCT, "385544005"))).medications
    assert fact.gcsf_class is GcsfClass.LONG_ACTING


@pytest.mark.parametrize(
    ("concept", "drug_class"),
    [
        (coded(ATC, "L01XA01"), DrugClass.CHEMOTHERAPY),
        (coded(RX, "105585"), DrugClass.CHEMOTHERAPY),
        (coded(ATC, "M01AE02"), DrugClass.NSAID),
        (text("Naproxen 500 mg tablet"), DrugClass.NSAID),
        (coded(RX, "834022"), DrugClass.NSAID),
        (coded(RX, "855332"), DrugClass.ANTICOAGULANT),
        (coded(ATC, "B01AF02"), DrugClass.ANTICOAGULANT),
        (text("Eliquis 5 mg"), DrugClass.ANTICOAGULANT),
    ],
)
def test_other_drug_classes_are_recognised(concept: dict, drug_class: DrugClass) -> None:
    (fact,) = extract(admin(concept=concept)).medications
    assert fact.drug_class is drug_class and fact.gcsf_class is None


@pytest.mark.parametrize("concept", [coded(ATC, "B01AC06"), text("Heparin lock flush 100 units/mL"), text("paracetamol")])
def test_antiplatelets_heparin_flushes_and_paracetamol_are_not_tracked(concept: dict) -> None:
    assert extract(admin(concept=concept)).medications == ()


@pytest.mark.parametrize(
    ("rtype", "status"),
    [
        ("MedicationAdministration", "entered-in-error"),
        ("MedicationAdministration", "not-done"),
        ("MedicationRequest", "cancelled"),
        ("MedicationStatement", "not-taken"),
    ],
)
def test_medications_that_did_not_happen_are_dropped(rtype: str, status: str) -> None:
    resource = admin(concept=text("pegfilgrastim"), status=status, resourceType=rtype)
    assert extract(resource).medications == ()


def test_a_do_not_perform_request_is_dropped() -> None:
    request = {"resourceType": "MedicationRequest", "id": "r", "status": "active", "intent": "order",
               "doNotPerform": True, "medicationCodeableConcept": text("ibuprofen")}
    assert extract(request).medications == ()


def test_request_times_come_from_bounds_before_authored_on_and_intent_is_kept() -> None:
    # CLINICAL.md G-CSF window (2026-12): the dose time of a G-CSF request is timing.event, else
    # boundsPeriod.start, else validityPeriod.start, else authoredOn (see test_medication_times.py)
    request = {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "active",
        "intent": "plan",
        "medicationCodeableConcept": coded(RX, "68442"),
        "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": "2024-05-01", "end": "2024-05-07"}}}}],
        "dispenseRequest": {"validityPeriod": {"end": "2024-06-01"}},
    }
    (fact,) = extract(request).medications
    assert fact.time == datetime(2024, 5, 1, tzinfo=UTC)
    assert fact.end == datetime(2024, 6, 1, tzinfo=UTC)
    assert fact.intent == "plan" and fact.source is MedicationSource.REQUEST
    (authored,) = extract({**request, "authoredOn": "2024-04-30T08:00:00+02:00"}).medications
    assert authored.time == datetime(2024, 5, 1, tzinfo=UTC)
    no_bounds = {**request, "authoredOn": "2024-04-30T08:00:00+02:00", "dosageInstruction": []}
    (authored,) = extract(no_bounds).medications
    assert authored.time == datetime(2024, 4, 30, 6, tzinfo=UTC)


def test_administration_period_gives_start_and_end() -> None:
    resource = admin(concept=text("filgrastim"), effectivePeriod={"start": "2024-05-01", "end": "2024-05-05"})
    del resource["effectiveDateTime"]
    (fact,) = extract(resource).medications
    assert (fact.time.day, fact.end.day) == (1, 5)


def draft(rid: str, concept: dict) -> dict:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": concept}


def test_draft_orders_become_draft_facts_and_selections_mark_them() -> None:
    drafts = [draft("d1", text("Neulasta 6 mg")), draft("d2", text("ibuprofen 400 mg")), draft("d3", text("ondansetron"))]
    lab = {"resourceType": "ServiceRequest", "id": "s1", "status": "draft", "code": text("CBC")}
    record = extract(draft("d1", text("Neulasta 6 mg")), draft_orders=[*drafts, lab],
                     selections=["MedicationRequest/d2"])
    assert record.medications == ()  # the draft being ordered is not an existing medication
    by_ref = {fact.ref: fact for fact in record.draft_orders}
    assert set(by_ref) == {"MedicationRequest/d1", "MedicationRequest/d2"}
    assert all(fact.source is MedicationSource.DRAFT_ORDER for fact in by_ref.values())
    assert by_ref["MedicationRequest/d2"].selected and not by_ref["MedicationRequest/d1"].selected
    assert by_ref["MedicationRequest/d1"].drug_class is DrugClass.GCSF
    assert record.unrecognised_draft_orders == ("MedicationRequest/d3", "ServiceRequest/s1")


def test_a_draft_order_may_reference_a_medication_sent_with_the_drafts() -> None:
    med = {"resourceType": "Medication", "id": "mx", "code": coded(RX, "2102705")}
    order = {**draft("d9", {}), "medicationReference": {"reference": "Medication/mx"}}
    del order["medicationCodeableConcept"]
    (fact,) = extract(draft_orders=[order, med]).draft_orders
    assert fact.gcsf_class is GcsfClass.LONG_ACTING
