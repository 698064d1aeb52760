"""Oncology context from chemotherapy: ingredient codes, agent names in text, dual-use agents,
chemotherapy ordered (ServiceRequest) or planned (CarePlan), NDC-only medications."""

from __future__ import annotations

import json

import pytest

from assessment.facts import Confidence, DrugClass
from tests.support.knowledge import KNOWLEDGE, extract
from tests.unit.test_codes_support import (
    ATC,
    NDC,
    RX,
    SCT,
    SUBJECT,
    administration,
    back_pain,
    cancer,
    coded,
    iso,
    leg_weakness,
    request,
    rheumatoid,
    rules,
)

MTX_WEEKLY = coded(RX, "6851", "methotrexate")


@pytest.mark.parametrize("concept", [coded(RX, "3002", "cyclophosphamide"), coded(RX, "3002"),
                                     coded(RX, "3639", "doxorubicin"), {"text": "DOXOrubicin 60 mg/m2 IV"}])
def test_ingredient_coded_or_named_chemotherapy_gives_context_and_a_card(concept: dict) -> None:
    # cyclophosphamide alone is dual-use: it needs the cancer; doxorubicin is chemotherapy outright
    dual = "3002" in json.dumps(concept)
    extra = (cancer(status="remission"),) if dual else ()
    assert rules(administration("chemo", concept, 10), back_pain(), *extra) == ["back-pain-supportive-care"]
    assert rules(administration("chemo", concept, 10), back_pain(), leg_weakness(), *extra) == ["mscc-red-flags"]


def test_doxorubicin_by_name_is_a_text_match() -> None:
    (fact,) = extract(administration("a", coded(RX, "3639", "doxorubicin"), 3)).medications
    assert fact.drug_class is DrugClass.CHEMOTHERAPY and fact.confidence is Confidence.TEXT
    (coded_fact,) = extract(administration("a", coded(RX, "56946", "paclitaxel"), 3)).medications
    assert coded_fact.confidence is Confidence.CODED


def test_every_agent_of_the_vsac_chemotherapy_products_is_named_in_the_text_rule() -> None:
    data = json.loads((KNOWLEDGE / "valuesets" / "chemotherapy-medications.json").read_text())
    missed = [c["display"] for inc in data["compose"]["include"] for c in inc["concept"]
              if c.get("display") and not extract(administration("a", {"text": c["display"]}, 1)).medications]
    assert missed == []


def test_weekly_low_dose_methotrexate_for_ra_is_not_oncology_context() -> None:
    mtx = request("mtx", MTX_WEEKLY, authoredOn=iso(20), reasonCode=[{"text": "Rheumatoid arthritis"}])
    assert rules(mtx, back_pain(), rheumatoid()) == []
    assert rules(mtx, back_pain(), rheumatoid(), leg_weakness()) == []


@pytest.mark.parametrize("reason", [
    {"reasonCode": [coded("http://hl7.org/fhir/sid/icd-10-cm", "C83.30", "Diffuse large B-cell lymphoma")]},
    {"reasonCode": [{"text": "Primary CNS lymphoma"}]},
    {"reasonReference": [{"reference": "Condition/lymphoma"}]},
])
def test_dual_use_agent_counts_with_a_malignant_reason(reason: dict) -> None:
    rtx = administration("rtx", {"text": "riTUXimab-abbs 375 mg/m2"}, 10, **reason)
    # the referenced Condition is in the record (in remission: not context by itself)
    target = (cancer(status="remission", rid="lymphoma"),) if "reasonReference" in reason else ()
    assert rules(rtx, back_pain(), leg_weakness(), *target) == ["mscc-red-flags"]
    assert rules(rtx, back_pain(), *target) == ["back-pain-supportive-care"]
    (fact,) = extract(rtx).medications
    assert fact.requires_malignancy and (fact.reason_malignant or fact.reason_refs == ("Condition/lymphoma",))


def test_dual_use_agent_counts_with_a_malignant_condition_of_any_status() -> None:
    cyclo = administration("cyc", coded(ATC, "L01AA01", "cyclophosphamide"), 10)
    assert rules(cyclo, back_pain()) == []
    assert rules(cyclo, back_pain(), cancer(status="resolved")) == ["back-pain-supportive-care"]


