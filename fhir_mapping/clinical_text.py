"""Clinical-text component: findings in free text with ConText/NegEx negation and history.

One interface for every extractor: :func:`findings` (text in → :class:`TextFinding` out, each
with kind, negated, historical and character span), plus :func:`absent_value` (an Observation
value meaning "not present") and :func:`absent_answer` (a questionnaire answer meaning "never /
none"). Terms are data (``knowledge/clinical_text.toml``). The text is tokenised once and
scanned in one pass; at each token a trie of phrases is walked to a depth bounded by the longest
phrase, and a misspelt key term is corrected with a bounded (one-edit) lookup, so the work is
linear in the text length. Texts are capped at ``max_chars`` characters (20,000 by default);
the rest is not examined.

Scope rules (NegEx/ConText): a forward negation term covers the following words until a
terminator ("but", "however" …) or the end of the clause (``. ; !`` or a line break; a colon
does not end it: "leg weakness: absent", nor does a question mark: "Saddle numbness? No"); a
backward negation term covers the preceding words of its clause segment (a "final" negation such as "no" only when it ends the clause: "leg weakness:
no"); pseudo-negations ("no change in") neither negate nor open a scope; a
historical term marks the findings of its clause segment (between terminators) not current.
Pair rules find a finding from two concepts in one clause in any order ("both legs feel weak");
volume rules need a volume at or above a threshold ("bladder scan 900 mL").
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from .text_terms import TOKEN as _TOKEN
from .text_terms import TermNode, TextConfig, correct, load_text_config, parse_text_config

__all__ = [
    "TextAnalysis", "TextConfig", "TextFinding", "absent_answer", "absent_value", "analyse", "current_kinds", "excerpt",
    "findings", "load_text_config", "parse_text_config",
]

_CLAUSE_END = frozenset(".;!\n")
_UNITS = {"ml": 1.0, "mls": 1.0, "cc": 1.0, "l": 1000.0, "litre": 1000.0, "litres": 1000.0, "liter": 1000.0, "liters": 1000.0}
_VOLUME_LOOKAHEAD = 4
_FUZZY_MAX_LENGTH = 24

# modifier categories (ConText) and value categories
_NEG_FWD, _NEG_BWD, _PSEUDO, _TERM, _HIST = "negation_forward", "negation_backward", "pseudo", "terminators", "historical"
_NEG_FINAL = "negation_final"
_COMMA = ","
#: match groups that make findings (suppressed inside a pseudo phrase)
_FINDING_GROUPS = frozenset({"trigger", "volume", "concept"})


@dataclass(frozen=True, slots=True)
class TextFinding:
    """One finding in a text: ``kind`` is a ClinicalKind value (or ``site:...``); ``span`` are
    character offsets into the examined text."""

    kind: str
    negated: bool
    historical: bool
    span: tuple[int, int]

    @property
    def current(self) -> bool:
        """Present and current (neither negated nor historical)."""
        return not self.negated and not self.historical


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    findings: tuple[TextFinding, ...]
    steps: int  #: trie nodes visited + fuzzy lookups (a work measure for the linear-time test)


def _tokens(text: str, config: TextConfig) -> tuple[list[tuple[str, int, int]], int]:
    spans = []
    work = 0
    vocabulary, terms, minimum = config.vocabulary, config.fuzzy_terms, config.fuzzy_min_length
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if terms and minimum <= len(tok) <= _FUZZY_MAX_LENGTH and tok not in vocabulary and tok.isalpha():
            work += len(tok)
            tok = correct(tok, config) or tok
        spans.append((tok, m.start(), m.end()))
    return spans, work


class _Clause:
    """State of the current clause; findings are finalised at its end."""

    __slots__ = ("neg_fwd", "segment", "neg_bwd", "hist", "pending", "concepts", "excluded", "list_until")

    def __init__(self) -> None:
        self.neg_fwd: int | None = None  # token index of the forward negation in scope
        self.segment = 0  # terminators start a new segment
        self.neg_bwd: dict[int, int] = {}  # segment -> token index of its last backward negation
        self.hist: set[int] = set()  # segments with a historical term
        self.pending: list[tuple[str, int, int, bool, int]] = []  # kind, first, last token, negated-at-start, segment
        self.concepts: dict[str, int] = {}  # concept -> last token index
        self.excluded: set[str] = set()  # kinds dropped in this clause
        self.list_until = -1  # a negated list runs to this token (its conjunction) at least


def _volume_ml(tokens: list[str], end: int) -> tuple[float, int] | None:
    """The first volume after token ``end`` (within a few words of the clause), in mL."""
    for k in range(end + 1, min(len(tokens), end + 1 + _VOLUME_LOOKAHEAD)):
        tok = tokens[k]
        if tok in _CLAUSE_END:
            return None
        if tok[0].isdigit():
            unit = tokens[k + 1] if k + 1 < len(tokens) else ""
            return float(tok.replace(",", "")) * _UNITS.get(unit, 1.0), k + (1 if unit in _UNITS else 0)
    return None


def _negated_list_end(tokens: list[str], comma: int, config: TextConfig) -> tuple[int, int]:
    """Whether a forward negation's scope goes on past the comma at ``comma``: only into a
    list of short items closed by a conjunction ("denies numbness, tingling or weakness"),
    with no assertion on the way ("no numbness, new weakness in both legs"; "denies fever,
    reports leg weakness"; "no falls, unsteady gait noted"). Returns (index of the list's
    conjunction, or -1 when the scope ends at the comma; the work done). The look-ahead is
    bounded, so the pass stays linear; a list too long to see to its end ends the scope (a
    missed red flag is worse than a doubtful one)."""
    lists = config.negated_lists
    item = items = work = 0
    for k in range(comma + 1, min(len(tokens), comma + 1 + lists.lookahead)):
        tok = tokens[k]
        work += 1
        if tok in _CLAUSE_END or tok in lists.breakers:
            return -1, work
        if tok == _COMMA:
            item = 0
            continue
        if tok in lists.conjunctions:
            return (k, work) if items else (-1, work)
        end, labels = _longest(tokens, k, config)
        work += config.depth
        if end >= 0 and f"modifier:{_TERM}" in labels:
            return -1, work
        item += 1
        items += 1
        if item > lists.item_max_words:
            return -1, work
    return -1, work


def analyse(text: str, config: TextConfig | None = None) -> TextAnalysis:
    """Return every finding in ``text`` (capped at ``config.max_chars``) and the work done."""
    config = config or load_text_config()
    text = text[: config.max_chars].lower()
    spans, steps = _tokens(text, config)
    tokens = [s[0] for s in spans]
    out: list[TextFinding] = []
    clause = _Clause()
    skip_until = -1  # tokens inside a modifier phrase already read

    def close() -> None:
        for kind, first, last, neg, segment in clause.pending:
            if kind in clause.excluded:
                continue
            negated = neg or clause.neg_bwd.get(segment, -1) > last
            out.append(TextFinding(kind, negated, segment in clause.hist, (spans[first][1], spans[last][2])))

    pseudo_until = -1  # tokens inside a pseudo phrase ("fluid retention") start no finding
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok in _CLAUSE_END:
            close()
            clause = _Clause()
            i += 1
            continue
        if tok == _COMMA:
            if clause.neg_fwd is not None and i > clause.list_until:
                end, work = _negated_list_end(tokens, i, config)
                steps += work
                if end < 0:
                    clause.neg_fwd = None  # "no numbness, new weakness in both legs"
                else:
                    clause.list_until = end  # "denies numbness, tingling or weakness"
            i += 1
            continue
        # walk the trie from token i: collect matches (longest modifier wins)
        frontier = [config.root]
        matches: list[tuple[int, tuple[str, str]]] = []  # (end token index, label)
        j = i
        while frontier and j < n and j - i < config.depth and tokens[j] not in _CLAUSE_END:
            nxt: list[TermNode] = []
            for node in frontier:
                for child in node.step(tokens[j]):
                    steps += 1
                    nxt.append(child)
                    for label in child.labels:
                        matches.append((j, label))
            frontier = nxt
            j += 1
        steps += 1
        longest = max((m[0] for m in matches if m[1][0] == "modifier"), default=-1)
        longest_trigger = max((m[0] for m in matches if m[1][0] == "trigger"), default=-1)
        if longest_trigger >= longest >= 0:
            # A finding phrase that begins with a modifier word is the finding, not a modifier:
            # "not able to walk", "no bladder control", "no longer able to walk" (the longest
            # phrase at a position wins, as in ConText's overlap resolution).
            longest = -1
        if longest >= 0 and i > skip_until:
            categories = {m[1][1] for m in matches if m[1][0] == "modifier" and m[0] == longest}
            skip_until = longest
            if _PSEUDO in categories:
                # nothing that starts inside a pseudo phrase is a finding ("fluid retention")
                pseudo_until = longest
            else:
                if _TERM in categories:
                    clause.neg_fwd = None
                    clause.segment += 1
                    clause.concepts.clear()
                if _NEG_FWD in categories and clause.neg_fwd is None:
                    clause.neg_fwd = i
                ends_clause = longest + 1 >= n or tokens[longest + 1] in _CLAUSE_END
                if _NEG_BWD in categories or (_NEG_FINAL in categories and ends_clause):
                    clause.neg_bwd[clause.segment] = i
                if _HIST in categories:
                    clause.hist.add(clause.segment)
        negated_now = clause.neg_fwd is not None
        if i <= pseudo_until:
            matches = [m for m in matches if m[1][0] not in _FINDING_GROUPS]
        for end, (group, value) in matches:
            if group == "trigger":
                clause.pending.append((value, i, end, negated_now, clause.segment))
            elif group == "exclude":
                clause.excluded.add(value)
            elif group == "volume":
                volume = _volume_ml(tokens, end)
                steps += _VOLUME_LOOKAHEAD
                if volume is not None and volume[0] >= config.volume_threshold_ml:
                    clause.pending.append((value, i, volume[1], negated_now, clause.segment))
            elif group == "concept":
                for kind, a, b, window in config.pairs:
                    other = b if value == a else a if value == b else None
                    if other is None:
                        continue
                    seen = clause.concepts.get(other)
                    if seen is not None and i - seen <= (window or config.pair_window):
                        # negated when a negation in scope precedes the second concept ("legs: no weakness")
                        clause.pending.append((kind, min(seen, i), max(end, seen), negated_now, clause.segment))
                clause.concepts[value] = end
        i += 1
    close()
    return TextAnalysis(tuple(out), steps)


def findings(text: str, config: TextConfig | None = None) -> tuple[TextFinding, ...]:
    """Return the findings in ``text`` (see :func:`analyse`)."""
    return analyse(text, config).findings


def current_kinds(text: str, config: TextConfig | None = None) -> tuple[str, ...]:
    """Return the kinds of the findings that are present and current, in text order."""
    return tuple(dict.fromkeys(f.kind for f in findings(text, config) if f.current))


def _longest(tokens: list[str], start: int, config: TextConfig) -> tuple[int, set[str]]:
    """End index and labels (``group:value``) of the longest modifier/value phrase at ``start``."""
    frontier = [config.root]
    best: tuple[int, set[str]] = (-1, set())
    for j in range(start, min(len(tokens), start + config.depth)):
        if tokens[j] in _CLAUSE_END:
            break
        frontier = [child for node in frontier for child in node.step(tokens[j])]
        if not frontier:
            break
        groups = {label for node in frontier for label in node.labels}
        if any(g[0] in ("modifier", "value") for g in groups):
            best = (j, {f"{g[0]}:{g[1]}" for g in groups})
    return best


def absent_value(text: str, config: TextConfig | None = None) -> bool:
    """Whether an Observation value text means the finding named by the code is absent: it
    begins with an absent term ("No", "absent", "denies") that is not a pseudo-negation, or its
    first clause ends with a backward negation and has no terminator ("patient denies"; not
    "reports numbness, denies weakness")."""
    config = config or load_text_config()
    spans, _ = _tokens(text[:200].lower(), config)
    tokens = [s[0] for s in spans]
    end, labels = _longest(tokens, 0, config)
    if end >= 0 and f"modifier:{_PSEUDO}" not in labels and "value:absent_value" in labels:
        return True
    i = 0
    while i < len(tokens) and tokens[i] not in _CLAUSE_END:
        end, labels = _longest(tokens, i, config)
        if end >= 0 and f"modifier:{_PSEUDO}" not in labels:
            if f"modifier:{_TERM}" in labels:
                return False
            if f"modifier:{_NEG_BWD}" in labels and (end + 1 == len(tokens) or tokens[end + 1] in _CLAUSE_END):
                return True  # the clause ends with it: "patient denies", "on exam: absent"
        i = max(i + 1, end + 1)
    return False


def absent_answer(text: str, config: TextConfig | None = None) -> bool:
    """Whether a questionnaire answer is exactly a lowest category ("Never", "None", "Not at all")."""
    config = config or load_text_config()
    spans, _ = _tokens(text[:200].lower(), config)
    tokens = [s[0] for s in spans if s[0] not in _CLAUSE_END and s[0] != _COMMA]
    end, labels = _longest(tokens, 0, config)
    return end == len(tokens) - 1 >= 0 and f"modifier:{_PSEUDO}" not in labels and "value:absent_answer" in labels


#: a label longer than this many words is quoted by the clause that holds its finding
EXCERPT_WORDS = 25
_PRIORITY = ("red-flag", "mscc")


def excerpt(
    text: str, find: t.Callable[[str], t.Iterable[TextFinding]], max_words: int = EXCERPT_WORDS
) -> str:
    """A short quote of ``text`` for a card: the text itself when it has at most ``max_words``
    words, else the clause holding its first current red flag (else its first current
    finding, by ``find``: the matcher's cached findings), and at most ``max_words`` words of it around the finding, cuts marked with
    "…". A 400-word nursing note is quoted by the words that matter, never whole."""
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    # spans are offsets into the lower-cased text: usable only where lower-casing keeps lengths
    current = [f for f in find(text) if f.current] if len(text.lower()) == len(text) else []
    chosen = next((f for f in current if f.kind.startswith(_PRIORITY)), current[0] if current else None)
    if chosen is None:
        return " ".join(words[:max_words]) + " …"
    start, end = chosen.span
    left = max(text.rfind(c, 0, start) for c in _CLAUSE_END) + 1
    right = min((i for i in (text.find(c, end) for c in _CLAUSE_END) if i >= 0), default=len(text))
    before, match, after = text[left:start].split(), text[start:end].split(), text[end:right].split()
    room = max(0, max_words - len(match))
    take_before = before[max(0, len(before) - room // 2):]
    take_after = after[: room - len(take_before)]
    quote = " ".join(take_before + match + take_after)
    lead = "… " if len(take_before) < len(before) else ""
    tail = " …" if len(take_after) < len(after) else ""
    return lead + quote + tail
