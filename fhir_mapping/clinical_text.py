"""Clinical-text component: findings in free text with ConText/NegEx negation and history.

One interface: :func:`findings` (text in → :class:`TextFinding` out, each with kind, negated,
historical and character span). Terms are data (``knowledge/clinical_text.toml``). The text is
tokenised once and scanned in one pass; at each token a trie of phrases is walked to a depth
bounded by the longest phrase, so the work is linear in the text length. Texts are capped at
``max_chars`` characters (20,000 by default); the rest is not examined.

Scope rules (NegEx/ConText): a forward negation term covers the following words until a
terminator ("but", "however" …) or the end of the clause (``. ; ! ?`` or a line break; a colon does not end it: "leg weakness: absent"); a
backward negation term covers the preceding words of its clause; pseudo-negations ("no change
in") neither negate nor open a scope; a historical term marks the clause's findings not current.
Pair rules find a finding from two concepts in one clause in any order ("both legs feel weak").
"""

from __future__ import annotations

import functools
import re
import tomllib
import typing as t
from dataclasses import dataclass
from pathlib import Path

import knowledge as _knowledge_package

__all__ = ["TextAnalysis", "TextFinding", "TextConfig", "analyse", "findings", "load_text_config"]

_TOKEN = re.compile(r"[a-z0-9]+|[.;!?\n]")
_CLAUSE_END = frozenset(".;!?\n")
_DEFAULT_PATH = Path(_knowledge_package.__file__).resolve().parent / "clinical_text.toml"

# modifier categories
_NEG_FWD, _NEG_BWD, _PSEUDO, _TERM, _HIST = "negation_forward", "negation_backward", "pseudo", "terminators", "historical"


@dataclass(frozen=True, slots=True)
class TextFinding:
    """One finding in a text: ``kind`` is a ClinicalKind value; ``span`` are character offsets."""

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
    steps: int  #: trie nodes visited (a work measure for the linear-time test)


class _Node:
    __slots__ = ("children", "prefixes", "labels")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.prefixes: list[tuple[str, _Node]] = []
        self.labels: list[tuple[str, str]] = []  # (group, value): ("trigger", kind) / ("modifier", category) / ("concept", name)

    def child(self, word: str) -> "_Node":
        if word.endswith("*"):
            stem = word[:-1]
            for known, node in self.prefixes:
                if known == stem:
                    return node
            node = _Node()
            self.prefixes.append((stem, node))
            return node
        return self.children.setdefault(word, _Node())

    def step(self, token: str) -> t.Iterator["_Node"]:
        node = self.children.get(token)
        if node is not None:
            yield node
        for stem, pnode in self.prefixes:
            if token.startswith(stem):
                yield pnode


@dataclass(frozen=True)
class TextConfig:
    root: _Node
    depth: int
    pairs: tuple[tuple[str, str, str], ...]  # (kind, concept a, concept b)
    max_chars: int
    pair_window: int


def _slots(phrase: str) -> list[list[str]]:
    slots: list[list[str]] = []
    for slot in phrase.lower().split(" "):
        optional = slot.endswith("?")
        words = []
        for alt in slot.rstrip("?").split("|"):
            star = alt.endswith("*")
            toks = _TOKEN.findall(alt.rstrip("*"))
            if not toks:
                continue
            if star:
                toks[-1] += "*"
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

    def add(phrase: str, label: tuple[str, str]) -> None:
        nonlocal depth
        for seq in _expand(phrase):
            node = root
            for word in seq:
                node = node.child(word)
            if label not in node.labels:
                node.labels.append(label)
            depth = max(depth, len(seq))

    for kind, phrases in data.get("triggers", {}).items():
        for phrase in phrases:
            add(phrase, ("trigger", kind))
    for category in (_NEG_FWD, _NEG_BWD, _PSEUDO, _TERM, _HIST):
        for phrase in data.get("modifiers", {}).get(category, []):
            add(phrase, ("modifier", category))
    for name, phrases in data.get("concepts", {}).items():
        for phrase in phrases:
            add(phrase, ("concept", name))
    pairs = tuple((p["kind"], p["a"], p["b"]) for p in data.get("pairs", []))
    max_chars = int(data.get("max_chars", 20_000))
    window = int(data.get("pair_window", 8))
    if max_chars <= 0 or window <= 0:
        raise ValueError("clinical_text: max_chars and pair_window must be positive")
    return TextConfig(root=root, depth=depth, pairs=pairs, max_chars=max_chars, pair_window=window)


@functools.lru_cache(maxsize=4)
def load_text_config(path: Path = _DEFAULT_PATH) -> TextConfig:
    """Load and compile ``knowledge/clinical_text.toml`` (cached)."""
    with path.open("rb") as fh:
        return parse_text_config(tomllib.load(fh))


class _Clause:
    """State of the current clause; findings are finalised at its end."""

    __slots__ = ("neg_fwd", "neg_bwd", "hist", "pending", "concepts")

    def __init__(self) -> None:
        self.neg_fwd: int | None = None  # token index of the first forward negation in scope
        self.neg_bwd: int = -1  # token index of the last backward negation
        self.hist: bool = False
        self.pending: list[tuple[str, int, int, bool]] = []  # kind, first token, last token, negated-at-start
        self.concepts: dict[str, int] = {}  # concept -> last token index


def analyse(text: str, config: TextConfig | None = None) -> TextAnalysis:
    """Return every finding in ``text`` (capped at ``config.max_chars``) and the work done."""
    config = config or load_text_config()
    text = text[: config.max_chars].lower()
    spans = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    tokens = [s[0] for s in spans]
    out: list[TextFinding] = []
    steps = 0
    clause = _Clause()
    skip_until = -1  # tokens covered by a pseudo-negation

    def close() -> None:
        for kind, first, last, neg in clause.pending:
            negated = neg or clause.neg_bwd > last
            out.append(TextFinding(kind, negated, clause.hist, (spans[first][1], spans[last][2])))

    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok in _CLAUSE_END:
            close()
            clause = _Clause()
            i += 1
            continue
        # walk the trie from token i: collect matches (longest per group wins)
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
            if _PSEUDO in categories:
                skip_until = longest
            else:
                if _TERM in categories:
                    clause.neg_fwd = None
                    clause.hist = False
                    clause.concepts.clear()
                if _NEG_FWD in categories and clause.neg_fwd is None:
                    clause.neg_fwd = i
                if _NEG_BWD in categories:
                    clause.neg_bwd = i
                if _HIST in categories:
                    clause.hist = True
        for end, (group, value) in matches:
            if group == "trigger":
                clause.pending.append((value, i, end, clause.neg_fwd is not None))
            elif group == "concept":
                for kind, a, b in config.pairs:
                    other = b if value == a else a if value == b else None
                    if other is None:
                        continue
                    seen = clause.concepts.get(other)
                    if seen is not None and i - seen <= config.pair_window:
                        first = min(seen, i)
                        clause.pending.append((kind, first, max(end, seen), clause.neg_fwd is not None and clause.neg_fwd < first))
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