def test_gcsf_alone_is_still_not_context() -> None:
    assert rules(administration("peg", coded(RX, "727542"), 3), back_pain()) == []


def _service_request(status: str = "active", concept: dict | None = None, **extra) -> dict:
    resource = {"resourceType": "ServiceRequest", "id": "sr", "status": status, "intent": "order", "subject": SUBJECT,
                "code": concept or coded(SCT, "367336001", "Chemotherapy (procedure)"), "authoredOn": iso(5)}
    resource.update(extra)
    return resource


@pytest.mark.parametrize("concept", [coded(SCT, "367336001", "Chemotherapy (procedure)"), {"text": "FOLFOX cycle 4"},
                                     {"text": "Start carboplatin/paclitaxel"}, {"text": "Chemotherapy"}])
def test_chemotherapy_ordered_gives_context(concept: dict) -> None:
    assert rules(_service_request(concept=concept), back_pain()) == ["back-pain-supportive-care"]
    (fact,) = extract(_service_request(concept=concept)).procedures
    assert fact.source == "order" and fact.ref == "ServiceRequest/sr"


@pytest.mark.parametrize("status, concept, authored_days", [
    ("revoked", None, 5), ("draft", None, 5), ("active", None, 91),
    ("active", {"text": "Chemotherapy-induced nausea clinic"}, 5), ("active", {"text": "MRI lumbar spine"}, 5),
    ("active", {"text": "Methotrexate"}, 5),
])
def test_chemotherapy_orders_that_do_not_count(status: str, concept: dict | None, authored_days: float) -> None:
    assert rules(_service_request(status, concept, authoredOn=iso(authored_days)), back_pain()) == []


def _care_plan(status: str = "active", detail: dict | None = None, **extra) -> dict:
    resource = {"resourceType": "CarePlan", "id": "cp", "status": status, "intent": "plan", "subject": SUBJECT,
                "created": iso(30), "activity": [{"detail": detail or {
                    "status": "scheduled", "code": {"text": "AC-T chemotherapy, cycle 1"}}}]}
    resource.update(extra)
    return resource


def test_chemotherapy_planned_in_a_care_plan_gives_context() -> None:
    assert rules(_care_plan(), back_pain(), leg_weakness()) == ["mscc-red-flags"]
    drug = {"status": "in-progress", "productCodeableConcept": coded(RX, "12574", "gemcitabine")}
    assert rules(_care_plan(detail=drug), back_pain()) == ["back-pain-supportive-care"]
    old_but_running = _care_plan(created=iso(200), period={"start": iso(200), "end": iso(-30)})
    assert rules(old_but_running, back_pain()) == ["back-pain-supportive-care"]


@pytest.mark.parametrize("plan", [
    _care_plan(status="revoked"), _care_plan(status="draft"),
    _care_plan(detail={"status": "cancelled", "code": {"text": "Chemotherapy"}}),
    _care_plan(created=iso(120), period={"start": iso(120), "end": iso(95)}),
    _care_plan(detail={"status": "scheduled", "description": "Physiotherapy for back pain"}),
])
def test_care_plans_that_do_not_count(plan: dict) -> None:
    assert rules(plan, back_pain()) == []


def test_ndc_only_medication_is_exposed_as_unrecognised_and_named_ndc_is_matched_by_text() -> None:
    ndc_only = administration("ndc", coded(NDC, "55513-0190-01"), 2)
    record = extract(ndc_only, administration("metformin", coded(RX, "860975", "metformin 500 MG"), 2))
    assert record.medications == () and record.unrecognised_coded_meds == ("MedicationAdministration/ndc",)
    named = extract(administration("ndc", coded(NDC, "55513-0190-01", "Neulasta 6 mg/0.6 mL"), 2))
    assert named.unrecognised_coded_meds == () and named.medications[0].confidence is Confidence.TEXT


def test_a_service_request_naming_chemotherapy_keeps_its_imaging_fact() -> None:
    sr = _service_request(concept={"coding": [{"system": "http://loinc.org", "code": "36067-7", "display": "MR Spine"}],
                                   "text": "MR spine before chemotherapy cycle 2"})
    record = extract(sr)
    assert [f.source for f in record.procedures] == ["order"] and len(record.imaging) == 1
