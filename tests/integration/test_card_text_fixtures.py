"""Every card of every fixture reads well (issue 13 item 2, issue 11 deliverable 4): no FHIR id
in clinician text, no repeated line, short labels never cut, summaries <= 139 characters with
the action first, detail under ~150 words before "Why this card", per-rule override reasons,
and a response the CDS Hooks schema accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from backpain_cds.cli import main
from cds_hooks.schemas import CdsResponse

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
NOW_ISO = "2025-03-10T09:00:00Z"
BUNDLES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
FHIR_REF = re.compile(
    r"\b(?:Condition|Observation|MedicationRequest|MedicationAdministration|MedicationStatement|Procedure|"
    r"ServiceRequest|ImagingStudy|DiagnosticReport|Patient)/[A-Za-z0-9\-.]+"
)
DETAIL_WORDS_MAX = 150


def _cards(bundle: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    expected = json.loads(bundle.with_name(bundle.name[: -len(".json")] + ".expected.json").read_text())
    assert main(["replay", str(bundle), "--now", NOW_ISO, "--hook", expected["hook"], "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _clinician_texts(card: dict[str, Any]) -> list[str]:
    texts = [card["summary"], card.get("detail", ""), card["source"]["label"]]
    texts += [s["label"] for s in card.get("suggestions", [])]
    texts += [link["label"] for link in card.get("links", [])]
    texts += [r["display"] for r in card.get("overrideReasons", [])]
    return texts


@pytest.mark.parametrize("bundle", BUNDLES, ids=[p.name[:-5] for p in BUNDLES])
def test_every_fixture_card_reads_well(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    response = _cards(bundle, capsys)
    CdsResponse.model_validate(response)
    for card in response["cards"]:
        rule = card["extension"]["backpain-cds"]["rule"]
        for text in _clinician_texts(card):
            assert not FHIR_REF.search(text), (rule, text)
        for label in _clinician_texts(card)[2:] + [card["summary"]]:
            assert "…" not in label, (rule, label)  # labels and summaries are never cut (a quote in the detail may be)
        assert len(card["summary"]) <= 139
        detail = card["detail"]
        head = detail.split("**Why this card**")[0]
        assert len(head.split()) <= DETAIL_WORDS_MAX, (rule, len(head.split()))
        lines = [ln.strip() for ln in detail.splitlines() if ln.strip().startswith("- ")]
        assert len(lines) == len(set(lines)), (rule, lines)
        assert "Chemotherapy Chemotherapy" not in detail
        if rule in ("gcsf-bone-pain", "back-pain-supportive-care"):
            flat = " ".join(detail.split())
            assert "No red flag found in the record" in flat
            assert "Ask today about leg weakness, numbness and bladder or bowel control" in flat
        if rule in ("mscc-red-flags", "progressive-back-pain"):
            assert card["summary"].startswith("Order whole-spine MRI within")
        reasons = [r["display"] for r in card["overrideReasons"]]
        assert reasons and "Spine imaging already done or booked" not in reasons[:1] or rule == "progressive-back-pain"


def test_a_reassuring_card_says_which_medications_it_could_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    """NDC-only G-CSF with no name: the supportive-care card says a medication record could not
    be checked (a card that reassures says what it could not see)."""
    response = _cards(FIXTURES / "out-gcsf-bone-pain-codes-ndc-only.json", capsys)
    (card,) = response["cards"]
    assert card["indicator"] == "info"
    assert "1 medication record is coded only in a system this service cannot read" in card["detail"]
    clean = _cards(FIXTURES / "in-back-pain-supportive-care-icd10-m54-50.json", capsys)
    assert "could not be checked" not in clean["cards"][0]["detail"]
