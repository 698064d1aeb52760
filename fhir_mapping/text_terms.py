"""The clinical-text component's terms, compiled: a phrase trie and a one-edit correction table.

Built once from ``knowledge/clinical_text.toml`` (plus a site overlay, merged by
:mod:`fhir_mapping.knowledge`); read by :func:`fhir_mapping.clinical_text.analyse`. Phrase
syntax is documented in the TOML file's header.
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
    "DEFAULT_PATH", "TOKEN", "NegatedLists", "TermNode", "TextConfig", "correct", "load_text_config", "parse_text_config",
]

#: words, numbers ("1,000" and "1.5" are one token each), clause ends (. ; ! line break) and
#: commas (a comma does not end a clause, but it may end a negation's scope: see clinical_text)
TOKEN = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+(?:\.[0-9]+)?|[a-z]+|[.;!\n,]")
DEFAULT_PATH = Path(_knowledge_package.__file__).resolve().parent / "clinical_text.toml"
_FUZZY_CACHE_SIZE = 50_000
#: modifier categories (ConText) and value categories
MODIFIERS = ("negation_forward", "negation_backward", "negation_final", "pseudo", "terminators", "historical")
VALUES = ("absent_value", "absent_answer")


class TermNode:
    """One node of the phrase trie (:attr:`TextConfig.root`): a word, or a prefix/suffix stem."""

    __slots__ = ("children", "prefixes", "suffixes", "labels")

    def __init__(self) -> None:
        self.children: dict[str, TermNode] = {}
        self.prefixes: list[tuple[str, TermNode]] = []
        self.suffixes: list[tuple[str, TermNode]] = []
        self.labels: list[tuple[str, str]] = []  # (group, value), e.g. ("trigger", kind), ("modifier", category)

    def child(self, word: str) -> TermNode:
        if word.endswith("*") or word.startswith("*"):
            table, stem = (self.prefixes, word[:-1]) if word.endswith("*") else (self.suffixes, word[1:])
            for known, node in table:
                if known == stem:
                    return node
            node = TermNode()
            table.append((stem, node))
            return node
        return self.children.setdefault(word, TermNode())

    def step(self, token: str) -> t.Iterator[TermNode]:
        node = self.children.get(token)
        if node is not None:
            yield node
        for stem, pnode in self.prefixes:
            if token.startswith(stem):
                yield pnode
        for stem, snode in self.suffixes:
            if token.endswith(stem):
                yield snode


@dataclass(frozen=True)
class NegatedLists:
    """When a forward negation's scope goes on past a comma (``[negated_lists]``)."""

    conjunctions: frozenset[str] = frozenset({"or", "nor", "and"})
    breakers: frozenset[str] = frozenset()  #: words that assert: the list has ended
    item_max_words: int = 4
    lookahead: int = 40


@dataclass(frozen=True, eq=False)
class TextConfig:
    root: TermNode
    depth: int
    pairs: tuple[tuple[str, str, str, int | None], ...]  # (kind, concept a, concept b, own window)
    max_chars: int
    pair_window: int
    volume_threshold_ml: float = 200.0
    vocabulary: frozenset[str] = frozenset()  #: every exact word of every phrase
    fuzzy_terms: frozenset[str] = frozenset()
    fuzzy_deletes: t.Mapping[str, tuple[str, ...]] = field(default_factory=dict)  #: term minus one letter -> terms
    fuzzy_min_length: int = 6
    fuzzy_cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)
    negated_lists: NegatedLists = NegatedLists()


def _slots(phrase: str) -> list[list[str]]:
    slots: list[list[str]] = []
    for slot in phrase.lower().split(" "):
        optional = slot.endswith("?")
        words = []
        for alt in slot.rstrip("?").split("|"):
            lead, trail = alt.startswith("*"), alt.endswith("*")
            toks = TOKEN.findall(alt.strip("*"))
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
    root = TermNode()
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
    for category in MODIFIERS:
        for phrase in modifiers.get(category, []):
            add(phrase, ("modifier", category))
    for category in VALUES:
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
    pairs = tuple((p["kind"], p["a"], p["b"], int(p["window"]) if "window" in p else None) for p in data.get("pairs", []))
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
    lists = data.get("negated_lists", {})
    negated_lists = NegatedLists(
        conjunctions=frozenset(str(w).lower() for w in lists.get("conjunctions", ("or", "nor", "and"))),
        breakers=frozenset(str(w).lower() for w in lists.get("breakers", ())),
        item_max_words=int(lists.get("item_max_words", 4)),
        lookahead=int(lists.get("lookahead_words", 40)),
    )
    if negated_lists.item_max_words <= 0 or not 0 < negated_lists.lookahead <= 200:
        raise ValueError("clinical_text: negated_lists.item_max_words must be positive, lookahead_words 1..200")
    return TextConfig(
        negated_lists=negated_lists,
        root=root, depth=depth, pairs=pairs, max_chars=max_chars, pair_window=window, volume_threshold_ml=threshold,
        vocabulary=frozenset(vocabulary), fuzzy_terms=terms,
        fuzzy_deletes={k: tuple(v) for k, v in deletes.items()}, fuzzy_min_length=min_length,
    )


@functools.lru_cache(maxsize=4)
def load_text_config(path: Path = DEFAULT_PATH) -> TextConfig:
    """Load and compile ``knowledge/clinical_text.toml`` (cached)."""
    with path.open("rb") as fh:
        return parse_text_config(tomllib.load(fh))


def _one_edit(a: str, b: str) -> bool:
    """Same length, one substitution or one swap of neighbours."""
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) == 1:
        return True
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def correct(token: str, config: TextConfig) -> str | None:
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
