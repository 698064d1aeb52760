"""The view's timeline: inline SVG from pygal (no script, style allowed by hash) and a table."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from assessment.facts import (
    ClinicalFact,
    ClinicalKind,
    DrugClass,
    GcsfClass,
    MedicationFact,
    MedicationSource,
    PainScore,
    PatientRecord,
    ProcedureFact,
)
from fhir_mapping.knowledge import load_knowledge
from smart_launch.timeline import build_timeline
from tests.smart.conftest import GCSF, MSCC, patient_of, run_launch

NOW = datetime(2025, 3, 10, 9, tzinfo=UTC)


def _record() -> PatientRecord:
    return PatientRecord(
        "p",
        pain_scores=(PainScore("Observation/s1", NOW - timedelta(days=3), 4), PainScore("Observation/s2", NOW - timedelta(days=1), 7)),
        medications=(
            MedicationFact("MedicationAdministration/peg", DrugClass.GCSF, MedicationSource.ADMINISTRATION, "completed",
                           NOW - timedelta(days=4), gcsf_class=GcsfClass.LONG_ACTING, label="pegfilgrastim"),
            MedicationFact("MedicationAdministration/old", DrugClass.GCSF, MedicationSource.ADMINISTRATION, "completed",
                           NOW - timedelta(days=400), gcsf_class=GcsfClass.LONG_ACTING, label="pegfilgrastim"),
        ),
        procedures=(ProcedureFact("Procedure/chemo", NOW - timedelta(days=5), label="FOLFOX"),),
        clinical=(ClinicalFact("Observation/weak", ClinicalKind.RED_FLAG_NEURO, NOW - timedelta(days=1), label="leg weakness"),),
    )


def test_events_windows_and_chart_from_the_record() -> None:
    timeline = build_timeline(_record(), load_knowledge().rules, NOW)
    kinds = [e.kind for e in timeline.events]
    assert kinds == ["chemotherapy", "gcsf-long-acting", "pain-score", "pain-score", "red-flag"]
    assert "MedicationAdministration/old" not in {e.ref for e in timeline.events}  # older than 120 days
    assert timeline.windows == ((NOW - timedelta(days=4), NOW + timedelta(days=3), "pegfilgrastim", "long-acting"),)
    svg = timeline.svg
    assert svg.startswith("<svg") and "<script" not in svg and "<!--" not in svg
    assert not re.search(r'(href|src)="https?:', svg)
    assert 'style="' not in svg  # CSP would block style attributes
    styles = re.findall(r"<style[^>]*>(.*?)</style>", svg, re.S)
    assert timeline.style_hashes == tuple(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in styles
    )
    assert "Long-acting G-CSF window" in svg and "Pain score (0-10)" in svg


def test_an_empty_record_draws_no_chart() -> None:
    timeline = build_timeline(PatientRecord("p"), load_knowledge().rules, NOW)
    assert timeline.svg == "" and timeline.events == () and timeline.style_hashes == ()


@pytest.mark.fhir_server
def test_the_view_shows_the_chart_and_the_table_and_allows_only_its_style(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(GCSF)))
    html = flow.view.get_data(as_text=True)
    assert 'data-section="timeline"' in html and "<svg" in html
    assert 'data-table="timeline"' in html
    assert 'data-event="pain-score"' in html and 'data-event="gcsf-daily"' in html
    assert 'data-gcsf-window="daily"' in html
    assert "<script" not in html
    csp = flow.view.headers["Content-Security-Policy"]
    assert re.search(r"style-src 'self' 'sha256-[A-Za-z0-9+/=]+'", csp)


@pytest.mark.fhir_server
def test_red_flags_appear_on_the_timeline(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    assert 'data-event="red-flag"' in flow.view.get_data(as_text=True)
