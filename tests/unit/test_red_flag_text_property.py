"""Metamorphic property (issue 11): adding a free-text red flag phrasing to a patient with back
pain (of any onset) and oncology context always yields mscc-red-flags; negating it never does."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from assessment.config import parse_rule_config
from assessment.engine import assess
from tests.support.knowledge import KNOWLEDGE, extract
from tests.unit.test_extract_clinical import ICD

CONFIG = parse_rule_config(tomllib.loads((KNOWLEDGE / "rules.toml").read_text("utf-8")))
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
MSCC = "mscc-red-flags"

PHRASES = [
    "Weakness in both legs since this morning", "Both legs feel weak", "Bilateral LE weakness 4/5",
    "Trouble walking since yesterday", "Unable to void since last night, bladder scan 900 mL",
    "new weakness in both legs", "can't walk", "unable to weight-bear", "difficulty walking",
    "unsteady gait", "foot drop", "saddle numbness", "saddle anaesthesia", "urinary retention",
    "incontinent of urine", "incontinent of faeces", "loss of bladder control", "loss of bowel control",
    "legs gave way", "can't feel my legs",
]
# Findings written with a negative word of their own (a finding phrase that begins with a
# modifier word is the finding: the longest phrase wins) and findings after a comma that ends
# the scope of an earlier negation (issue 11: each was a missed critical).
PHRASES += [
    "Not able to walk", "Not able to stand", "pt not able to weight bear", "Not able to void",
    "Has not passed urine since last night", "No sensation in saddle area", "no power in legs",
    "no feeling in legs", "No bladder control", "no control of bowels", "no longer able to walk",
    "not voided since yesterday", "unable to ambulate", "difficulty ambulating", "non-ambulatory",
    "catheterised for retention",
    "no numbness, new weakness in both legs", "Denies fever, reports bilateral leg weakness",
    "Denies saddle anaesthesia, has urinary retention", "No fever, c/o bilateral leg weakness",
    "denies incontinence, unable to walk since yesterday", "No recent falls, unsteady gait noted",
]
#: phrases that read as one finding when negated as a whole ("No {}"): no comma (a second
#: finding after a comma is outside the negation, e.g. a measured bladder volume) and no
#: negative word of their own
NEGATABLE = [p for p in PHRASES if "," not in p and p.split()[0].lower() not in ("no", "not", "has", "non-ambulatory")]
NEGATIONS = ["No {}", "Denies {}", "{}: denied", "Negative for {}", "Without {}"]
PREFIXES = ["", "Seen today. ", "No fever. ", "Pain 6/10 at rest; ", "Denies chest pain. "]


def _day(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")


def _patient(text: str, pain_days: int, note_days: float) -> list[dict]:
    subject = {"reference": "Patient/p1"}
    active = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
    return [
        {"resourceType": "Condition", "id": "cancer", "subject": subject, "clinicalStatus": active,
         "code": {"coding": [{"system": ICD, "code": "C50.911", "display": "Malignant neoplasm of unspecified site of right female breast"}]},
         "onsetDateTime": _day(300)},
        {"resourceType": "Condition", "id": "backpain", "subject": subject, "clinicalStatus": active,
         "code": {"coding": [{"system": ICD, "code": "M54.50", "display": "Low back pain, unspecified"}]},
         "onsetDateTime": _day(pain_days)},
        {"resourceType": "Observation", "id": "note", "status": "final", "subject": subject,
         "code": {"text": "Nursing note"}, "effectiveDateTime": _day(note_days), "valueString": text},
    ]


def _rules(text: str, pain_days: int, note_days: float) -> list[str]:
    record = extract(*_patient(text, pain_days, note_days))
    return [f.rule_id for f in assess(record, now=NOW, config=CONFIG, hook="patient-view").findings]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PHRASES), st.sampled_from(PREFIXES), st.integers(1, 400), st.floats(0, 13))
def test_a_current_text_red_flag_always_gives_mscc(phrase: str, prefix: str, pain_days: int, note_days: float) -> None:
    assert _rules(prefix + phrase, pain_days, note_days) == [MSCC]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NEGATABLE), st.sampled_from(NEGATIONS), st.sampled_from(PREFIXES), st.integers(1, 400))
def test_a_negated_text_red_flag_never_gives_mscc(phrase: str, negation: str, prefix: str, pain_days: int) -> None:
    assert MSCC not in _rules(prefix + negation.format(phrase.lower()), pain_days, 1)
