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
terminator ("but", "however" …) or the end of the clause (``. ; ! ?`` or a line break; a colon
does not end it: "leg weakness: absent"); a backward negation term covers the preceding words of
its clause segment; pseudo-negations ("no change in") neither negate nor open a scope; a
historical term marks the findings of its clause segment (between terminators) not current.
Pair rules find a finding from two concepts in one clause in any order ("both legs feel weak");
volume rules need a volume at or above a threshold ("bladder scan 900 mL").
"""

from __future__ import annotations

import functools
import re
import tomllib
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import knowledge as _knowledge_package

__all__ = [
    "TextAnalysis", "TextConfig", "TextFinding", "absent_answer", "absent_value", "analyse", "current_kinds",
    "findings", "load_text_config", "parse_text_config",
]

_TOKEN = re.compile(r"[0-9]+(?:\.[0-9]+)?|[a-z]+|[.;!?\n]")
_CLAUSE_END = frozenset(".;!?\n")
_DEFAULT_PATH = Path(_knowledge_package.__file__).resolve().parent / "clinical_text.toml"
_UNITS = {"ml": 1.0, "mls": 1.0, "cc": 1.0, "l": 1000.0, "litre": 1000.0, "litres": 1000.0, "liter": 1000.0, "liters": 1000.0}
_VOLUME_LOOKAHEAD = 4
_FUZZY_CACHE_SIZE = 50_000
_FUZZY_MAX_LENGTH = 24

# modifier categories (ConText) and value categories
_NEG_FWD, _NEG_BWD, _PSEUDO, _TERM, _HIST = "negation_forward", "negation_backward", "pseudo", "terminators", "historical"
_MODIFIERS = (_NEG_FWD, _NEG_BWD, _PSEUDO, _TERM, _HIST)
_VALUES = ("absent_value", "absent_answer")


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


class _Node:
    __slots__ = ("children", "prefixes", "suffixes", "labels")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.prefixes: list[tuple[str, _Node]] = []
        self.suffixes: list[tuple[str, _Node]] = []
        self.labels: list[tuple[str, str]] = []  # (group, value), e.g. ("trigger", kind), ("modifier", category)

    def child(self, word: str) -> "_Node":
        if word.endswith("*") or word.startswith("*"):
            table, stem = (self.prefixes, word[:-1]) if word.endswith("*") else (self.suffixes, word[1:])
            for known, node in table:
                if known == stem:
                    return node
            node = _Node()
            table.append((stem, node))
            return node
        return self.children.setdefault(word, _Node())

    def step(self, token: str) -> t.Iterator["_Node"]:
        node = self.children.get(token)
        if node is not None:
            yield node
        for stem, pnode in self.prefixes:
            if token.startswith(stem):
                yield pnode
        for stem, snode in self.suffixes:
            if token.endswith(stem):
                yield snode


@dataclass(frozen=True, eq=False)
class TextConfig:
    root: _Node
    depth: int
    pairs: tuple[tuple[str, str, str], ...]  # (kind, concept a, concept b)
    max_chars: int
    pair_window: int
    volume_threshold_ml: float = 200.0
    vocabulary: frozenset[str] = frozenset()  #: every exact word of every phrase
    fuzzy_terms: frozenset[str] = frozenset()
    fuzzy_deletes: t.Mapping[str, tuple[str, ...]] = field(default_factory=dict)  #: term minus one letter -> terms
    fuzzy_min_length: int = 6
    fuzzy_cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)


def _slots(phrase: str) -> list[list[str]]:
    slots: list[list[str]] = []
    for slot in phrase.lower().split(" "):
        optional = slot.endswith("?")
        words = []
        for alt in slot.rstrip("?").split("|"):
            lead, trail = alt.startswith("*"), alt.endswith("*")
            toks = _TOKEN.findall(alt.strip("*"))
            if not toks:
                continue
            if trail:
                toks[-1] += "*"
            if lead:
                toks[0] = "*" + toks[0]
            words.append(" ".join(toks))
        if optional:
            words.append("")
        slots.append(words)
    return slots


def _expand(phrase: str) -> list[list[str]]:
    seqs: list[list[str]] = [[]]
    for words in _slots(phrase):
        seqs = [seq + (w.split(" ") if w else []) for seq in seqs for w in words]
    return [seq for seq in seqs if seq]


def parse_text_config(data: t.Mapping[str, t.Any]) -> TextConfig:
    """Build the phrase trie from the parsed TOML (raises ValueError on bad shape)."""
    root = _Node()
    depth = 0
    vocabulary: set[str] = set()

    def add(phrase: str, label: tuple[str, str]) -> None:
        nonlocal depth
        if not isinstance(phrase, str):
            raise ValueError(f"clinical_text: phrase {phrase!r} is not a string")
        for seq in _expand(phrase):
            node = root
            for word in seq:
                node = node.child(word)
                if "*" not in word:
                    vocabulary.add(word)
            if label not in node.labels:
                node.labels.append(label)
            depth = max(depth, len(seq))

    for kind, phrases in data.get("triggers", {}).items():
        for phrase in phrases:
            add(phrase, ("trigger", kind))
    modifiers = data.get("modifiers", {})
    for category in _MODIFIERS:
        for phrase in modifiers.get(category, []):
            add(phrase, ("modifier", category))
    for category in _VALUES:
        for phrase in modifiers.get(category, []):
            add(phrase, ("value", category))
    for name, phrases in data.get("concepts", {}).items():
        for phrase in phrases:
            add(phrase, ("concept", name))
    for kind, phrases in data.get("excludes", {}).items():
        for phrase in phrases:
            add(phrase, ("exclude", kind))
    volumes = dict(data.get("volumes", {}))
    threshold = float(volumes.pop("volume_threshold_ml", 200))
    for kind, phrases in volumes.items():
        for phrase in phrases:
            add(phrase, ("volume", kind))
    pairs = tuple((p["kind"], p["a"], p["b"]) for p in data.get("pairs", []))
    max_chars = int(data.get("max_chars", 20_000))
    window = int(data.get("pair_window", 8))
    fuzzy = data.get("fuzzy", {})
    min_length = int(fuzzy.get("min_length", 6))
    if max_chars <= 0 or window <= 0 or threshold <= 0 or min_length < 4:
        raise ValueError("clinical_text: max_chars, pair_window and volume_threshold_ml must be positive, min_length >= 4")
    terms = frozenset(str(term).lower() for term in fuzzy.get("terms", ()))
    deletes: dict[str, list[str]] = {}
    for term in terms:
        for i in range(len(term)):
            deletes.setdefault(term[:i] + term[i + 1:], []).append(term)
    return TextConfig(
        root=root, depth=depth, pairs=pairs, max_chars=max_chars, pair_window=window, volume_threshold_ml=threshold,
        vocabulary=frozenset(vocabulary), fuzzy_terms=terms,
        fuzzy_deletes={k: tuple(v) for k, v in deletes.items()}, fuzzy_min_length=min_length,
    )


@functools.lru_cache(maxsize=4)
def load_text_config(path: Path = _DEFAULT_PATH) -> TextConfig:
    """Load and compile ``knowledge/clinical_text.toml`` (cached)."""
    with path.open("rb") as fh:
        return parse_text_config(tomllib.load(fh))


def _one_edit(a: str, b: str) -> bool:
    """Same length, one substitution or one swap of neighbours."""
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) == 1:
        return True
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _correct(token: str, config: TextConfig) -> str | None:
    """The key term ``token`` is a one-letter misspelling of, or None (bounded work per token)."""
    cache = config.fuzzy_cache
    if token in cache:
        return cache[token]
    found: str | None = None
    candidates = config.fuzzy_deletes.get(token)
    if candidates:  # a letter missing ("numbess")
        found = candidates[0]
    else:
        for i in range(len(token)):
            shorter = token[:i] + token[i + 1:]
            if shorter in config.fuzzy_terms:  # a letter too many ("weakeness")
                found = shorter
                break
            for term in config.fuzzy_deletes.get(shorter, ()):
                if len(term) == len(token) and _one_edit(token, term):  # a wrong or swapped letter
                    found = term
                    break
            if found:
                break
    if len(cache) >= _FUZZY_CACHE_SIZE:
        cache.clear()
    cache[token] = found
    return found


def _tokens(text: str, config: TextConfig) -> tuple[list[tuple[str, int, int]], int]:
    spans = []
    work = 0
    vocabulary, terms, minimum = config.vocabulary, config.fuzzy_terms, config.fuzzy_min_length
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if terms and minimum <= len(tok) <= _FUZZY_MAX_LENGTH and tok not in vocabulary and tok.isalpha():
            work += len(tok)
            tok = _correct(tok, config) or tok
        spans.append((tok, m.start(), m.end()))
    return spans, work


class _Clause:
    """State of the current clause; findings are finalised at its end."""

    __slots__ = ("neg_fwd", "segment", "neg_bwd", "hist", "pending", "concepts", "excluded")

    def __init__(self) -> None:
        self.neg_fwd: int | None = None  # token index of the forward negation in scope
        self.segment = 0  # terminators start a new segment
        self.neg_bwd: dict[int, int] = {}  # segment -> token index of its last backward negation
        self.hist: set[int] = set()  # segments with a historical term
        self.pending: list[tuple[str, int, int, bool, int]] = []  # kind, first, last token, negated-at-start, segment
        self.concepts: dict[str, int] = {}  # concept -> last token index
        self.excluded: set[str] = set()  # kinds dropped in this clause


def _volume_ml(tokens: list[str], end: int) -> tuple[float, int] | None:
    """The first volume after token ``end`` (within a few words of the clause), in mL."""
    for k in range(end + 1, min(len(tokens), end + 1 + _VOLUME_LOOKAHEAD)):
        tok = tokens[k]
        if tok in _CLAUSE_END:
            return None
        if tok[0].isdigit():
            unit = tokens[k + 1] if k + 1 < len(tokens) else ""
            return float(tok) * _UNITS.get(unit, 1.0), k + (1 if unit in _UNITS else 0)
    return None


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

    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok in _CLAUSE_END:
            close()
            clause = _Clause()
            i += 1
            continue
        # walk the trie from token i: collect matches (longest modifier wins)
        frontier = [config.root]
        matches: list[tuple[int, tuple[str, str]]] = []  # (end token index, label)
        j = i
        while frontier and j < n and j - i < config.depth and tokens[j] not in _CLAUSE_END:
            nxt: list[_Node] = []
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
        if longest >= 0 and i > skip_until:
            categories = {m[1][1] for m in matches if m[1][0] == "modifier" and m[0] == longest}
            skip_until = longest
            if _PSEUDO not in categories:
                if _TERM in categories:
                    clause.neg_fwd = None
                    clause.segment += 1
                    clause.concepts.clear()
                if _NEG_FWD in categories and clause.neg_fwd is None:
                    clause.neg_fwd = i
                if _NEG_BWD in categories:
                    clause.neg_bwd[clause.segment] = i
                if _HIST in categories:
                    clause.hist.add(clause.segment)
        negated_now = clause.neg_fwd is not None
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
                for kind, a, b in config.pairs:
                    other = b if value == a else a if value == b else None
                    if other is None:
                        continue
                    seen = clause.concepts.get(other)
                    if seen is not None and i - seen <= config.pair_window:
                        first = min(seen, i)
                        negated = clause.neg_fwd is not None and clause.neg_fwd < first
                        clause.pending.append((kind, first, max(end, seen), negated, clause.segment))
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


def _value_phrase(text: str, config: TextConfig, category: str, *, whole: bool) -> bool:
    spans, _ = _tokens(text[:200].lower(), config)
    tokens = [s[0] for s in spans if s[0] not in _CLAUSE_END] if whole else [s[0] for s in spans]
    frontier = [config.root]
    best: tuple[int, set[str]] = (-1, set())
    for j, tok in enumerate(tokens[: config.depth]):
        if tok in _CLAUSE_END:
            break
        frontier = [child for node in frontier for child in node.step(tok)]
        if not frontier:
            break
        groups = {label for node in frontier for label in node.labels}
        if any(g[0] in ("modifier", "value") for g in groups):
            best = (j, {f"{g[0]}:{g[1]}" for g in groups})
    end, labels = best
    if end < 0 or f"modifier:{_PSEUDO}" in labels or f"value:{category}" not in labels:
        return False
    return end == len(tokens) - 1 if whole else True


def absent_value(text: str, config: TextConfig | None = None) -> bool:
    """Whether an Observation value text means the finding is absent ("No", "absent", "denies")."""
    return _value_phrase(text, config or load_text_config(), "absent_value", whole=False)


def absent_answer(text: str, config: TextConfig | None = None) -> bool:
    """Whether a questionnaire answer is the lowest category ("Never", "None", "Not at all")."""
    return _value_phrase(text, config or load_text_config(), "absent_answer", whole=True)
