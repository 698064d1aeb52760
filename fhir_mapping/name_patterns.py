"""The name patterns of ``knowledge/matching.toml`` applied to free text: capped, linear, cached.

Every configured regular expression (drug names and their exclusions, the on-body injector,
chemotherapy-order words, imaging descriptions: :meth:`MatchingConfig.text_patterns`) is applied
here and nowhere else, and only to the first ``max_chars`` characters of a text: the cap of the
clinical-text component (``clinical_text.toml`` ``max_chars``, 20,000 by default), one cap for
every free text ``fhir_mapping`` examines. The patterns repeat nothing without a bound (check-config
refuses ``*``, ``+`` and ``{m,}``), so one search costs at most the examined length times a
constant of the pattern. Results are cached per examined text in a :class:`TextCache`, bounded
in entries and in characters, so a client cannot make a worker hold large strings between calls.
"""

from __future__ import annotations

import typing as t

from assessment.facts import DrugClass, ImagingKind

from .matchconfig import DrugRule, MatchingConfig

__all__ = ["NamePatterns", "TextCache"]

K = t.TypeVar("K")
V = t.TypeVar("V")

#: entries and key characters one cache may hold before it is cleared
_CACHE_ENTRIES = 20_000
_CACHE_CHARS = 2_000_000


class TextCache(t.Generic[K, V]):
    """A dict cache cleared when it holds ``entries`` keys or ``chars`` key characters.

    Readers use :attr:`data` directly (a plain ``dict``: the hot path stays a dict lookup);
    writers call :meth:`put` with the size of the key's strings. Under threads the character
    count may drift by a few entries between clears; the bound holds to within that.
    """

    __slots__ = ("data", "entries", "chars", "_held")

    def __init__(self, entries: int = _CACHE_ENTRIES, chars: int = _CACHE_CHARS) -> None:
        self.data: dict[K, V] = {}
        self.entries = entries
        self.chars = chars
        self._held = 0

    def put(self, key: K, value: V, size: int) -> None:
        if size > self.chars:
            return
        if len(self.data) >= self.entries or self._held + size > self.chars:
            self.data.clear()
            self._held = 0
        self.data[key] = value
        self._held += size

    def held_chars(self) -> int:
        """Key characters held now (for tests and metrics)."""
        return self._held


class NamePatterns:
    """The configured name patterns of one :class:`MatchingConfig`, on texts capped at ``max_chars``."""

    def __init__(self, config: MatchingConfig, max_chars: int) -> None:
        self.config = config
        self.max_chars = max_chars
        self._drugs: TextCache[tuple[str, bool], tuple[DrugRule, ...]] = TextCache()
        self._chemo: TextCache[str, bool] = TextCache()
        self._chemo_agents = tuple(
            d for d in config.drugs if d.drug_class is DrugClass.CHEMOTHERAPY and not d.requires_malignancy
        )

    def examined(self, text: str) -> str:
        """The part of ``text`` that is examined: its first ``max_chars`` characters."""
        return text[: self.max_chars]

    def drug_rules(self, text: str, only_classified_gcsf: bool = False) -> tuple[DrugRule, ...]:
        """The drug rules whose names ``text`` holds (and whose exclusions it does not), in rule order.

        With ``only_classified_gcsf`` only the G-CSF rules that fix a G-CSF class are tried."""
        text = self.examined(text)
        key = (text, only_classified_gcsf)
        found = self._drugs.data.get(key)
        if found is None:
            found = tuple(
                rule
                for rule in self.config.drugs
                if rule.text is not None
                and not (only_classified_gcsf and (rule.drug_class is not DrugClass.GCSF or rule.gcsf_class is None))
                and rule.text.search(text)
                and not (rule.text_exclude is not None and rule.text_exclude.search(text))
            )
            self._drugs.put(key, found, len(text))
        return found

    def on_body_injector(self, text: str) -> bool:
        """Whether ``text`` names an on-body injector kit (Neulasta Onpro)."""
        pattern = self.config.on_body_injector
        return pattern is not None and pattern.search(self.examined(text)) is not None

    def names_chemotherapy(self, text: str) -> bool:
        """Whether ``text`` names chemotherapy ordered or planned: the ``[chemotherapy_order]``
        words (minus its exclusions) or an agent of an unconditional chemotherapy drug rule."""
        text = self.examined(text)
        found = self._chemo.data.get(text)
        if found is None:
            found = self._names_chemotherapy(text)
            self._chemo.put(text, found, len(text))
        return found

    def _names_chemotherapy(self, text: str) -> bool:
        rule = self.config.chemotherapy_order
        if rule.text_exclude is not None and rule.text_exclude.search(text):
            return False
        if rule.text is not None and rule.text.search(text):
            return True
        return any(
            drug.text is not None
            and drug.text.search(text)
            and not (drug.text_exclude is not None and drug.text_exclude.search(text))
            for drug in self._chemo_agents
        )

    def imaging_kind(self, texts: t.Iterable[str]) -> ImagingKind | None:
        """The first imaging kind (rule order) whose text pattern one of ``texts`` matches."""
        examined = [self.examined(text) for text in texts if text]
        for rule in self.config.imaging:
            if rule.text is not None and any(rule.text.search(text) for text in examined):
                return rule.kind
        return None
