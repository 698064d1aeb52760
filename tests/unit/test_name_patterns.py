"""The name patterns of matching.toml: linear (bounded repetition), capped, bounded caches (issue 9).

Work is bounded without a clock: every configured pattern has a bounded match width (so one
search costs at most the examined length times a constant of the pattern), every string a
pattern is given is at most ``max_chars`` long, a text is searched at most three
times per pattern, and the searches recorded for a text twenty times longer are exactly those
for the text just over the cap.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assessment.facts import Confidence, DrugClass
from fhir_mapping.knowledge import check_knowledge, load_knowledge
from fhir_mapping.matchconfig import MAX_REPEAT, unbounded_repetition
from fhir_mapping.matcher import Matcher
from fhir_mapping.name_patterns import TextCache
from tests.support.recording_patterns import RecordingPattern, compiled_patterns, instrument

try:  # the regular-expression parser of the standard library (private, stable since 3.11)
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older layouts
    import sre_parse  # type: ignore[no-redef]

KNOWLEDGE = load_knowledge()
CONFIG = KNOWLEDGE.matching
CAP = CONFIG.text.max_chars
PATTERNS = dict(CONFIG.text_patterns())
#: largest number of characters one match of a configured pattern may span
MAX_WIDTH = 200


def _matcher(log: list[tuple[str, int]]) -> Matcher:
    return Matcher(KNOWLEDGE.valuesets, instrument(CONFIG, log))


def _examine(matcher: Matcher, text: str) -> None:
    """Every public entry that applies a configured pattern (a G-CSF rule is what makes
    classify_drug ask the on-body pattern, so that one is asked directly as well)."""
    matcher.classify_drug([], [text], [text])
    matcher.patterns.on_body_injector(text)
    matcher.patterns.names_chemotherapy(text)
    matcher.patterns.imaging_kind([text])


# --- every pattern, found and bounded ---------------------------------------------------------


def test_text_patterns_lists_every_compiled_pattern_of_the_configuration():
    walked = {id(p) for _, p in compiled_patterns(CONFIG)}
    assert walked == {id(p) for p in PATTERNS.values()}
    assert len(PATTERNS) >= 14  # on-body, 6 drug rules (+ excludes), chemotherapy orders, imaging
    # and the instrumented copy leaves none unwrapped
    assert not list(compiled_patterns(instrument(CONFIG, [])))
    assert all(isinstance(p, RecordingPattern) for _, p in instrument(CONFIG, []).text_patterns())


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_configured_pattern_has_a_bounded_match_width(name):
    pattern = PATTERNS[name]
    assert unbounded_repetition(pattern.pattern) is None
    _, widest = sre_parse.parse(pattern.pattern, pattern.flags).getwidth()
    assert widest <= MAX_WIDTH, (name, widest)


@pytest.mark.parametrize("pattern, bad", [
    (r"heparin[^.;]*\bflush", "heparin[^.;]*"),  # the quadratic one (64 KB of "heparin " took 7 s)
    (r"magnetic resonance (?:\w+ )?spine", r"(?:\w+"),
    (r"folfox(?:-?\d+)?", r"(?:-?\d+"),
    (r"a{2,}", "a{2,}"), (r"a*?", "a*"), (r"a++", "a+"), (r"x{0,101}", "x{0,101}"),
])
def test_an_unbounded_repetition_is_found(pattern, bad):
    assert unbounded_repetition(pattern).endswith(bad)


@pytest.mark.parametrize("pattern", [
    r"heparin[^.;]{0,80}\bflush", r"\*", r"[*+]", r"[]*]", r"[^]*]x", r"[\]*]", r"a{3}", r"x{,5}",
    rf"a{{0,{MAX_REPEAT}}}", r"(?:-?\d{1,2})?", r"\{a,\}",
])
def test_bounded_and_literal_repetition_signs_pass(pattern):
    assert unbounded_repetition(pattern) is None


@pytest.mark.parametrize("pattern", [r"heparin[^.;]*\bflush", r"(?:\w+ )?spine", r"folfox\d{1,}", r"x{0,5000}"])
def test_a_site_overlay_with_an_unbounded_pattern_is_refused(tmp_path: Path, pattern):
    (tmp_path / "matching.toml").write_text(
        f"[chemotherapy_order]\ntext_exclude = ['{pattern}']\n", encoding="utf-8")
    problems = check_knowledge(tmp_path)
    assert any(p.startswith("matching.toml: [chemotherapy_order] text_exclude: repetition") for p in problems), problems


# --- adversarial texts over every pattern: capped, bounded work ---------------------------------


def _shapes(sample: str, other: str, size: int) -> dict[str, str]:
    """Adversarial texts of about ``size`` characters built from a trigger ``sample``."""
    half = sample[: max(1, len(sample) // 2)]

    def fill(unit: str) -> str:
        return unit * (size // max(1, len(unit)) + 1)

    return {
        "many hits, one clause": fill(sample + " "),
        "glued, no word boundary": fill(sample),
        "unfinished trigger": fill(half + " "),
        "hits of two rules": fill(f"{sample} {other} "),
        "hit at the end only": "x " * (size // 2) + sample,
    }


@settings(max_examples=2, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def _check_pattern(name: str, data) -> None:
    sample = data.draw(st.from_regex(PATTERNS[name], fullmatch=True), label="sample")
    assert PATTERNS[name].fullmatch(sample)
    owner = name.replace(" text_exclude", " text")
    if owner != name and name.startswith("[[medication.drug]]"):  # asked only once its names matched
        sample = data.draw(st.from_regex(PATTERNS[owner], fullmatch=True)) + " " + sample
    other = data.draw(st.from_regex(PATTERNS[data.draw(st.sampled_from(sorted(PATTERNS)))], fullmatch=True))
    reached = set()
    for shape, text in _shapes(sample, other, CAP + 2_000).items():
        log: list[tuple[str, int]] = []
        _examine(_matcher(log), text)
        reached.update(n for n, _ in log)
        assert max(length for _, length in log) <= CAP, shape
        # a text is searched at most three times per pattern: the two drug-rule questions
        # (any rule, a G-CSF class) and the chemotherapy-order question
        per_pattern: dict[str, int] = {}
        for n, _ in log:
            per_pattern[n] = per_pattern.get(n, 0) + 1
        assert max(per_pattern.values()) <= 3, (shape, per_pattern)
        assert sum(length for _, length in log) <= 3 * len(PATTERNS) * CAP
    assert name in reached  # the adversarial texts did reach this pattern
    # twenty times more text: exactly the same searches on exactly the same lengths
    text = _shapes(sample, other, CAP + 2_000)["many hits, one clause"]
    near: list[tuple[str, int]] = []
    far: list[tuple[str, int]] = []
    _examine(_matcher(near), text)
    _examine(_matcher(far), text * 20)
    assert far == near


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_sees_at_most_the_cap_and_its_work_stops_growing_past_it(name):
    _check_pattern(name)


def test_the_quadratic_input_of_the_audit_is_examined_up_to_the_cap_only(monkeypatch):
    log: list[tuple[str, int]] = []
    matcher = _matcher(log)
    match = matcher.classify_drug([], ["heparin " * 50_000], [])  # 400 KB
    assert match is not None and match.rule.drug_class is DrugClass.ANTICOAGULANT
    assert match.confidence is Confidence.TEXT
    assert {length for _, length in log} == {CAP}
    # the clinical-text component gets the capped text too (and its cache key is capped)
    from fhir_mapping import clinical_text

    seen: list[int] = []
    real = clinical_text.findings
    monkeypatch.setattr(clinical_text, "findings", lambda text, config=None: seen.append(len(text)) or real(text, config))
    matcher.text_findings("no " + "back pain " * 40_000)
    assert seen == [CAP]


# --- what the bounded patterns still mean ---------------------------------------------------------


@pytest.mark.parametrize("text, anticoagulant", [
    ("heparin 10 units/mL 5 mL IV flush", False),
    ("Heparin lock flush 100 units/mL", False),
    ("heparin 5000 units SC q8h", True),
    ("heparin 5000 units SC q8h; flush line with saline", True),  # another clause
    ("heparin " + "x" * 90 + " flush", True),  # flush past 80 characters: no longer the same order
    ("heparin " * 8000, True),
])
def test_the_heparin_flush_exclusion_within_a_clause(text, anticoagulant):
    match = _matcher([]).classify_drug([], [text], [])
    assert (match is not None and match.rule.drug_class is DrugClass.ANTICOAGULANT) is anticoagulant


@pytest.mark.parametrize("text, kind", [
    ("Magnetic resonance imaging of the lumbar spine", "spine-mri"),
    ("MRI whole spine", "spine-mri"),
    ("NM whole body bone scan", "bone-scan"),
])
def test_imaging_descriptions_still_match(text, kind):
    assert _matcher([]).patterns.imaging_kind([text]).value == kind


@pytest.mark.parametrize("text, chemo", [("FOLFOX-6 cycle 3", True), ("FOLFOX cycle 3", True), ("post-chemo review", False)])
def test_chemotherapy_order_words_still_match(text, chemo):
    assert _matcher([]).patterns.names_chemotherapy(text) is chemo


def test_a_name_past_the_cap_is_not_seen():
    matcher = _matcher([])
    assert matcher.classify_drug([], ["x" * CAP + " warfarin"], []) is None
    assert matcher.classify_drug([], ["x" * (CAP - 20) + " warfarin"], []) is not None


# --- caches: keys are capped texts, total size bounded ------------------------------------------


def test_the_caches_hold_capped_keys_within_their_character_budget():
    matcher = _matcher([])
    caches = {
        "clinical text": matcher._text_cache,
        "concepts": matcher._concept_cache,
        "drug names": matcher.patterns._drugs,
        "chemotherapy orders": matcher.patterns._chemo,
    }
    for i in range(250):
        text = f"{i} warfarin chemo back pain " + "y" * (2 * CAP)  # 40 KB, distinct
        _examine(matcher, text)
        matcher.concept_info({"text": text[:CAP], "coding": [{"system": "s", "code": str(i)}]})
        matcher.concept_info({"text": text})  # over the cap: used, not kept
    for name, cache in caches.items():
        keys = list(cache.data)
        assert keys, name
        strings = [k for key in keys for k in (key if isinstance(key, tuple) else (key,)) if isinstance(k, str)]
        assert max(map(len, strings)) <= CAP, name
        assert cache.held_chars() <= cache.chars, name
        assert sum(map(len, strings)) <= cache.chars, name
    assert not any(len(key[0] or "") > CAP for key in matcher._concept_cache.data)


def test_a_text_cache_clears_at_its_budget_and_keeps_nothing_larger():
    cache: TextCache[str, int] = TextCache(entries=10, chars=100)
    cache.put("a" * 101, 1, 101)
    assert not cache.data
    for i in range(5):
        cache.put(str(i) * 30, i, 30)
        assert cache.held_chars() <= 100
    assert len(cache.data) == 2  # the fourth 30-character key cleared the first three
    for i in range(25):
        cache.put(f"k{i}", i, 2)
    assert len(cache.data) <= 10


def test_the_shipped_cap_is_the_documented_one():
    assert CAP == 20_000
    toml = (Path(__file__).resolve().parents[2] / "knowledge" / "matching.toml").read_text(encoding="utf-8")
    assert "max_chars" in toml and re.search(r"\{0,80\}", toml)
