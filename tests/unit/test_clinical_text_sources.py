"""Issue 11 (text helper): every text decision through the clinical-text component, misspellings,
volumes, absent values / answers, and the red-flag sources (Condition, Observation value and
components, QuestionnaireResponse), generalised weakness, pain location."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assessment.config import parse_rule_config
from assessment.engine import assess
from assessment.facts import ClinicalKind, SpineSite
from fhir_mapping import clinical_text, text_terms
from fhir_mapping.clinical_text import absent_answer, absent_value, analyse, current_kinds, findings
from fhir_mapping.knowledge import check_knowledge, load_knowledge
from tests.support.knowledge import KNOWLEDGE, extract
from tests.unit.test_extract_clinical import ICD, LOINC, SCT, coded, condition

NEURO, BLADDER = "red-flag-neurological", "red-flag-bladder-bowel"
CONFIG = parse_rule_config(tomllib.loads((KNOWLEDGE / "rules.toml").read_text("utf-8")))
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
SUBJECT = {"reference": "Patient/p1"}
PAIN_SCORE = coded(LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")


def day(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")


# --- the component ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("weakeness in both legs", NEURO), ("numbess of both legs", NEURO), ("parasthesias", NEURO),
        ("paresthesais in feet", NEURO), ("bilatreal LE weakness", NEURO), ("urinary retnetion", BLADDER),
        ("Bladder scan 900mL", BLADDER), ("PVR of 450 mL", BLADDER), ("post-void residual 1.2 L", BLADDER),
        ("numbness around the saddle area", NEURO), ("legs feel like jelly", NEURO), ("can't feel my legs", NEURO),
        ("Legs gave way twice", NEURO), ("no change in numbness", NEURO), ("Weakness in legs in the past 2 days", NEURO),
        ("Leg weakness, resolved but now unable to void", BLADDER), ("walking difficulty", NEURO), ("gait unsteady", NEURO),
        ("Weakness in both legs, no numbness", NEURO), ("Leg weakness: no. Bladder: retention of urine", BLADDER),
        ("Leg weakness: yes", NEURO), ("Saddle numbness? No. Leg weakness? Yes", NEURO), ("no fever; legs weak", NEURO),
        ("In the last 7 days, how often did you have loss of control of urine (leakage)?", BLADDER),
    ],
)
def test_misspellings_volumes_and_lay_phrasings_are_current(text: str, kind: str) -> None:
    assert kind in current_kinds(text)


@pytest.mark.parametrize(
    "text",
    ["bladder scan 50 mL", "PVR 120 ml", "bladder scan done", "trouble talking", "fluid retention", "no new leg weakness",
     "Denies new leg weakness", "Weakness in both legs - denies", "leg weakness, resolved", "PMH: foot drop",
     "generalised weakness and fatigue", "Legs: no weakness", "Leg strength normal, no weakness",
     "able to walk, no difficulty", "Leg weakness: no", "Numbness - neg", "urinary retention: none noted",
     "Saddle numbness? No. Leg weakness? Denies. Retention? Nil"],
)
def test_small_volumes_everyday_words_negation_and_history_are_not_current(text: str) -> None:
    assert {NEURO, BLADDER}.isdisjoint(current_kinds(text))


def test_walking_pair_needs_adjacent_words() -> None:
    assert current_kinds("walks unaided, unable to void") == (BLADDER,)


@pytest.mark.parametrize(
    ("text", "kind"),
    [("LBP", "back-pain"), ("c/o back pain", "back-pain"), ("lumbago", "back-pain"), ("pain in lower back", "back-pain"),
     ("adenocarcinoma of the breast", "cancer"), ("spinal cord compression", "mscc"), ("bony mets", "bone-metastasis")],
)
def test_every_clinical_kind_is_read_by_the_component(text: str, kind: str) -> None:
    assert kind in current_kinds(text)


@pytest.mark.parametrize("text", ["family history of breast cancer", "benign neoplasm", "breast cancer screening",
                                  "no evidence of malignancy"])
def test_cancer_excludes_and_negation(text: str) -> None:
    assert "cancer" not in current_kinds(text)


def test_history_covers_only_its_own_segment() -> None:
    found = {f.kind: f for f in findings("Leg weakness, resolved but now unable to void")}
    assert found[NEURO].historical and not found[BLADDER].historical


@pytest.mark.parametrize(("text", "absent"), [("No", True), ("absent", True), ("Denies", True), ("Normal", True),
                                              ("Patient denies", True), ("not present today", True),
                                              ("present but ruled out later", False),
                                              ("Reports numbness, denies weakness", False), ("no change", False),
                                              ("Present", False), ("Yes", False), ("bilateral, 4/5", False)])
def test_absent_values(text: str, absent: bool) -> None:
    assert absent_value(text) is absent


@pytest.mark.parametrize(("text", "absent"), [("Never", True), ("None", True), ("Not at all", True), ("0", True),
                                              ("Rarely", False), ("Mild", False), ("A little bit", False),
                                              ("None of these apply to me but legs weak", False)])
def test_absent_answers_must_be_the_whole_answer(text: str, absent: bool) -> None:
    assert absent_answer(text) is absent


def test_400_kb_text_with_many_negations_and_hits_is_linear() -> None:
    config = clinical_text.parse_text_config({**_raw(), "max_chars": 10_000_000})
    unit = "No numbness, but weakeness in both legs; denies retention. bladder scan 900 mL, "
    small = analyse(unit * (40_000 // len(unit)), config)
    large = analyse(unit * (400_000 // len(unit)), config)
    assert len(large.findings) >= 9 * len(small.findings) > 0
    assert large.steps <= 11 * small.steps


def _raw() -> dict:
    with text_terms.DEFAULT_PATH.open("rb") as fh:
        return tomllib.load(fh)


# --- knowledge overlay -----------------------------------------------------------------------


def test_a_site_overlay_changes_the_component(tmp_path: Path) -> None:
    # tables merge key by key, arrays replace ours whole (as for matching.toml)
    (tmp_path / "clinical_text.toml").write_text(
        '[triggers]\n"red-flag-bladder-bowel" = ["wobbly knees"]\n', encoding="utf-8")
    knowledge = load_knowledge(tmp_path)
    assert BLADDER in clinical_text.current_kinds("wobbly knees", knowledge.matching.text)
    assert BLADDER not in clinical_text.current_kinds("urinary retention", knowledge.matching.text)
    assert NEURO in clinical_text.current_kinds("unable to walk", knowledge.matching.text)  # other kinds kept
    assert BLADDER in clinical_text.current_kinds("urinary retention")
    assert NEURO not in clinical_text.current_kinds("wobbly knees")


def test_free_text_in_a_matching_overlay_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "matching.toml").write_text('[negation]\nbefore = ["no"]\n', encoding="utf-8")
    assert any("clinical_text.toml" in p for p in check_knowledge(tmp_path))


# --- sources ---------------------------------------------------------------------------------


def observation(rid: str = "o1", **extra) -> dict:
    resource = {"resourceType": "Observation", "id": rid, "status": "final", "subject": SUBJECT,
                "effectiveDateTime": day(1)}
    resource.update(extra)
    return resource


def test_a_component_of_a_neuro_panel_is_a_red_flag() -> None:
    panel = observation(code={"text": "Neuro assessment"}, component=[
        {"code": {"text": "Sensation"}, "valueString": "intact"},
        {"code": {"text": "Lower limb power"}, "valueString": "bilateral leg weakness 3/5"},
    ])
    assert {f.kind for f in extract(panel).clinical} == {ClinicalKind.RED_FLAG_NEURO}


def test_an_absent_component_is_not_a_red_flag() -> None:
    panel = observation(code={"text": "Neuro assessment"}, component=[
        {"code": coded(SCT, "449813001", "Numbness of saddle area"), "valueString": "No"},
        {"code": {"text": "Urinary retention"}, "valueCodeableConcept": coded(SCT, "2667000", "Absent")},
    ])
    assert extract(panel).clinical == ()


@pytest.mark.parametrize("code", [coded(ICD, "M54.50", "Low back pain, unspecified"), {"text": "Back pain"}])
def test_a_red_flag_in_the_value_of_a_back_pain_observation_is_read(code: dict) -> None:
    obs = observation(code=code, valueString="new weakness in both legs since this morning")
    assert {f.kind for f in extract(obs).clinical} == {ClinicalKind.BACK_PAIN, ClinicalKind.RED_FLAG_NEURO}


def test_a_value_codeable_concept_text_is_read() -> None:
    obs = observation(code={"text": "Symptom"}, valueCodeableConcept={"text": "Both legs feel weak"})
    assert {f.kind for f in extract(obs).clinical} == {ClinicalKind.RED_FLAG_NEURO}


@pytest.mark.parametrize("code", [coded(ICD, "R53.1", "Weakness"), coded(ICD, "M62.81", "Muscle weakness (generalized)"),
                                  coded(SCT, "26544005", "Muscle weakness (finding)")])
def test_generalised_weakness_alone_is_not_a_limb_red_flag(code: dict) -> None:
    assert extract(condition(code, onsetDateTime=day(1))).clinical == ()
    assert extract(observation(code=code, valueBoolean=True)).clinical == ()


@pytest.mark.parametrize("extra", [
    {"bodySite": [coded(SCT, "61685007", "Lower limb structure")]},
    {"bodySite": [{"text": "both legs"}]},
    {"code": {**coded(ICD, "R53.1", "Weakness"), "text": "Weakness of both legs"}},
])
def test_generalised_weakness_of_the_legs_is_a_red_flag(extra: dict) -> None:
    resource = condition(coded(ICD, "R53.1", "Weakness"), onsetDateTime=day(1))
    resource.update(extra)
    assert {f.kind for f in extract(resource).clinical} == {ClinicalKind.RED_FLAG_NEURO}


def questionnaire(answer: dict, *, text: str = "In the last 7 days, what was the SEVERITY of your NUMBNESS OR "
                  "TINGLING IN YOUR HANDS OR FEET at its WORST?", status: str = "completed", nested: bool = False) -> dict:
    item = {"linkId": "1", "text": text, "answer": [answer]}
    if nested:
        item = {"linkId": "g", "text": "PRO-CTCAE", "item": [item]}
    return {"resourceType": "QuestionnaireResponse", "id": "q1", "status": status, "subject": SUBJECT,
            "authored": day(2), "item": [item]}


@pytest.mark.parametrize("answer", [{"valueCoding": {"code": "1", "display": "Mild"}}, {"valueString": "Severe"},
                                    {"valueInteger": 2}, {"valueBoolean": True}])
def test_a_symptom_item_answered_above_none_is_a_red_flag_at_authored(answer: dict) -> None:
    for nested in (False, True):
        (fact,) = extract(questionnaire(answer, nested=nested)).clinical
        assert fact.kind is ClinicalKind.RED_FLAG_NEURO and fact.time == NOW - timedelta(days=2)


@pytest.mark.parametrize("answer", [{"valueCoding": {"code": "0", "display": "None"}}, {"valueString": "Never"},
                                    {"valueCoding": {"code": "0"}}, {"valueInteger": 0}, {"valueBoolean": False},
                                    {"valueString": "Not at all"}])
def test_a_symptom_item_answered_none_is_not_a_red_flag(answer: dict) -> None:
    assert extract(questionnaire(answer)).clinical == ()


def test_questionnaire_bowel_control_item_and_entered_in_error() -> None:
    text = "In the last 7 days, how OFTEN did you have LOSS OF CONTROL OF BOWEL MOVEMENTS?"
    answer = {"valueCoding": {"display": "Occasionally"}}
    assert {f.kind for f in extract(questionnaire(answer, text=text)).clinical} == {ClinicalKind.RED_FLAG_SPHINCTER}
    assert extract(questionnaire(answer, text=text, status="entered-in-error")).clinical == ()


def test_a_free_text_answer_of_any_item_is_read_with_negation() -> None:
    assert extract(questionnaire({"valueString": "legs gave way on the stairs"}, text="Anything else?")).clinical
    assert extract(questionnaire({"valueString": "no leg weakness"}, text="Anything else?")).clinical == ()


# --- pain location ---------------------------------------------------------------------------


def score(rid: str = "s1", **extra) -> dict:
    return observation(rid, code=PAIN_SCORE, valueInteger=6, **extra)


def location(value: str, rid: str = "loc", **extra) -> dict:
    return observation(rid, code={"text": "Pain primary location"}, valueString=value, **extra)


def test_a_pain_location_observation_in_the_same_encounter_locates_the_score() -> None:
    enc = {"reference": "Encounter/e1"}
    record = extract(location("Back", encounter=enc, effectiveDateTime=day(1.5)), score(encounter=enc))
    assert [s.site for s in record.pain_scores] == [SpineSite.SPINE]


@pytest.mark.parametrize(("hours", "site"), [(0.5, SpineSite.LUMBAR), (1.0, SpineSite.LUMBAR), (2.0, None)])
def test_a_pain_location_within_one_hour_locates_the_score(hours: float, site: SpineSite | None) -> None:
    loc = location("Lower back", effectiveDateTime=day(1 + hours / 24))
    for order in ((loc, score()), (score(), loc)):
        assert [s.site for s in extract(*order).pain_scores] == [site]


def test_a_pain_location_elsewhere_does_not_make_back_pain() -> None:
    assert [s.site for s in extract(location("Left knee"), score()).pain_scores] == [None]


def test_a_location_component_of_a_pain_panel_locates_the_score() -> None:
    panel = score(component=[{"code": {"text": "Pain location"}, "valueCodeableConcept": {"text": "Thoracic spine"}}])
    assert [s.site for s in extract(panel).pain_scores] == [SpineSite.THORACIC]


def test_a_located_score_with_cancer_gives_a_back_pain_card() -> None:
    cancer = condition(coded(ICD, "C50.911", "Malignant neoplasm of right female breast"), rid="ca",
                       clinicalStatus={"coding": [{"code": "active"}]}, onsetDateTime=day(300))
    record = extract(cancer, location("Back"), score())
    assert assess(record, now=NOW, config=CONFIG, hook="patient-view").findings
    assert not assess(extract(cancer, score()), now=NOW, config=CONFIG, hook="patient-view").findings


# --- cord compression without back pain --------------------------------------------------------


@pytest.mark.parametrize(("days_ago", "fires"), [(3, True), (14, True), (20, False)])
def test_a_recent_cord_compression_diagnosis_counts_without_back_pain(days_ago: float, fires: bool) -> None:
    cancer = condition(coded(ICD, "C50.911", "Malignant neoplasm of right female breast"), rid="ca",
                       clinicalStatus={"coding": [{"code": "active"}]}, onsetDateTime=day(300))
    mscc = condition(coded(ICD, "G95.20", "Unspecified cord compression"), rid="cc",
                     clinicalStatus={"coding": [{"code": "active"}]}, onsetDateTime=day(days_ago))
    rules = [f.rule_id for f in assess(extract(cancer, mscc), now=NOW, config=CONFIG, hook="patient-view").findings]
    assert rules == (["mscc-red-flags"] if fires else [])


# --- expects the codes helper's value sets (issue 11: coded paraplegia) ---------------------------


@pytest.mark.parametrize("code", ["G82.20", "G82.21", "G82.22"])
def test_coded_paraplegia_is_a_red_flag(code: str) -> None:
    facts = extract(condition(coded(ICD, code), onsetDateTime=day(1))).clinical
    assert {f.kind for f in facts} == {ClinicalKind.RED_FLAG_NEURO}


def test_an_old_onset_cord_compression_recorded_this_week_counts() -> None:
    cancer = condition(coded(ICD, "C50.911", "Malignant neoplasm of right female breast"), rid="ca",
                       clinicalStatus={"coding": [{"code": "active"}]}, onsetDateTime=day(300))
    mscc = condition(coded(ICD, "G83.4", "Cauda equina syndrome"), rid="cc",
                     clinicalStatus={"coding": [{"code": "active"}]}, onsetDateTime=day(40), recordedDate=day(2))
    rules = [f.rule_id for f in assess(extract(cancer, mscc), now=NOW, config=CONFIG, hook="patient-view").findings]
    assert rules == ["mscc-red-flags"]
