"""Build the scenario fixtures in ``tests/fixtures/`` (FHIR Bundles + expected-cards files).

Run from the repository root::

    python tools/build_fixtures.py          # rewrite tests/fixtures/*.json and the rule docs' tables
    python tools/build_fixtures.py --check  # exit 1 when a committed file differs from what this builds

Every fixture is a small, readable, *synthetic* patient written for the tests (the PACIO
patient excepted, see tests/fixtures/README.md). All times are relative to ONE evaluation time,
:data:`NOW` (``2025-03-10T09:00:00Z``); the tests and ``tools/clinical_validation.py`` evaluate
every fixture at that time. The JSON files are committed; this script documents how they were
made and lets a reviewer change one and regenerate.

Naming: ``in-<rule-id>-<scenario>.json`` (the rule must fire) or ``out-<rule-id>-<scenario>.json``
(it must not), each with ``<same name>.expected.json`` =
``{"description": ..., "hook": ..., "cards": [{"rule": ..., "indicator": ...}]}``.
Only codes from ``knowledge/valuesets/`` are used (plus the negation qualifier SNOMED 2667000
"Absent" named by CLINICAL.md); a few resources carry text only, on purpose.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assessment.config import RULE_IDS  # noqa: E402
from tools.harness.scenarios import (  # noqa: E402
    ICD,
    LOINC,
    RX,
    SCT,
    UCUM,
    SyntheticPatient,
    coding,
    concept,
    iso_at,
    transaction,
)

OUT = ROOT / "tests" / "fixtures"
DOCS = ROOT / "docs" / "rules"
PACIO_SOURCE = ROOT.parent / "shared" / "data" / "pacio-mcc" / "MCCCarePlan-transactionBundle.json"
PACIO_NAME = "out-back-pain-supportive-care-pacio-no-cancer.json"

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
NOW_ISO = "2025-03-10T09:00:00Z"

RULES = RULE_IDS
MSCC, PROG, GCSF, SUPP, DOSE, NSAID = RULES

FIXTURE_TAG = {
    "system": "https://backpain-cds.org/fhir/CodeSystem/fixture",
    "code": "test-fixture",
    "display": "backpain-cds test fixture",
}

Resource = dict[str, Any]


def iso(days_ago: float) -> str:
    """The instant ``days_ago`` days before :data:`NOW` (seconds precision, Z)."""
    return iso_at(NOW - timedelta(days=days_ago))


class P(SyntheticPatient):
    """One fixture patient (the shared builder of :mod:`tools.harness.scenarios`): times count
    back from :data:`NOW`, the Patient is named and tagged as a test fixture."""

    def __init__(self, pid: str) -> None:
        super().__init__(pid, NOW, tag=FIXTURE_TAG, named=True)


THORACIC = (ICD, "M54.6", "Pain in thoracic spine")
LEGACY_LBP = (ICD, "M54.5", "Low back pain")
BACKACHE = (SCT, "161891005", "Backache (finding)")
BODY_CERVICAL = concept(SCT, "122494005", "Cervical spine structure")
BODY_LUMBAR = concept(SCT, "122496007", "Lumbar spine structure")
RETENTION = concept(SCT, "267064002", "Retention of urine (disorder)", "Urinary retention")
MUSCLE_WEAKNESS = concept(SCT, "26544005", "Muscle weakness (finding)", "Leg weakness")
NUMBNESS = concept(SCT, "44077006", "Numbness (finding)", "Numbness of legs")
SADDLE = concept(SCT, "449813001", "Numbness of saddle area (finding)")
CAUDA_EQUINA = concept(ICD, "G83.4", "Cauda equina syndrome")
BONE_METS = concept(ICD, "C79.51", "Secondary malignant neoplasm of bone")
ABSENT = {"valueCodeableConcept": concept(SCT, "2667000", "Absent (qualifier value)", "Absent")}
PRESENT_TRUE = {"valueBoolean": True}


LONG_NOTE = (
    "Seen on the ward this afternoon for routine review after cycle 3 of chemotherapy. " * 10
    + "Overnight she reports new weakness in both legs and needed help to the bathroom. "
    + "Observations stable, eating and drinking well, husband at the bedside, discharge planning discussed. " * 10
).strip()


def gcsf_bone_pain_base(p: P, *, score: int = 5, safe_labs: bool = True) -> P:
    """Breast cancer, chemotherapy 4 days ago, pegfilgrastim 3 days ago, low back pain 2 days ago."""
    p.breast_cancer()
    p.chemo(4)
    p.peg(3)
    p.back_pain(2)
    p.score(1, score)
    if safe_labs:
        p.safe_labs()
    return p


def supportive_base(p: P, *, onset: float = 5, score: int = 3) -> P:
    """Breast cancer, chemotherapy 10 days ago, mild low back pain; no G-CSF."""
    p.breast_cancer()
    p.chemo(10)
    p.back_pain(onset)
    p.score(1, score)
    p.safe_labs()
    return p


def prior_gcsf_episode(p: P, *, pain_day: float = 2, peg_ago: float = 40, **kw: Any) -> P:
    """Breast cancer; chemotherapy and pegfilgrastim in the last cycle, back pain ``pain_day``
    days after it (resolved since)."""
    p.breast_cancer()
    p.chemo(peg_ago + 1, rid="chemo-prev")
    p.chemo(1)
    p.peg(peg_ago, rid="peg-prev")
    p.back_pain(peg_ago - pain_day, rid="backpain-prev", clinical="resolved", **kw)
    return p


# -- the fixtures -----------------------------------------------------------------------------


@dataclass
class Fixture:
    name: str  #: file stem, in-<rule>-<scenario> / out-<rule>-<scenario>
    description: str
    resources: list[Resource]
    cards: list[tuple[str, str]]
    hook: str = "patient-view"


def card(rule: str, indicator: str) -> tuple[str, str]:
    return (rule, indicator)


def fixtures() -> list[Fixture]:
    out: list[Fixture] = []

    def fx(name: str, key: str, description: str, build, cards, hook: str = "patient-view") -> None:
        p = P(f"bpfx-{key}")
        build(p)
        out.append(Fixture(name, description, p.resources, list(cards), hook))

    # ---- mscc-red-flags ------------------------------------------------------------------
    fx("in-mscc-red-flags-urinary-retention", "m1",
       "G-CSF bone-pain picture plus urinary retention (SNOMED 267064002) yesterday: the red flag outranks G-CSF",
       lambda p: (gcsf_bone_pain_base(p), p.condition("retention", RETENTION, onset=1, recorded=1)),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-leg-weakness-observation", "m2",
       "Leg weakness recorded as an exam Observation (SNOMED 26544005, valueBoolean true) with lumbar back pain",
       lambda p: (supportive_base(p), p.observation("weakness", MUSCLE_WEAKNESS, 2, category="exam", value=PRESENT_TRUE)),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-saddle-numbness-day-14", "m3",
       "Saddle numbness (SNOMED 449813001) recorded exactly 14 days ago: the last day it still counts",
       lambda p: (supportive_base(p, onset=20), p.condition("saddle", SADDLE, onset=14, recorded=14)),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-cauda-equina-diagnosis", "m4",
       "Active cauda equina syndrome diagnosis (ICD-10-CM G83.4) from 40 days ago: an MSCC diagnosis counts at any age",
       lambda p: (supportive_base(p), p.condition("cauda-equina", CAUDA_EQUINA, onset=40, recorded=40)),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-only-finding", "m5",
       "A red flag known only by text ('difficulty walking since yesterday', no code) in a patient whose only context is chemotherapy",
       lambda p: (p.chemo(12), p.back_pain(6, code=BACKACHE),
                  p.observation("walking", {"text": "Difficulty walking since yesterday"}, 1, category="exam")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-encounter-start", "m6",
       "encounter-start at check-in: thoracic back pain plus faecal incontinence (ICD-10-CM R15.9) two days ago",
       lambda p: (p.breast_cancer(), p.chemo(8), p.back_pain(5, code=THORACIC),
                  p.condition("incontinence", concept(ICD, "R15.9", "Full incontinence of feces"), onset=2, recorded=2),
                  p.add({"resourceType": "Encounter", "id": "visit", "status": "in-progress",
                         "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"),
                         "subject": p.subject, "period": {"start": iso(0)}})),
       [card(MSCC, "critical")], hook="encounter-start")
    # free-text red flags in other words (issue 11: each used to be missed behind a gcsf card)
    fx("in-mscc-red-flags-text-both-legs-feel-weak", "ct1",
       "G-CSF bone-pain picture plus a nursing note 'Both legs feel weak' (free text, no code): critical, not G-CSF",
       lambda p: (gcsf_bone_pain_base(p),
                  p.note("note", "Both legs feel weak", code="Nursing assessment")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-negation-scope", "ct2",
       "G-CSF bone pain plus 'No numbness, but new weakness in both legs': the negation covers only its own clause",
       lambda p: (gcsf_bone_pain_base(p),
                  p.note("neuro", "No numbness, but new weakness in both legs", code="Neuro exam")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-unable-to-void", "ct3",
       "G-CSF bone pain plus 'Unable to void since last night, bladder scan 900 mL' as free text",
       lambda p: (gcsf_bone_pain_base(p),
                  p.note("bladder", "Unable to void since last night, bladder scan 900 mL", 0.3, code="Bladder")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-old-back-pain-new-weakness", "ct4",
       "Back pain for 5 months (onset 150 days ago, still active) with known bone metastasis, and "
       "'Bilateral LE weakness 4/5' yesterday: the classic MSCC history, critical although the pain is not recent",
       lambda p: (p.breast_cancer(), p.chemo(20), p.back_pain(150), p.condition("bone-mets", BONE_METS, onset=200, recorded=200),
                  p.observation("weak", {"text": "Bilateral LE weakness 4/5"}, 1, category="exam")),
       [card(MSCC, "critical")])
    fx("out-mscc-red-flags-text-denied", "ct5",
       "G-CSF bone pain with 'Denies leg weakness, numbness or trouble walking': negated, so G-CSF bone pain",
       lambda p: (gcsf_bone_pain_base(p),
                  p.note("neuro", "Denies leg weakness, numbness or trouble walking", code="Neuro review")),
       [card(GCSF, "info")])
    # more phrasings real charts use (issue 11 audit): each was a missed critical
    fx("in-mscc-red-flags-text-comma-ends-negation", "ct6",
       "G-CSF bone pain plus 'No fever, c/o bilateral leg weakness': the comma and 'c/o' end the negation's scope",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "No fever, c/o bilateral leg weakness")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-not-able-to-walk", "ct7",
       "G-CSF bone pain plus 'Not able to walk since this morning': a finding with a negative word of its own",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "Not able to walk since this morning")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-no-bladder-control", "ct8",
       "G-CSF bone pain plus 'No bladder control overnight, pad wet x3'",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "No bladder control overnight, pad wet x3")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-unable-to-ambulate", "ct9",
       "G-CSF bone pain plus 'Denies incontinence, unable to ambulate since yesterday'",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "Denies incontinence, unable to ambulate since yesterday")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-long-nursing-note", "ct13",
       "G-CSF bone pain plus a 300-word nursing note with 'she reports new weakness in both legs' in the middle: "
       "critical, and the card quotes the clause that matters, not the whole note",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", LONG_NOTE)),
       [card(MSCC, "critical")])
    fx("out-mscc-red-flags-text-negated-list", "ct10",
       "G-CSF bone pain with 'Patient denies leg weakness, numbness, or incontinence': the whole list is negated",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "Patient denies leg weakness, numbness, or incontinence")),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-text-fluid-retention", "ct11",
       "G-CSF bone pain with 'Fluid retention, ankles swollen': retention of fluid is not urinary retention",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "Fluid retention, ankles swollen")),
       [card(GCSF, "info")])
    fx("in-mscc-red-flags-undated-back-pain", "ct12",
       "Active back-pain Condition with neither onset nor recordedDate (undated), breast cancer, chemotherapy, "
       "and urinary retention recorded yesterday: active back pain of any onset, critical",
       lambda p: (p.breast_cancer(), p.chemo(9), p.condition("backpain", concept(ICD, "M54.50", "Low back pain, unspecified")),
                  p.condition("retention", RETENTION, onset=1, recorded=1)),
       [card(MSCC, "critical")])
    fx("out-mscc-red-flags-negated-boolean", "m7",
       "Leg weakness Observation with valueBoolean false (not present): G-CSF bone pain, not MSCC",
       lambda p: (gcsf_bone_pain_base(p),
                  p.observation("weakness", MUSCLE_WEAKNESS, 1, category="exam", value={"valueBoolean": False})),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-absent-value", "m8",
       "Numbness Observation whose value is SNOMED 2667000 'Absent': supportive care, not MSCC",
       lambda p: (supportive_base(p), p.observation("numbness", NUMBNESS, 1, category="exam", value=ABSENT)),
       [card(SUPP, "info")])
    fx("out-mscc-red-flags-refuted-retention", "m9",
       "Urinary retention Condition with verificationStatus refuted: it must not fire; G-CSF bone pain instead",
       lambda p: (gcsf_bone_pain_base(p),
                  p.condition("retention", RETENTION, onset=1, recorded=1, verification="refuted")),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-entered-in-error", "m10",
       "Retention Condition entered-in-error and a weakness Observation with status entered-in-error: neither counts",
       lambda p: (supportive_base(p),
                  p.condition("retention", RETENTION, onset=1, recorded=1, verification="entered-in-error"),
                  p.observation("weakness", MUSCLE_WEAKNESS, 1, category="exam", status="entered-in-error",
                                value=PRESENT_TRUE)),
       [card(SUPP, "info")])
    fx("out-mscc-red-flags-red-flag-15-days", "m11",
       "Saddle numbness recorded 15 days ago: outside the 14-day look-back, so supportive care",
       lambda p: (supportive_base(p, onset=20), p.condition("saddle", SADDLE, onset=15, recorded=15)),
       [card(SUPP, "info")])
    fx("out-mscc-red-flags-no-oncology-context", "m12",
       "Back pain with urinary retention but no active cancer and chemotherapy 120 days ago: out of scope, no card",
       lambda p: (p.chemo(120), p.back_pain(3), p.condition("retention", RETENTION, onset=1, recorded=1)),
       [])
    fx("out-mscc-red-flags-resolved-cauda-equina", "m13",
       "Cauda equina syndrome with clinicalStatus resolved is history, not a red flag: supportive care",
       lambda p: (supportive_base(p), p.condition("cauda-equina", CAUDA_EQUINA, onset=300, recorded=300,
                                                  clinical="resolved")),
       [card(SUPP, "info")])

    fx("out-mscc-red-flags-text-negated-after", "m14",
       "Exam Observation known by text only, 'Leg weakness: absent' (negation after the finding): supportive care",
       lambda p: (supportive_base(p), p.observation("neuro", {"text": "Leg weakness: absent"}, 1, category="exam")),
       [card(SUPP, "info")])

    # ---- progressive-back-pain ------------------------------------------------------------
    fx("in-progressive-back-pain-thoracic-low-score", "p1",
       "Thoracic back pain (ICD-10-CM M54.6) scoring only 2/10, inside a pegfilgrastim window: progressive by site",
       lambda p: (p.breast_cancer(), p.chemo(4), p.peg(3), p.back_pain(2, code=THORACIC), p.score(1, 2), p.safe_labs()),
       [card(PROG, "warning")])
    fx("in-progressive-back-pain-rising-scores", "p2",
       "Lumbar pain scores 3 -> 4 -> 6 within 5 days, no G-CSF: rising by >= 2 points",
       lambda p: (supportive_base(p, onset=6, score=6), p.score(5, 3), p.score(3, 4)),
       [card(PROG, "warning")])
    fx("in-progressive-back-pain-bone-metastasis", "p3",
       "Known bone metastasis (ICD-10-CM C79.51) and new mild back pain",
       lambda p: (supportive_base(p), p.condition("bone-mets", BONE_METS, onset=200, recorded=200)),
       [card(PROG, "warning")])
    fx("in-progressive-back-pain-gcsf-20-days-severe", "p4",
       "Pegfilgrastim 20 days ago, new back pain 2 days ago scoring 8/10: outside the window, severe -> imaging",
       lambda p: (p.breast_cancer(), p.chemo(21), p.peg(20), p.back_pain(2), p.score(1, 8), p.safe_labs()),
       [card(PROG, "warning")])
    fx("in-progressive-back-pain-persistent-legacy-m54-5", "p5",
       "Low back pain coded with legacy ICD-10-CM M54.5 since 20 days, still 5/10 three days ago: persistent",
       lambda p: (p.breast_cancer(), p.chemo(25), p.back_pain(20, code=LEGACY_LBP), p.score(3, 5)),
       [card(PROG, "warning")])
    fx("in-progressive-back-pain-recurrent-cycles", "p6",
       "Back pain inside the pegfilgrastim window of three consecutive cycles (two resolved episodes + today): recurrence",
       lambda p: (p.breast_cancer(), p.chemo(45, "chemo-c1"), p.chemo(24, "chemo-c2"), p.chemo(3, "chemo-c3"),
                  p.peg(44, "peg-c1"), p.peg(23, "peg-c2"), p.peg(2, "peg-c3"),
                  p.back_pain(42, rid="backpain-c1", clinical="resolved"),
                  p.back_pain(21, rid="backpain-c2", clinical="resolved"),
                  p.back_pain(1, rid="backpain-c3"), p.score(0.5, 4), p.safe_labs()),
       [card(PROG, "warning")])
    fx("in-progressive-back-pain-cervical-pain-score", "p7",
       "Only a pain score 3/10 with bodySite cervical spine (SNOMED 122494005), chemotherapy as context: cervical site",
       lambda p: (p.chemo(9), p.score(1, 3, body_site=BODY_CERVICAL)),
       [card(PROG, "warning")])
    fx("out-progressive-back-pain-falling-scores", "p8",
       "Lumbar pain scores falling 6 -> 4 -> 2 within 5 days, no G-CSF: not progressive, supportive care",
       lambda p: (supportive_base(p, onset=6, score=2), p.score(5, 6), p.score(3, 4)),
       [card(SUPP, "info")])
    fx("out-progressive-back-pain-severe-inside-window", "p9",
       "Score 8/10 but the pain began inside the pegfilgrastim window: G-CSF bone pain (warning), not imaging",
       lambda p: gcsf_bone_pain_base(p, score=8),
       [card(GCSF, "warning")])
    fx("out-progressive-back-pain-refuted-metastasis", "p10",
       "Bone metastasis Condition with verificationStatus refuted: no progressive feature, supportive care",
       lambda p: (supportive_base(p), p.condition("bone-mets", BONE_METS, onset=30, recorded=30, verification="refuted")),
       [card(SUPP, "info")])
    fx("out-progressive-back-pain-rise-older-than-7-days", "p11",
       "Scores 3 (10 days ago) and 6 (yesterday): the rise is not within 7 days, onset 10 days ago is not persistence",
       lambda p: (supportive_base(p, onset=10, score=6), p.score(10, 3)),
       [card(SUPP, "info")])
    fx("out-progressive-back-pain-persistent-13-days", "p12",
       "Back pain since 13 days still 5/10: one day short of persistence, supportive care",
       lambda p: (supportive_base(p, onset=13, score=5)),
       [card(SUPP, "info")])

    # ---- gcsf-bone-pain -------------------------------------------------------------------
    def contained_peg(p: P) -> None:
        medication = {
            "resourceType": "Medication", "id": "peg",
            "meta": {"tag": [{**FIXTURE_TAG, "display": "backpain-cds test fixture; adapted from the CIBMTR "
                              "Reporting IG example Medication-Mobilizing-Agent-Example (Apache-2.0)"}]},
            "code": {"coding": [coding(RX, "338036", "pegfilgrastim"), coding(RX, "350977", "pegfilgrastim 10 MG/ML"),
                                coding(RX, "1161380", "pegfilgrastim Injectable Product")], "text": "pegfilgrastim"},
            "ingredient": [{
                "itemCodeableConcept": {"coding": [coding(RX, "338036", "pegfilgrastim")], "text": "pegfilgrastim 10 mg/mL"},
                "strength": {"numerator": {"value": 10, "unit": "milligram", "system": UCUM, "code": "mg"},
                             "denominator": {"value": 1, "unit": "milliliter", "system": UCUM, "code": "mL"}},
            }],
        }
        p.breast_cancer()
        p.chemo(4)
        p.administration("peg-admin", 3, {"medicationReference": {"reference": "#peg"}}, contained=[medication])
        p.back_pain(2)
        p.score(1, 4)
        p.safe_labs()

    fx("in-gcsf-bone-pain-contained-pegfilgrastim", "g1",
       "Pegfilgrastim via medicationReference to a contained Medication (adapted from the CIBMTR example; RxNorm "
       "338036/350977/1161380), low back pain the next day",
       contained_peg, [card(GCSF, "info")])
    fx("in-gcsf-bone-pain-udenyca-brand-text", "g2",
       "Biosimilar known only by brand text 'Udenyca 6 mg' (no code), back pain 2 days later",
       lambda p: (p.breast_cancer(), p.chemo(4),
                  p.administration("udenyca", 3, {"medicationCodeableConcept": {"text": "Udenyca 6 mg"}}),
                  p.back_pain(2), p.score(1, 4), p.safe_labs()),
       [card(GCSF, "info")])
    fx("in-gcsf-bone-pain-low-platelets-no-naproxen", "g3",
       "G-CSF bone pain with platelets 40 x10^9/L yesterday: the card must not suggest naproxen",
       lambda p: (gcsf_bone_pain_base(p, safe_labs=False), p.platelets(40), p.egfr(90)),
       [card(GCSF, "info")])
    fx("in-gcsf-bone-pain-severe-warning", "g4",
       "G-CSF bone pain scoring 7/10 (the severe cut-off): indicator warning",
       lambda p: gcsf_bone_pain_base(p, score=7),
       [card(GCSF, "warning")])
    fx("in-gcsf-bone-pain-daily-filgrastim", "g5",
       "Daily filgrastim (RxNorm 727535) for 4 days, last dose 3 days ago; back pain 1 day ago (last dose + 3 d window)",
       lambda p: (p.breast_cancer(), p.chemo(8), *(p.filgrastim(d, f"filgrastim-{d}") for d in (6, 5, 4, 3)),
                  p.back_pain(1, code=BACKACHE), p.score(1, 3), p.safe_labs()),
       [card(GCSF, "info")])
    fx("in-gcsf-bone-pain-requested-pegfilgrastim", "g6",
       "Pegfilgrastim known from a MedicationRequest (authoredOn 2 days ago), bone pain (SNOMED 12584003) since yesterday",
       lambda p: (p.breast_cancer(), p.chemo(3),
                  p.request("peg-order", {"medicationCodeableConcept": concept(
                      RX, "727542", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe [Neulasta]", "Neulasta 6 mg")},
                      status="completed", authored=2),
                  p.back_pain(1, code=(SCT, "12584003", "Bone pain (finding)")), p.safe_labs()),
       [card(GCSF, "info")])
    fx("out-gcsf-bone-pain-gcsf-20-days-ago", "g7",
       "Pegfilgrastim 20 days ago and new mild back pain 2 days ago: outside every window, supportive care",
       lambda p: (p.breast_cancer(), p.chemo(21), p.peg(20), p.back_pain(2), p.score(1, 3), p.safe_labs()),
       [card(SUPP, "info")])
    fx("out-gcsf-bone-pain-day-8", "g8",
       "Back pain began on day 8 after pegfilgrastim (window is day 0-7): supportive care",
       lambda p: (p.breast_cancer(), p.chemo(10), p.peg(9), p.back_pain(1), p.score(1, 3), p.safe_labs()),
       [card(SUPP, "info")])
    fx("out-gcsf-bone-pain-refuted-back-pain", "g9",
       "Pegfilgrastim 3 days ago but the back-pain Condition is refuted (and the score has no body site): no card",
       lambda p: (p.breast_cancer(), p.chemo(4), p.peg(3), p.back_pain(2, verification="refuted"), p.score(1, 4)),
       [])
    fx("out-gcsf-bone-pain-entered-in-error-dose", "g10",
       "The only pegfilgrastim administration is entered-in-error: no G-CSF window, supportive care",
       lambda p: (p.breast_cancer(), p.chemo(4), p.peg(3, status="entered-in-error"), p.back_pain(2), p.score(1, 3),
                  p.safe_labs()),
       [card(SUPP, "info")])
    fx("out-gcsf-bone-pain-planned-gcsf", "g11",
       "Pegfilgrastim only planned (MedicationRequest intent plan): planned exposure opens no window, supportive care",
       lambda p: (p.breast_cancer(), p.chemo(4),
                  p.request("peg-plan", {"medicationCodeableConcept": concept(
                      RX, "727539", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe")}, intent="plan", authored=3),
                  p.back_pain(2), p.score(1, 3), p.safe_labs()),
       [card(SUPP, "info")])
    fx("out-gcsf-bone-pain-gcsf-without-cancer", "g12",
       "Pegfilgrastim and back pain in its window but no cancer diagnosis and no chemotherapy: G-CSF is not context",
       lambda p: (p.peg(3), p.back_pain(2), p.score(1, 4)),
       [])

    # ---- back-pain-supportive-care ------------------------------------------------------
    fx("in-back-pain-supportive-care-icd10-m54-50", "s1",
       "Breast cancer, chemotherapy 10 days ago, low back pain ICD-10-CM M54.50 scoring 3/10, no G-CSF",
       lambda p: supportive_base(p), [card(SUPP, "info")])
    fx("in-back-pain-supportive-care-chemotherapy-only-context", "s2",
       "No cancer Condition, chemotherapy 30 days ago is the context; backache (SNOMED 161891005) since 4 days",
       lambda p: (p.chemo(30), p.back_pain(4, code=BACKACHE)), [card(SUPP, "info")])
    fx("in-back-pain-supportive-care-back-pain-observation", "s3",
       "Back pain recorded only as a finding Observation (SNOMED 161891005, category exam) 3 days ago",
       lambda p: (p.breast_cancer(), p.chemo(15),
                  p.observation("backache", concept(*BACKACHE), 3, category="exam", value=PRESENT_TRUE)),
       [card(SUPP, "info")])
    fx("in-back-pain-supportive-care-text-only", "s4",
       "Back pain Condition known by text only ('lower back ache after chemo'), chemotherapy 7 days ago",
       lambda p: (p.breast_cancer(), p.chemo(7), p.condition("backpain", {"text": "Lower back ache after chemo"},
                                                                onset=3, recorded=3)),
       [card(SUPP, "info")])
    fx("in-back-pain-supportive-care-onset-60-days", "s5",
       "Back pain with onset exactly 60 days ago and no recent score: the last day it still counts",
       lambda p: (p.breast_cancer(), p.chemo(10), p.back_pain(60)), [card(SUPP, "info")])
    fx("out-back-pain-supportive-care-onset-61-days", "s6",
       "Back pain with onset 61 days ago: not current back pain, no card",
       lambda p: (p.breast_cancer(), p.chemo(10), p.back_pain(61)), [])
    fx("out-back-pain-supportive-care-chemotherapy-91-days", "s7",
       "Chemotherapy 91 days ago is the only context: outside the 90-day look-back, no card",
       lambda p: (p.chemo(91), p.back_pain(4)), [])
    fx("out-back-pain-supportive-care-entered-in-error", "s8",
       "The back-pain Condition is entered-in-error: no back pain, no card",
       lambda p: (p.breast_cancer(), p.chemo(10), p.back_pain(4, verification="entered-in-error")), [])
    fx("out-back-pain-supportive-care-resolved-cancer", "s9",
       "Cancer with clinicalStatus resolved (remission) and no chemotherapy: ordinary back pain, no card",
       lambda p: (p.breast_cancer(clinical="resolved", onset=900), p.back_pain(4)), [])

    # ---- gcsf-order-dose-review (order hooks) ------------------------------------------
    fx("in-gcsf-order-dose-review-prior-episode", "d1",
       "order-sign of a draft pegfilgrastim; last cycle's pegfilgrastim (40 days ago) was followed by back pain on day 2",
       lambda p: (prior_gcsf_episode(p), p.safe_labs(), p.draft_peg()),
       [card(DOSE, "warning")], hook="order-sign")
    fx("in-gcsf-order-dose-review-order-select", "d2",
       "order-select of the same draft pegfilgrastim with an earlier in-window episode",
       lambda p: (prior_gcsf_episode(p), p.safe_labs(), p.draft_peg()),
       [card(DOSE, "warning")], hook="order-select")
    fx("in-gcsf-order-dose-review-spine-pain-score", "d3",
       "The earlier episode is only a pain score 6/10 at the lumbar spine, day 3 after pegfilgrastim 30 days ago",
       lambda p: (p.breast_cancer(), p.chemo(31, "chemo-prev"), p.peg(30, "peg-prev"),
                  p.score(27, 6, body_site=BODY_LUMBAR), p.draft_peg()),
       [card(DOSE, "warning")], hook="order-sign")
    fx("in-gcsf-order-dose-review-udenyca-draft-after-filgrastim", "d4",
       "Draft biosimilar by brand text 'Udenyca 6 mg'; back pain during an earlier daily filgrastim course",
       lambda p: (p.breast_cancer(), p.chemo(26, "chemo-prev"),
                  *(p.filgrastim(d, f"filgrastim-{d}") for d in (25, 24, 23)),
                  p.back_pain(22, rid="backpain-prev", clinical="resolved"),
                  p.draft("draft-udenyca", {"medicationCodeableConcept": {"text": "Udenyca 6 mg"}},
                          "6 mg subcutaneously once per cycle")),
       [card(DOSE, "warning")], hook="order-sign")
    fx("in-gcsf-order-dose-review-with-nsaid-caution", "d5",
       "Draft pegfilgrastim and draft naproxen together, earlier in-window episode and platelets 40: both order cards",
       lambda p: (prior_gcsf_episode(p), p.platelets(40), p.egfr(80), p.draft_peg(), p.draft_naproxen()),
       [card(DOSE, "warning"), card(NSAID, "warning")], hook="order-sign")
    fx("out-gcsf-order-dose-review-no-prior-episode", "d6",
       "Draft pegfilgrastim after an earlier pegfilgrastim cycle without any back or bone pain: no card",
       lambda p: (p.breast_cancer(), p.chemo(22, "chemo-prev"), p.peg(21, "peg-prev"), p.chemo(1), p.safe_labs(),
                  p.draft_peg()),
       [], hook="order-sign")
    fx("out-gcsf-order-dose-review-episode-outside-window", "d7",
       "The earlier back pain began 10 days after pegfilgrastim (outside its window): no card",
       lambda p: (prior_gcsf_episode(p, pain_day=10), p.safe_labs(), p.draft_peg()),
       [], hook="order-sign")
    fx("out-gcsf-order-dose-review-episode-181-days", "d8",
       "The only in-window episode was 181 days ago (look-back 180 days): no card",
       lambda p: (prior_gcsf_episode(p, peg_ago=183, pain_day=2), p.safe_labs(), p.draft_peg()),
       [], hook="order-sign")
    fx("out-gcsf-order-dose-review-refuted-episode", "d9",
       "The earlier in-window back pain Condition is refuted: no episode, no card",
       lambda p: (prior_gcsf_episode(p, verification="refuted"), p.safe_labs(), p.draft_peg()),
       [], hook="order-sign")
    fx("out-gcsf-order-dose-review-nsaid-draft-only", "d10",
       "Earlier in-window episode, but the draft is naproxen with safe labs: neither order rule fires",
       lambda p: (prior_gcsf_episode(p), p.safe_labs(), p.draft_naproxen()),
       [], hook="order-sign")

    # ---- nsaid-caution-post-chemo (order hooks) -----------------------------------------
    def nsaid_base(p: P) -> P:
        p.breast_cancer()
        p.chemo(7)
        return p

    fx("in-nsaid-caution-post-chemo-platelets-49", "n1",
       "Draft naproxen with platelets 49 x10^9/L yesterday (cut-off < 50)",
       lambda p: (nsaid_base(p), p.platelets(49), p.egfr(80), p.draft_naproxen()),
       [card(NSAID, "warning")], hook="order-sign")
    fx("in-nsaid-caution-post-chemo-egfr-29", "n2",
       "Draft naproxen with eGFR 29 mL/min/1.73 m2 (cut-off < 30)",
       lambda p: (nsaid_base(p), p.platelets(150), p.egfr(29), p.draft_naproxen()),
       [card(NSAID, "warning")], hook="order-sign")
    fx("in-nsaid-caution-post-chemo-active-anticoagulant", "n3",
       "Draft naproxen with an active apixaban prescription (RxNorm 1364445) from 30 days ago, normal labs",
       lambda p: (nsaid_base(p), p.safe_labs(), p.apixaban(), p.draft_naproxen()),
       [card(NSAID, "warning")], hook="order-sign")
    fx("in-nsaid-caution-post-chemo-ketorolac-platelets-per-ul", "n4",
       "order-select of coded ketorolac (RxNorm 1665459) with platelets 45,000 /uL (= 45 x10^9/L)",
       lambda p: (nsaid_base(p), p.platelets(45000, unit="/uL"), p.egfr(70),
                  p.draft("draft-ketorolac", {"medicationCodeableConcept": concept(
                      RX, "1665459", "2 ML ketorolac tromethamine 30 MG/ML Injection", "Ketorolac 60 mg injection")},
                      "60 mg intramuscularly once")),
       [card(NSAID, "warning")], hook="order-select")
    def creatinine(p: P, mg_dl: float) -> Resource:
        code = concept(LOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma")
        return p.observation("creatinine", code, 1, category="laboratory",
                             value={"valueQuantity": {"value": mg_dl, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}})

    fx("in-nsaid-caution-post-chemo-egfr-from-creatinine", "n20",
       "Draft naproxen, platelets 150, no eGFR on record but serum creatinine 2.5 mg/dL yesterday (woman, 63): "
       "eGFR computed with CKD-EPI 2021 = 21 mL/min/1.73 m2, below 30",
       lambda p: (nsaid_base(p), p.platelets(150), creatinine(p, 2.5), p.draft_naproxen()),
       [card(NSAID, "warning")], hook="order-sign")
    fx("out-nsaid-caution-post-chemo-creatinine-normal", "n21",
       "Draft naproxen, platelets 150, no eGFR but creatinine 0.8 mg/dL (computed eGFR 81): no caution card",
       lambda p: (nsaid_base(p), p.platelets(150), creatinine(p, 0.8), p.draft_naproxen()),
       [], hook="order-sign")
    fx("out-nsaid-caution-post-chemo-platelets-50", "n5",
       "Draft naproxen with platelets exactly 50 x10^9/L: not below the cut-off, no card",
       lambda p: (nsaid_base(p), p.platelets(50), p.egfr(80), p.draft_naproxen()),
       [], hook="order-sign")
    fx("out-nsaid-caution-post-chemo-egfr-30", "n6",
       "Draft naproxen with eGFR exactly 30: not below the cut-off, no card",
       lambda p: (nsaid_base(p), p.platelets(150), p.egfr(30), p.draft_naproxen()),
       [], hook="order-sign")
    fx("out-nsaid-caution-post-chemo-no-oncology-context", "n7",
       "Draft naproxen with platelets 40 but no cancer and no chemotherapy: outside this service's scope",
       lambda p: (p.platelets(40), p.egfr(80), p.draft_naproxen()),
       [], hook="order-sign")
    fx("out-nsaid-caution-post-chemo-stopped-anticoagulant", "n8",
       "Apixaban prescription with status stopped and normal labs: no active anticoagulant, no card",
       lambda p: (nsaid_base(p), p.safe_labs(), p.apixaban(status="stopped"), p.draft_naproxen()),
       [], hook="order-sign")
    fx("out-nsaid-caution-post-chemo-old-low-platelets", "n9",
       "Platelets 40 x10^9/L but 15 days ago (look-back 14 days), eGFR normal: no card",
       lambda p: (nsaid_base(p), p.platelets(40, days_ago=15), p.egfr(80), p.draft_naproxen()),
       [], hook="order-sign")

    # --- text helper: clinical-text component, red-flag sources, pain location (issue 11) ---
    def pro_ctcae(p: P, rid: str, question: str, answer: str, days_ago: float = 1) -> Resource:
        return p.add({"resourceType": "QuestionnaireResponse", "id": rid, "status": "completed",
                      "subject": p.subject, "authored": iso(days_ago),
                      "item": [{"linkId": "prc", "text": "PRO-CTCAE symptom items", "item": [
                          {"linkId": "1", "text": question, "answer": [{"valueCoding": {
                              "system": "http://loinc.org", "code": "LA-answer", "display": answer}}]}]}]})

    numbness_q = "In the last 7 days, what was the SEVERITY of your NUMBNESS OR TINGLING IN YOUR HANDS OR FEET at its WORST?"
    bowel_q = "In the last 7 days, how OFTEN did you have LOSS OF CONTROL OF BOWEL MOVEMENTS?"
    weakness = concept(ICD, "R53.1", "Weakness")
    cord = concept(ICD, "G95.20", "Unspecified cord compression")

    def located_score(p: P, where: str, *, hours_apart: float = 0, same_encounter: bool = True) -> None:
        p.breast_cancer()
        p.chemo(10)
        score = p.score(1, 3)
        loc = p.observation("pain-location", {"text": "Pain primary location"}, 1 + hours_apart / 24, category="survey",
                            value={"valueString": where})
        if same_encounter:
            enc = p.add({"resourceType": "Encounter", "id": "visit", "status": "finished",
                         "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"),
                         "subject": p.subject, "period": {"start": iso(1.1), "end": iso(0.9)}})
            score["encounter"] = loc["encounter"] = {"reference": f"Encounter/{enc['id']}"}
        p.safe_labs()

    fx("in-mscc-red-flags-text-misspelt", "tx1",
       "G-CSF bone pain plus 'Weakeness in both legs, numbess in feet' (one-letter misspellings): critical",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "Weakeness in both legs, numbess in feet")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-lay-phrasing", "tx2",
       "G-CSF bone pain plus 'Says she can't feel her legs and they gave way on the stairs' (lay phrasing): critical",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "Says she can't feel her legs and they gave way on the stairs")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-text-bladder-scan-volume", "tx3",
       "G-CSF bone pain plus 'Bladder scan 650 mL after voiding' (residual volume >= 200 mL): critical",
       lambda p: (gcsf_bone_pain_base(p), p.note("bladder", "Bladder scan 650 mL after voiding", code="Bladder")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-neuro-panel-component", "tx4",
       "G-CSF bone pain plus a neuro exam panel whose component 'Lower limb power' = 'legs weak 4/5 bilaterally': critical",
       lambda p: (gcsf_bone_pain_base(p), p.observation("neuro-panel", {"text": "Neuro assessment"}, 0.5, category="exam",
                  value={"component": [{"code": {"text": "Sensation"}, "valueString": "intact"},
                                       {"code": {"text": "Lower limb power"}, "valueString": "legs weak 4/5 bilaterally"}]})),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-pro-ctcae-numbness", "tx5",
       "G-CSF bone pain plus a PRO-CTCAE QuestionnaireResponse: numbness/tingling in hands or feet 'Moderate' (above 'None')",
       lambda p: (gcsf_bone_pain_base(p), pro_ctcae(p, "proctcae", numbness_q, "Moderate")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-pro-ctcae-bowel-control", "tx6",
       "Supportive-care picture plus PRO-CTCAE 'loss of control of bowel movements' answered 'Occasionally'",
       lambda p: (supportive_base(p), pro_ctcae(p, "proctcae", bowel_q, "Occasionally")),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-weakness-lower-limb-site", "tx7",
       "Generalised weakness (ICD-10-CM R53.1) with bodySite 'Both lower limbs' yesterday: a limb red flag",
       lambda p: (gcsf_bone_pain_base(p), p.condition("weakness", weakness, onset=1, recorded=1,
                                                       body_site={"text": "Both lower limbs"})),
       [card(MSCC, "critical")])
    fx("in-mscc-red-flags-cord-compression-no-back-pain", "tx8",
       "Cord compression (ICD-10-CM G95.20) recorded 3 days ago, active breast cancer, no back-pain record: critical",
       lambda p: (p.breast_cancer(), p.chemo(9), p.condition("cord", cord, onset=3, recorded=3)),
       [card(MSCC, "critical")])
    fx("in-back-pain-supportive-care-pain-location-observation", "tx9",
       "Pain score 3/10 with no body site and a separate 'Pain primary location: Back' Observation in the same encounter",
       lambda p: located_score(p, "Back"),
       [card(SUPP, "info")])
    fx("out-progressive-back-pain-location-back-excluding-neck", "tx20",
       "Pain score 3/10 with a pain-location Observation 'Back structure, excluding neck' (SNOMED 77568009's "
       "display): the back, not the neck, so supportive care and no urgent imaging",
       lambda p: located_score(p, "Back structure, excluding neck"),
       [card(SUPP, "info")])
    fx("in-back-pain-supportive-care-pain-panel-location", "tx10",
       "Pain score 3/10 whose panel component 'Pain location' = 'Lower back' (no body site, no back-pain Condition)",
       lambda p: (p.breast_cancer(), p.chemo(10), p.safe_labs(), p.score(1, 3).update(
           {"component": [{"code": {"text": "Pain location"}, "valueCodeableConcept": {"text": "Lower back"}}]})),
       [card(SUPP, "info")])
    fx("in-gcsf-bone-pain-order-and-administration", "tx21",
       "Pegfilgrastim ordered 4 days ago and given 3 days ago (the order and the administration of one dose), "
       "back pain 2 days ago: one G-CSF window, not two cycles, so G-CSF bone pain",
       lambda p: (p.breast_cancer(), p.chemo(4), p.safe_labs(), p.back_pain(2), p.score(1, 5),
                  p.request("peg-order", {"medicationCodeableConcept": concept(
                      RX, "727539", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe", "Pegfilgrastim 6 mg subcutaneous")},
                      status="completed", authored=4, dosage="6 mg subcutaneously once"),
                  p.peg(3)),
       [card(GCSF, "info")])
    fx("in-gcsf-bone-pain-text-lbp", "tx11",
       "Back pain known only as the Condition text 'c/o LBP since yesterday' inside a pegfilgrastim window",
       lambda p: (p.breast_cancer(), p.chemo(4), p.peg(3), p.safe_labs(), p.score(1, 5),
                  p.condition("lbp", {"text": "c/o LBP since yesterday"}, onset=1, recorded=1)),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-text-denies-all", "tx12",
       "G-CSF bone pain with 'No numbness; no weakness in either leg, denies urinary retention or incontinence of faeces'",
       lambda p: (gcsf_bone_pain_base(p),
                  p.note("note", "No numbness; no weakness in either leg, denies urinary retention or incontinence of faeces")),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-text-small-bladder-scan", "tx13",
       "G-CSF bone pain with 'Bladder scan 80 mL, voiding well' (residual below 200 mL): no red flag",
       lambda p: (gcsf_bone_pain_base(p), p.note("bladder", "Bladder scan 80 mL, voiding well", code="Bladder")),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-pro-ctcae-none", "tx14",
       "G-CSF bone pain with PRO-CTCAE numbness/tingling answered 'None': not a red flag",
       lambda p: (gcsf_bone_pain_base(p), pro_ctcae(p, "proctcae", numbness_q, "None")),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-generalised-weakness", "tx15",
       "G-CSF bone pain with generalised weakness (ICD-10-CM R53.1, no limb site) and 'Fatigue and generalised weakness'",
       lambda p: (gcsf_bone_pain_base(p), p.condition("weakness", weakness, onset=1, recorded=1),
                  p.note("note", "Fatigue and generalised weakness")),
       [card(GCSF, "info")])
    fx("out-mscc-red-flags-old-cord-compression-no-back-pain", "tx16",
       "Cord compression (G95.20) recorded 20 days ago, no back-pain record: older than 14 days, no card",
       lambda p: (p.breast_cancer(), p.chemo(9), p.condition("cord", cord, onset=20, recorded=20)),
       [])
    fx("out-back-pain-supportive-care-pain-location-2-hours", "tx17",
       "Pain score 3/10 and 'Pain primary location: Back' 2 hours apart, no common encounter: not back pain, no card",
       lambda p: located_score(p, "Back", hours_apart=2, same_encounter=False),
       [])
    fx("out-back-pain-supportive-care-pain-location-knee", "tx18",
       "Pain score 3/10 with 'Pain primary location: Left knee' in the same encounter: not back pain, no card",
       lambda p: located_score(p, "Left knee"),
       [])
    fx("out-mscc-red-flags-text-history-resolved", "tx19",
       "G-CSF bone pain with 'History of foot drop in 2019, resolved': historical, not a current red flag",
       lambda p: (gcsf_bone_pain_base(p), p.note("note", "History of foot drop in 2019, resolved")),
       [card(GCSF, "info")])

    # --- codes helper: chemotherapy by ingredient / name / order / plan, dual-use agents, HCPCS,
    # NDC-only, dose-time rules (CLINICAL.md oncology context and G-CSF window, CODES_2026-12.md) ---
    def med(p: P, rtype: str, rid: str, medication: dict[str, Any], **fields: Any) -> Resource:
        r: Resource = {"resourceType": rtype, "id": rid, "status": fields.pop("status", "completed")}
        if rtype == "MedicationRequest":
            r["intent"] = "order"
        r["medicationCodeableConcept"] = medication
        r["subject"] = p.subject
        r.update(fields)
        return p.add(r)

    def cx_admin(p: P, rid: str, days: float, medication: dict[str, Any], **fields: Any) -> Resource:
        return med(p, "MedicationAdministration", rid, medication, effectiveDateTime=iso(days), **fields)

    CYCLO = concept(RX, "3002", "cyclophosphamide", "Cyclophosphamide 600 mg/m2 IV")
    DOXO = {"coding": [coding(RX, "3639", "doxorubicin")]}  # IN code not verified here: recognised by name
    MTX = concept(RX, "6851", "methotrexate", "Methotrexate 15 mg weekly")
    RA = concept(ICD, "M06.9", "Rheumatoid arthritis, unspecified")
    NDC = "http://hl7.org/fhir/sid/ndc"
    HCPCS_HTTP = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
    PEG_SBD = concept(RX, "727542", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe [Neulasta]")

    def ingredient_chemo(p: P) -> P:  # no cancer Condition, no Procedure: chemo by RxNorm IN only
        cx_admin(p, "cyclo", 12, CYCLO)
        cx_admin(p, "doxo", 12, DOXO)
        p.back_pain(5)
        p.score(1, 3)
        p.safe_labs()
        return p

    fx("in-back-pain-supportive-care-codes-ingredient-chemo", "c1",
       "Cyclophosphamide (RxNorm IN 3002) and doxorubicin (by name) given 12 days ago, no cancer Condition: oncology context",
       lambda p: ingredient_chemo(p), [card(SUPP, "info")])
    fx("in-mscc-red-flags-codes-ingredient-chemo-paraplegia", "c2",
       "Ingredient-coded cyclophosphamide/doxorubicin plus incomplete paraplegia (ICD-10-CM G82.22) yesterday",
       lambda p: (ingredient_chemo(p), p.condition("paraplegia", concept(ICD, "G82.22", "Paraplegia, incomplete"),
                                                   onset=1, recorded=1)),
       [card(MSCC, "critical")])
    fx("out-back-pain-supportive-care-codes-methotrexate-ra", "c3",
       "Weekly low-dose methotrexate for rheumatoid arthritis and back pain, no cancer: not oncology context",
       lambda p: (med(p, "MedicationRequest", "mtx", MTX, status="active", authoredOn=iso(20),
                      reasonCode=[RA]), p.condition("ra", RA, onset=400), p.back_pain(5), p.score(1, 3)),
       [])
    fx("in-back-pain-supportive-care-codes-rituximab-lymphoma-reason", "c4",
       "Rituximab (text) given 10 days ago with reasonCode diffuse large B-cell lymphoma, no Condition: context",
       lambda p: (cx_admin(p, "rtx", 10, {"text": "Rituximab 375 mg/m2 IV"},
                           reasonCode=[concept(ICD, "C83.30", "Diffuse large B-cell lymphoma, unspecified site")]),
                  p.back_pain(5), p.score(1, 3), p.safe_labs()),
       [card(SUPP, "info")])
    fx("in-back-pain-supportive-care-codes-chemo-service-request", "c5",
       "Chemotherapy ordered (ServiceRequest, SNOMED 367336001, active) 6 days ago is the only oncology context",
       lambda p: (p.add({"resourceType": "ServiceRequest", "id": "sr-chemo", "status": "active", "intent": "order",
                         "code": concept(SCT, "367336001", "Chemotherapy (procedure)", "FOLFOX cycle 1"),
                         "subject": p.subject, "authoredOn": iso(6)}), p.back_pain(5), p.score(1, 3), p.safe_labs()),
       [card(SUPP, "info")])
    fx("out-back-pain-supportive-care-codes-chemo-service-request-revoked", "c6",
       "Chemotherapy ServiceRequest revoked: no oncology context, no card",
       lambda p: (p.add({"resourceType": "ServiceRequest", "id": "sr-chemo", "status": "revoked", "intent": "order",
                         "code": concept(SCT, "367336001", "Chemotherapy (procedure)"),
                         "subject": p.subject, "authoredOn": iso(6)}), p.back_pain(5), p.score(1, 3)),
       [])
    fx("in-mscc-red-flags-codes-chemo-care-plan", "c7",
       "Chemotherapy planned as a CarePlan activity (AC-T, scheduled) plus urinary retention yesterday",
       lambda p: (p.add({"resourceType": "CarePlan", "id": "cp-chemo", "status": "active", "intent": "plan",
                         "subject": p.subject, "created": iso(20),
                         "activity": [{"detail": {"status": "scheduled", "code": {"text": "AC-T chemotherapy, cycle 2"}}}]}),
                  p.back_pain(30), p.condition("retention", RETENTION, onset=1, recorded=1)),
       [card(MSCC, "critical")])
    fx("out-back-pain-supportive-care-codes-care-plan-cancelled-chemo", "c8",
       "CarePlan whose chemotherapy activity was cancelled: no oncology context",
       lambda p: (p.add({"resourceType": "CarePlan", "id": "cp-chemo", "status": "active", "intent": "plan",
                         "subject": p.subject, "created": iso(20),
                         "activity": [{"detail": {"status": "cancelled", "code": {"text": "Chemotherapy"}}}]}),
                  p.back_pain(5), p.score(1, 3)),
       [])
    fx("in-gcsf-bone-pain-codes-hcpcs-j2505-http", "c9",
       "Pegfilgrastim coded only as HCPCS J2505 under the http:// cms.gov URI, no display, 3 days before back pain",
       lambda p: (p.breast_cancer(), p.chemo(4), cx_admin(p, "peg-j", 3, {"coding": [{"system": HCPCS_HTTP, "code": "J2505"}]}),
                  p.back_pain(2), p.score(1, 5), p.safe_labs()),
       [card(GCSF, "info")])
    fx("in-gcsf-bone-pain-codes-releuko", "c10",
       "Daily Releuko (RxNorm SBD 2595962) recorded for days -8..-4 (statement period): back pain 2 days after the last dose",
       lambda p: (p.breast_cancer(), p.chemo(9),
                  med(p, "MedicationStatement", "releuko",
                      concept(RX, "2595962", "0.8 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe [Releuko]"),
                      effectivePeriod={"start": iso(8), "end": iso(4)}),
                  p.back_pain(2), p.score(1, 4), p.safe_labs()),
       [card(GCSF, "info")])
    fx("out-gcsf-bone-pain-codes-ndc-only", "c11",
       "G-CSF coded only by NDC without a name (cannot be read): back pain is supportive care, not G-CSF",
       lambda p: (p.breast_cancer(), p.chemo(4), cx_admin(p, "ndc", 3, {"coding": [{"system": NDC, "code": "55513-0190-01"}]}),
                  p.back_pain(2), p.score(1, 3), p.safe_labs()),
       [card(SUPP, "info")])
    fx("out-gcsf-bone-pain-codes-future-dose-before-pain", "c12",
       "Reported bug: pegfilgrastim authored 10 days ago for a dose 3 days ago (boundsPeriod.start); pain 6 days ago",
       lambda p: (p.breast_cancer(), p.chemo(11),
                  med(p, "MedicationRequest", "peg-req", PEG_SBD, status="active", authoredOn=iso(10),
                      dosageInstruction=[{"timing": {"repeat": {"boundsPeriod": {"start": iso(3)}}}}]),
                  p.back_pain(6), p.score(1, 3), p.safe_labs()),
       [card(SUPP, "info")])
    fx("in-gcsf-bone-pain-codes-onpro-day-8", "c13",
       "Neulasta Onpro kit applied 8.5 days ago (dose = applied + 1 day): back pain 1 day ago is day 7.5 after the dose",
       lambda p: (p.breast_cancer(), p.chemo(9), cx_admin(p, "onpro", 8.5, {"text": "Neulasta Onpro kit 6 mg"}),
                  p.back_pain(1), p.score(0.5, 4), p.safe_labs()),
       [card(GCSF, "info")])
    fx("in-gcsf-bone-pain-codes-rolvedon-text", "c14",
       "Rolvedon (eflapegrastim-xnst), no verified code, named in text 3 days before back pain",
       lambda p: (p.breast_cancer(), p.chemo(4), cx_admin(p, "rolvedon", 3, {"text": "Rolvedon 13.2 mg SC"}),
                  p.back_pain(2), p.score(1, 4), p.safe_labs()),
       [card(GCSF, "info")])
    return out


# -- writing ------------------------------------------------------------------------------------


def fixture_bundle(resources: list[Resource]) -> Resource:
    """The committed form: a tagged transaction Bundle, ``fullUrl`` = ``<type>/<id>``."""
    return transaction(resources, tag=FIXTURE_TAG, urn_full_urls=False)


def expected(fixture: Fixture) -> dict[str, Any]:
    return {
        "description": fixture.description,
        "hook": fixture.hook,
        "now": NOW_ISO,
        "cards": [{"rule": rule, "indicator": indicator} for rule, indicator in fixture.cards],
    }


def pacio_bundle() -> Resource | None:
    """The PACIO MCC patient bundle with a fixture tag added (None when the source is absent)."""
    if not PACIO_SOURCE.exists():
        return None
    bundle = json.loads(PACIO_SOURCE.read_text())
    tagged: Resource = {"resourceType": "Bundle", "meta": {"tag": [{
        **FIXTURE_TAG,
        "display": "backpain-cds test fixture; PACIO MCC Care Plan example bundle (Apache-2.0), unchanged "
                   "except for this tag",
    }]}}
    tagged.update({k: v for k, v in bundle.items() if k != "resourceType"})
    return tagged


PACIO_EXPECTED = {
    "description": "PACIO MCC Care Plan patient (Apache-2.0): chronic low back pain since 2005, CKD, diabetes, aspirin; "
                   "no cancer and no chemotherapy, so no chemotherapy-related card",
    "hook": "patient-view",
    "now": NOW_ISO,
    "cards": [],
}


def dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def planned_files() -> dict[Path, str]:
    files: dict[Path, str] = {}
    names = set()
    for fixture in fixtures():
        if fixture.name in names:
            raise SystemExit(f"duplicate fixture name {fixture.name}")
        names.add(fixture.name)
        files[OUT / f"{fixture.name}.json"] = dump(fixture_bundle(fixture.resources))
        files[OUT / f"{fixture.name}.expected.json"] = dump(expected(fixture))
    pacio = pacio_bundle()
    pacio_path = OUT / PACIO_NAME
    if pacio is not None:
        files[pacio_path] = dump(pacio)
    elif pacio_path.exists():
        files[pacio_path] = pacio_path.read_text()
    files[OUT / PACIO_NAME.replace(".json", ".expected.json")] = dump(PACIO_EXPECTED)
    return files


# -- docs/rules tables ----------------------------------------------------------------------------

_TABLE_HEAD = "| fixture | what it shows |\n|---|---|\n"


def doc_tables(files: dict[Path, str]) -> dict[Path, str]:
    """The rule docs with their "Scenario fixtures" table filled from the expected files."""
    rows: dict[str, list[str]] = {rule: [] for rule in RULES}
    for path in sorted(files):
        if not path.name.endswith(".expected.json"):
            continue
        stem = path.name[: -len(".expected.json")]
        data = json.loads(files[path])
        for rule in RULES:
            if stem.startswith((f"in-{rule}-", f"out-{rule}-")):
                cards = ", ".join(f"{c['rule']} ({c['indicator']})" for c in data["cards"]) or "no card"
                rows[rule].append(f"| `{stem}` | {data['description']} ({data['hook']}; expects {cards}) |")
    out: dict[Path, str] = {}
    for rule in RULES:
        doc = DOCS / f"{rule}.md"
        text = doc.read_text()
        start = text.index(_TABLE_HEAD, text.index("### Scenario fixtures"))
        body_start = start + len(_TABLE_HEAD)
        end = body_start
        lines = text[body_start:].split("\n")
        for line in lines:
            if not line.startswith("|"):
                break
            end += len(line) + 1
        new_rows = "\n".join(rows[rule]) + "\n"
        out[doc] = text[:body_start] + new_rows + text[end:]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    files = planned_files()
    files.update(doc_tables(files))
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}")
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(files[path])
    print(f"{len(files)} files, {len(stale)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
