"""fhir_mapping.clinical_text: phrasings, ConText/NegEx scope, history, cap and linear work."""

from __future__ import annotations

import pytest

from fhir_mapping import clinical_text, text_terms
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
    ["back pain ", "leg weakness but ", "no leg weakness, unable to void; ", "can't can't can't walk ",
     # commas inside one negated clause: each comma looks ahead (bounded) for a list
     "no numbness, tingling, ", "denies weakness, numbness or ", "no , , , , "],
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

    with text_terms.DEFAULT_PATH.open("rb") as fh:
        return tomllib.load(fh)


# -- comma scope, findings with their own negative word, pseudo phrases (issue 11) -----------


@pytest.mark.parametrize(
    "text",
    [
        "no numbness, new weakness in both legs",
        "Denies fever, reports bilateral leg weakness",
        "Denies saddle anaesthesia, has urinary retention",
        "No fever, c/o bilateral leg weakness",
        "denies incontinence, unable to walk since yesterday",
        "No recent falls, unsteady gait noted",
        "No chest pain, legs feel weak",
    ],
)
def test_a_comma_ends_the_negation_when_no_list_follows(text: str) -> None:
    assert any(f.current and f.kind.startswith("red-flag") for f in findings(text)), findings(text)


@pytest.mark.parametrize(
    "text",
    [
        "denies numbness, tingling or weakness in legs",
        "patient denies leg weakness, numbness, or incontinence",
        "No leg weakness, saddle numbness or bladder or bowel trouble",
        "denies numbness, tingling and leg weakness",
        "no urinary retention, incontinence nor saddle anaesthesia",
    ],
)
def test_a_negated_list_stays_negated_across_its_commas(text: str) -> None:
    found = [f for f in findings(text) if f.kind.startswith("red-flag")]
    assert found and not any(f.current for f in found), found


@pytest.mark.parametrize(
    "text",
    [
        "Not able to walk", "pt not able to weight bear", "Not able to void", "Has not passed urine since last night",
        "No sensation in saddle area", "no power in legs", "no feeling in legs", "No bladder control",
        "no control of bowels", "no longer able to walk", "not voided since yesterday", "unable to ambulate",
        "difficulty ambulating", "non-ambulatory", "retention", "catheterised for retention",
    ],
)
def test_a_finding_with_a_negative_word_of_its_own_is_present(text: str) -> None:
    assert any(f.current and f.kind.startswith("red-flag") for f in findings(text)), findings(text)


@pytest.mark.parametrize("text", ["Denies not able to walk", "no: unable to void"])
def test_such_a_finding_is_still_negated_by_a_negation_before_it(text: str) -> None:
    found = [f for f in findings(text) if f.kind.startswith("red-flag")]
    assert found and not any(f.current for f in found), found


@pytest.mark.parametrize("text", ["fluid retention", "salt and water retention", "CO2 retention", "retention of fluid"])
def test_retention_of_something_else_is_not_a_bladder_red_flag(text: str) -> None:
    assert not [f for f in findings(text) if f.kind == "red-flag-bladder-bowel"]


def test_a_bladder_volume_with_a_thousands_separator_is_read_whole() -> None:
    assert [f.kind for f in findings("bladder scan 1,000 mL")] == ["red-flag-bladder-bowel"]
    assert not findings("bladder scan 150 mL")


def test_a_site_excluded_by_name_is_not_that_site() -> None:
    found = {f.kind: f for f in findings("Back structure, excluding neck")}
    assert found["site:spine"].current and found["site:cervical"].negated


def test_a_long_text_is_quoted_by_the_clause_of_its_red_flag() -> None:
    note = "Routine review, no concerns today. " * 20 + "Overnight she reports new weakness in both legs. " + "Eating well. " * 20
    quote = clinical_text.excerpt(note, findings)
    assert "weakness in both legs" in quote and "Routine" not in quote and "Eating" not in quote
    assert len(quote.split()) <= clinical_text.EXCERPT_WORDS


def test_a_short_text_is_quoted_whole_and_a_long_one_without_finding_is_cut_visibly() -> None:
    assert clinical_text.excerpt("Both  legs feel weak", findings) == "Both legs feel weak"
    cut = clinical_text.excerpt("word " * 100, findings)
    assert cut.endswith(" …") and len(cut.split()) == clinical_text.EXCERPT_WORDS + 1
