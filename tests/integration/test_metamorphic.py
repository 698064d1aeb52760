"""Metamorphic properties (issue 11, deliverable 5) over every scenario fixture and over
generated patients, through the whole service in-process (replay's bundle -> hook call):

* adding a current red flag (coded Condition, free text in any phrasing, a neuro-panel
  component, a PRO-CTCAE answer) to a patient with back pain of any onset (or a bone
  metastasis) and oncology context always yields ``mscc-red-flags`` as the card;
* adding the same red flag negated (text negation, valueBoolean false, refuted, answer "None")
  never changes the cards;
* shifting every date and ``now`` by the same whole number of days, reordering entries,
  renaming ids, or adding unrelated resources never changes the cards;
* removing every G-CSF resource never leaves a ``gcsf-bone-pain`` card.

Cards are compared as (rule, indicator) multisets. Examples are few (the service call is the
cost) and derandomized when ``CI`` is set.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assessment.facts import ClinicalKind
from assessment.rules import concepts
from backpain_cds.app import build_service
from backpain_cds.replay import build_call, card_keys
from backpain_cds.settings import Settings
from fhir_mapping.bundles import bundle_to_resources
from fhir_mapping.extract import extract_record
from fhir_mapping.knowledge import load_knowledge
from tools.harness.scenarios import CLINICAL, VERIFICATION

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build_fixtures as bf  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
KNOWLEDGE = load_knowledge()
SERVICE = build_service(Settings.from_mapping({}), KNOWLEDGE, apply_deadline=False)
TRIAGE = ("patient-view", "encounter-start")
MSCC, GCSF = "mscc-red-flags", "gcsf-bone-pain"
PROPERTY = settings(
    max_examples=40, deadline=None, derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _load(path: Path) -> tuple[str, dict[str, Any], str]:
    expected = json.loads(path.with_name(path.name[: -len(".json")] + ".expected.json").read_text())
    return path.name[: -len(".json")], json.loads(path.read_text()), str(expected.get("hook", "patient-view"))


FIXTURE_SET = [_load(p) for p in sorted(FIXTURES.glob("*.json")) if not p.name.endswith(".expected.json")]
TRIAGE_SET = [f for f in FIXTURE_SET if f[2] in TRIAGE]


def cards(bundle: dict[str, Any], hook: str, now: datetime = NOW) -> Counter[tuple[str, str]]:
    call = build_call(bundle, SERVICE.catalog, service_id=None, hook=hook)
    return card_keys(SERVICE.invoke(call.service_id, call.body, now=now).response)


def top_rule(bundle: dict[str, Any], hook: str) -> str | None:
    call = build_call(bundle, SERVICE.catalog, service_id=None, hook=hook)
    response = SERVICE.invoke(call.service_id, call.body, now=NOW).response
    first = (response.get("cards") or [None])[0]
    return ((first or {}).get("extension") or {}).get("backpain-cds", {}).get("rule") if first else None


def patient_id(bundle: dict[str, Any]) -> str:
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def add(bundle: dict[str, Any], *resources: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    for r in resources:
        out["entry"].append({"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
                             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}})
    return out


def red_flag_eligible(bundle: dict[str, Any]) -> bool:
    """Oncology context and (active back pain of any onset or a bone metastasis) at NOW."""
    resources = bundle_to_resources(bundle)
    record = extract_record(resources, KNOWLEDGE.valuesets, KNOWLEDGE.matching, patient_id=patient_id(bundle))
    context = KNOWLEDGE.rules.context
    if not concepts.oncology_context(record, NOW, context).present:
        return False
    if concepts.back_pain_episode(record, NOW, context, any_onset=True) is not None:
        return True
    return any(f.kind is ClinicalKind.BONE_METASTASIS and f.status in context.active_statuses for f in record.clinical)


# --- red flags: current and negated ----------------------------------------------------------

PHRASES = [
    "Weakness in both legs since this morning", "Both legs feel weak", "Bilateral LE weakness 4/5",
    "Trouble walking since yesterday", "Unable to void since last night, bladder scan 900 mL",
    "new weakness in both legs", "weakeness in both legs", "numbess in both feet", "parasthesias in the saddle area",
    "can't feel my legs", "legs gave way", "right foot drop", "saddle anaesthesia", "urinary retention",
    "incontinent of urine", "incontinent of faeces", "loss of bowel control", "post-void residual 450 mL",
    "unable to ambulate", "difficulty ambulating", "No fever, c/o bilateral leg weakness",
    "Denies fever, reports bilateral leg weakness", "no numbness, new weakness in both legs",
]
NEGATIONS = ["No {}", "Denies {}", "{}: denied", "Negative for {}", "Without {}"]
CODED = [bf.SADDLE, bf.RETENTION, bf.concept(bf.ICD, "R33.9", "Retention of urine, unspecified"),
         bf.concept(bf.ICD, "R26.2", "Difficulty in walking, not elsewhere classified")]
NUMBNESS_ITEM = "In the last 7 days, what was the SEVERITY of your NUMBNESS OR TINGLING IN YOUR HANDS OR FEET at its WORST?"


def _iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="seconds").replace("+00:00", "Z")


def red_flag(pid: str, form: int, phrase: str, code: dict[str, Any], days_ago: float, *, negated: bool,
             negation: str = "No {}") -> dict[str, Any]:
    subject = {"reference": f"Patient/{pid}"}
    rid = f"{pid}-added-flag"
    if form == 0:  # free-text Observation value
        # negated: only the first clause of a phrase with a comma (after a comma comes a finding
        # of its own: a measured bladder volume, "reports leg weakness")
        text = negation.format(phrase.split(",")[0]) if negated else phrase
        return {"resourceType": "Observation", "id": rid, "status": "final", "subject": subject,
                "code": {"text": "Nursing note"}, "effectiveDateTime": _iso(days_ago), "valueString": text}
    if form == 1:  # coded Condition (refuted when negated)
        status = "refuted" if negated else "confirmed"
        return {"resourceType": "Condition", "id": rid, "subject": subject, "code": code,
                "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": VERIFICATION, "code": status}]},
                "onsetDateTime": _iso(days_ago), "recordedDate": _iso(days_ago)}
    if form == 2:  # coded exam Observation (valueBoolean false when negated)
        return {"resourceType": "Observation", "id": rid, "status": "final", "subject": subject, "code": code,
                "effectiveDateTime": _iso(days_ago), "valueBoolean": not negated}
    if form == 3:  # neuro panel component
        # negated: only the first clause of a phrase with a comma (after a comma comes a finding
        # of its own: a measured bladder volume, "reports leg weakness")
        text = negation.format(phrase.split(",")[0]) if negated else phrase
        return {"resourceType": "Observation", "id": rid, "status": "final", "subject": subject,
                "code": {"text": "Neuro assessment"}, "effectiveDateTime": _iso(days_ago),
                "component": [{"code": {"text": "Lower limbs"}, "valueString": text}]}
    answer = "None" if negated else "Severe"  # PRO-CTCAE QuestionnaireResponse
    return {"resourceType": "QuestionnaireResponse", "id": rid, "status": "completed", "subject": subject,
            "authored": _iso(days_ago),
            "item": [{"linkId": "1", "text": NUMBNESS_ITEM, "answer": [{"valueCoding": {"display": answer}}]}]}


FORMS = st.integers(0, 4)


@PROPERTY
@given(st.sampled_from(TRIAGE_SET), FORMS, st.sampled_from(PHRASES), st.sampled_from(CODED), st.floats(0, 13.5))
def test_adding_a_current_red_flag_always_gives_mscc(fixture, form, phrase, code, days_ago) -> None:
    name, bundle, hook = fixture
    if not red_flag_eligible(bundle):
        return
    changed = add(bundle, red_flag(patient_id(bundle), form, phrase, code, days_ago, negated=False))
    assert top_rule(changed, hook) == MSCC, name


@PROPERTY
@given(st.sampled_from(TRIAGE_SET), FORMS, st.sampled_from(PHRASES), st.sampled_from(CODED),
       st.sampled_from(NEGATIONS), st.floats(0, 13.5))
def test_adding_a_negated_red_flag_never_changes_the_cards(fixture, form, phrase, code, negation, days_ago) -> None:
    name, bundle, hook = fixture
    changed = add(bundle, red_flag(patient_id(bundle), form, phrase, code, days_ago, negated=True, negation=negation))
    assert cards(changed, hook) == cards(bundle, hook), name


# --- invariances -------------------------------------------------------------------------------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?")


def shifted(value: Any, days: int) -> Any:
    if isinstance(value, dict):
        return {k: shifted(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shifted(v, days) for v in value]
    if isinstance(value, str) and _DATE.fullmatch(value):
        if "T" not in value:
            return (date.fromisoformat(value) + timedelta(days=days)).isoformat()
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(days=days)
        text = moment.isoformat(timespec="microseconds" if "." in value else "seconds")
        return text.replace("+00:00", "Z") if value.endswith("Z") else text
    return value


def renamed(bundle: dict[str, Any], salt: int) -> dict[str, Any]:
    ids = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
    mapping = {f"{t}/{i}": f"{t}/n{salt}-{n}" for n, (t, i) in enumerate(sorted(ids))}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            if "resourceType" in out and isinstance(out.get("id"), str):
                key = f"{out['resourceType']}/{out['id']}"
                if key in mapping:
                    out["id"] = mapping[key].split("/", 1)[1]
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and value in mapping:
            return mapping[value]
        return value

    return walk(bundle)


def unrelated(pid: str, n: int) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{pid}"}
    vital = "http://terminology.hl7.org/CodeSystem/observation-category"
    out: list[dict[str, Any]] = []
    for i in range(n):
        out += [
            {"resourceType": "Observation", "id": f"{pid}-bp{i}", "status": "final", "subject": subject,
             "category": [{"coding": [{"system": vital, "code": "vital-signs"}]}],
             "code": bf.concept(bf.LOINC, "85354-9", "Blood pressure panel"), "effectiveDateTime": _iso(i + 0.2),
             "component": [{"code": bf.concept(bf.LOINC, "8480-6", "Systolic blood pressure"),
                            "valueQuantity": {"value": 120 + i, "unit": "mm[Hg]", "system": bf.UCUM, "code": "mm[Hg]"}},
                           {"code": bf.concept(bf.LOINC, "8462-4", "Diastolic blood pressure"),
                            "valueQuantity": {"value": 80, "unit": "mm[Hg]", "system": bf.UCUM, "code": "mm[Hg]"}}]},
            {"resourceType": "Observation", "id": f"{pid}-wt{i}", "status": "final", "subject": subject,
             "code": bf.concept(bf.LOINC, "29463-7", "Body weight"), "effectiveDateTime": _iso(i + 0.3),
             "valueQuantity": {"value": 70, "unit": "kg", "system": bf.UCUM, "code": "kg"}},
            {"resourceType": "Condition", "id": f"{pid}-htn{i}", "subject": subject,
             "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
             "code": bf.concept(bf.ICD, "I10", "Essential (primary) hypertension"), "onsetDateTime": _iso(400 + i)},
            {"resourceType": "Immunization", "id": f"{pid}-imm{i}", "status": "completed", "patient": subject,
             "vaccineCode": {"text": "Influenza vaccine"}, "occurrenceDateTime": _iso(30 + i)},
            {"resourceType": "Encounter", "id": f"{pid}-enc{i}", "status": "finished", "subject": subject,
             "class": bf.coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")},
            {"resourceType": "QuestionnaireResponse", "id": f"{pid}-phq{i}", "status": "completed", "subject": subject,
             "authored": _iso(i + 1), "item": [
                 {"linkId": "1", "text": "Little interest or pleasure in doing things", "answer": [{"valueCoding": {"display": "Several days"}}]},
                 {"linkId": "3", "text": "Trouble falling or staying asleep, or sleeping too much", "answer": [{"valueInteger": 2}]},
                 {"linkId": "8", "text": "Moving or speaking so slowly that other people could have noticed",
                  "answer": [{"valueCoding": {"display": "More than half the days"}}]}]},
            {"resourceType": "Observation", "id": f"{pid}-nursing{i}", "status": "final", "subject": subject,
             "code": {"text": "Nursing note"}, "effectiveDateTime": _iso(i + 0.4),
             "valueString": "Walking well with a frame, voiding normally, eating and drinking; bladder scan 60 mL"},
        ]
    return out


ALL = st.sampled_from(FIXTURE_SET)


@PROPERTY
@given(ALL, st.integers(-3000, 3000))
def test_shifting_every_date_and_now_keeps_the_cards(fixture, days) -> None:
    name, bundle, hook = fixture
    assert cards(shifted(bundle, days), hook, NOW + timedelta(days=days)) == cards(bundle, hook), name


@PROPERTY
@given(ALL, st.randoms(use_true_random=False), st.integers(0, 10**6))
def test_reordering_and_renaming_keep_the_cards(fixture, rnd, salt) -> None:
    name, bundle, hook = fixture
    changed = renamed(bundle, salt)
    entries = changed["entry"][:]
    rnd.shuffle(entries)
    changed["entry"] = entries
    assert cards(changed, hook) == cards(bundle, hook), name


@PROPERTY
@given(ALL, st.integers(1, 3))
def test_unrelated_resources_keep_the_cards(fixture, n) -> None:
    name, bundle, hook = fixture
    assert cards(add(bundle, *unrelated(patient_id(bundle), n)), hook) == cards(bundle, hook), name


_GCSF_WORDS = re.compile(r"grastim|neulasta|neupogen|udenyca|fulphila|ziextenzo|nyvepria|zarxio|nivestym|releuko|granix|"
                         r"rolvedon|stimufend|ryzneuta|nypozi|fylnetra|g-?csf|colony[- ]stimulating|onpro", re.I)
_GCSF_CODES = {c["code"] for name in ("gcsf-long-acting", "gcsf-daily")
               for inc in json.loads((ROOT / "knowledge" / "valuesets" / f"{name}.json").read_text())["compose"]["include"]
               for c in inc.get("concept", [])}


def without_gcsf(bundle: dict[str, Any]) -> dict[str, Any]:
    def is_gcsf(resource: dict[str, Any]) -> bool:
        if not resource["resourceType"].startswith("Medication"):
            return False
        text = json.dumps(resource)
        return bool(_GCSF_WORDS.search(text)) or any(f'"{code}"' in text for code in _GCSF_CODES)

    out = copy.deepcopy(bundle)
    out["entry"] = [e for e in out["entry"] if not is_gcsf(e["resource"])]
    return out


@pytest.mark.parametrize("fixture", TRIAGE_SET, ids=[f[0] for f in TRIAGE_SET])
def test_removing_the_gcsf_never_leaves_a_gcsf_bone_pain_card(fixture) -> None:
    name, bundle, hook = fixture
    assert not any(rule == GCSF for rule, _ in cards(without_gcsf(bundle), hook)), name


# --- generated patients ----------------------------------------------------------------------


@st.composite
def generated_patients(draw) -> dict[str, Any]:
    p = bf.P(f"gen-{draw(st.integers(0, 10**6))}")
    if draw(st.booleans()):
        p.breast_cancer()
    if draw(st.booleans()):
        p.chemo(draw(st.integers(1, 120)))
    if draw(st.booleans()):
        p.peg(draw(st.integers(0, 30)))
    if draw(st.booleans()):
        p.condition("bone-mets", bf.BONE_METS, onset=200, recorded=200)
    onset = draw(st.one_of(st.none(), st.integers(0, 400)))
    if onset is not None:
        p.back_pain(onset, code=draw(st.sampled_from([(bf.ICD, "M54.50", "Low back pain, unspecified"), bf.THORACIC,
                                                      bf.LEGACY_LBP, bf.BACKACHE])),
                    clinical=draw(st.sampled_from(["active", "active", "recurrence", "resolved"])))
    for days, value in draw(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10)), max_size=4, unique_by=lambda x: x[0])):
        p.score(days + 0.25, value)
    if draw(st.booleans()):
        p.safe_labs()
    return bf.fixture_bundle(p.resources)


@PROPERTY
@given(generated_patients(), FORMS, st.sampled_from(PHRASES), st.sampled_from(CODED), st.floats(0, 13.5),
       st.sampled_from(NEGATIONS))
def test_generated_patients_red_flags(bundle, form, phrase, code, days_ago, negation) -> None:
    pid = patient_id(bundle)
    base = cards(bundle, "patient-view")
    negated = add(bundle, red_flag(pid, form, phrase, code, days_ago, negated=True, negation=negation))
    assert cards(negated, "patient-view") == base
    if red_flag_eligible(bundle):
        current = add(bundle, red_flag(pid, form, phrase, code, days_ago, negated=False))
        assert top_rule(current, "patient-view") == MSCC
    else:
        assert MSCC not in {rule for rule, _ in base}


@PROPERTY
@given(generated_patients(), st.integers(-2000, 2000), st.randoms(use_true_random=False), st.integers(1, 2))
def test_generated_patients_invariances(bundle, days, rnd, n) -> None:
    base = cards(bundle, "patient-view")
    assert cards(shifted(bundle, days), "patient-view", NOW + timedelta(days=days)) == base
    changed = add(renamed(bundle, 7), *unrelated(patient_id(renamed(bundle, 7)), n))
    rnd.shuffle(changed["entry"])
    assert cards(changed, "patient-view") == base
    assert not any(rule == GCSF for rule, _ in cards(without_gcsf(bundle), "patient-view"))


# --- every fixture, every phrasing (deterministic; the properties above sample) --------------


@pytest.mark.parametrize("fixture", TRIAGE_SET, ids=[f[0] for f in TRIAGE_SET])
def test_every_fixture_with_every_red_flag_form(fixture) -> None:
    """Issue 11 deliverable 5 over *every* triage fixture: each free-text phrasing (as a note and
    as a neuro-panel component), each coded red flag (Condition and exam Observation) and the
    PRO-CTCAE answer, added current, gives mscc-red-flags when the patient is eligible (and
    otherwise adds none); added negated (each negation form in turn), it changes no card."""
    name, bundle, hook = fixture
    pid, base, eligible = patient_id(bundle), cards(bundle, hook), red_flag_eligible(bundle)
    variants = [(form, phrase, CODED[0]) for form in (0, 3) for phrase in PHRASES]
    variants += [(form, PHRASES[0], code) for form in (1, 2) for code in CODED] + [(4, PHRASES[0], CODED[0])]
    for n, (form, phrase, code) in enumerate(variants):
        current = add(bundle, red_flag(pid, form, phrase, code, 1.0, negated=False))
        if eligible:
            assert top_rule(current, hook) == MSCC, (name, form, phrase)
        else:  # no back pain of any onset nor metastasis: a red flag alone adds no MSCC card
            assert (MSCC in {r for r, _ in cards(current, hook)}) == (MSCC in {r for r, _ in base}), (name, form, phrase)
        negation = NEGATIONS[n % len(NEGATIONS)]
        negated = add(bundle, red_flag(pid, form, phrase, code, 1.0, negated=True, negation=negation))
        assert cards(negated, hook) == base, (name, form, negation.format(phrase))
