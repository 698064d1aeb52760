"""fhir_mapping.clinical_text: phrasings, ConText/NegEx scope, history, cap and linear work."""

from __future__ import annotations

import pytest

from fhir_mapping import clinical_text
from fhir_mapping.clinical_text import analyse, current_kinds, findings, load_text_config

NEURO = "red-flag-neurological"
BLADDER = "red-flag-bladder-bowel"

PRESENT = [
    ("Weakness in both legs since this morning", NEURO),
    ("Both legs feel weak", NEURO),
    ("Bilateral LE weakness 4/5", NEURO),
    ("BLE weakness", NEURO),
    ("weakness of lower extremities", NEURO),
    ("Trouble walking since yesterday", NEURO),
    ("Unable to void since last night, bladder scan 900 mL", BLADDER),
    ("No numbness, but new weakness in both legs", NEURO),
    ("can't walk", NEURO),
    ("cannot stand", NEURO),
    ("unable to weight-bear", NEURO),
    ("Unable to walk since Tuesday", NEURO),
    ("difficulty walking", NEURO),
    ("unsteady gait", NEURO),
    ("right foot drop", NEURO),
    ("saddle numbness", NEURO),
    ("saddle anaesthesia", NEURO),
    ("urinary retention", BLADDER),
    ("incontinent of urine", BLADDER),
    ("incontinent of faeces overnight", BLADDER),
    ("loss of bladder control", BLADDER),
    ("loss of bowel control", BLADDER),
    ("legs gave way on the stairs", NEURO),
    ("I can't feel my legs", NEURO),
    ("no change in leg weakness", NEURO),  # pseudo-negation
    ("not only back pain but legs feel weak", NEURO),
    ("Neuro: bilateral leg weakness", NEURO),
]


@pytest.mark.parametrize(("text", "kind"), PRESENT)
def test_phrasing_is_a_current_finding(text: str, kind: str) -> None:
    assert kind in current_kinds(text)


NEGATED = [
    "No weakness in both legs",
    "Denies leg weakness",
    "Both legs feel weak: denied",
    "No bilateral LE weakness",
    "no trouble walking",
    "denies urinary retention",
    "Patient denies numbness, tingling or leg weakness",
    "not incontinent of urine",
    "no saddle numbness",
    "Leg weakness: absent",
    "without difficulty walking",
    "no loss of bladder control",
]


@pytest.mark.parametrize("text", NEGATED)
def test_negated_phrasing_is_not_current(text: str) -> None:
    assert current_kinds(text) == ()
    assert findings(text) and all(f.negated for f in findings(text))


@pytest.mark.parametrize("text", ["History of foot drop", "h/o urinary retention", "leg weakness, resolved"])
def test_historical_finding_is_not_current(text: str) -> None:
    found = findings(text)
    assert found and all(f.historical for f in found)
    assert current_kinds(text) == ()


@pytest.mark.parametrize("text", ["generalised weakness", "weakness and fatigue", "muscle weakness", "lower back pain, weak"])
def test_generalised_weakness_is_not_a_limb_red_flag(text: str) -> None:
    assert NEURO not in current_kinds(text)


def test_negation_scope_ends_at_the_clause() -> None:
    assert NEURO in current_kinds("No fever. Weakness in both legs")
    assert NEURO in current_kinds("no fever; legs weak")
    assert NEURO in current_kinds("No headache however both legs feel weak")


def test_spans_point_at_the_finding() -> None:
    text = "No numbness, but new weakness in both legs"
    current = [f for f in findings(text) if f.current]
    assert any(text[f.span[0]:f.span[1]] == "weakness in both legs" for f in current)


def test_text_past_the_cap_is_not_examined() -> None:
    cap = load_text_config().max_chars
    assert cap == 20_000
    assert current_kinds("x" * cap + " urinary retention") == ()
    assert current_kinds("x" * (cap - 30) + " urinary retention") == (BLADDER,)


@pytest.mark.parametrize(
    "unit",
    ["back pain ", "leg weakness but ", "no leg weakness, unable to void; ", "can't can't can't walk "],
)
def test_work_is_linear_in_text_length(unit: str) -> None:
    config = clinical_text.parse_text_config({**_raw(), "max_chars": 10_000_000})
    small = analyse("no " + unit * 2_000, config).steps
    large = analyse("no " + unit * 20_000, config).steps
    assert small > 0
    assert large <= 11 * small  # ten times the text, at most ~ten times the work


def test_huge_text_work_is_bounded_by_the_cap() -> None:
    steps = analyse("no " + "back pain " * 40_000).steps
    capped = analyse(("no " + "back pain " * 40_000)[:20_000]).steps
    assert steps == capped


def _raw() -> dict:
    import tomllib

    with clinical_text._DEFAULT_PATH.open("rb") as fh:
        return tomllib.load(fh)
