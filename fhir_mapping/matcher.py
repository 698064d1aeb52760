"""Compiled lookups built once from (value sets, matching config) and the helpers that use them.

All membership tests are dict/set lookups on a normalised ``(system, code)`` pair; prefix rules
are small tuples; text patterns were compiled when the configuration was loaded. Extractors get
a :class:`Matcher` from :func:`matcher_for`, which caches one per (index, config) pair.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from assessment.facts import ClinicalKind, Confidence, GcsfClass, ImagingKind, SpineSite

from . import clinical_text
from .matchconfig import DrugRule, ImagingRule, LabRule, MatchingConfig
from .name_patterns import NamePatterns, TextCache
from .valuesets import ValueSetIndex

__all__ = ["DrugMatch", "Matcher", "matcher_for"]

Code = tuple[str, str]
Json = Mapping[str, t.Any]
_OTHER_RANK = 1_000
# Code texts repeat across a record ("Body Height" thousands of times): remember each examined
# text's result (a TextCache: bounded in entries and characters; keys are capped texts).
# Results depend only on the text and the immutable config, so sharing is safe. The same holds
# for whole CodeableConcepts (a record has few distinct Observation codes).
#: :attr:`ConceptInfo.first` when the first pain/lab code is a pain-score code
PAIN = object()
_CLINICAL_KINDS = {kind.value: kind for kind in ClinicalKind}
#: component kinds naming a spine site, most specific first
_SITES = tuple((f"site:{site.value}", site) for site in (SpineSite.CERVICAL, SpineSite.THORACIC, SpineSite.LUMBAR, SpineSite.SPINE))
_LOWER_LIMB = "lower-limb"


class ConceptInfo:
    """What the matcher reads from one CodeableConcept, computed once per distinct concept.

    Only built for plain JSON concepts (see :meth:`Matcher.concept_info`), and only from the
    same helpers the extractors call, so using it gives exactly what those calls would give.
    """

    __slots__ = ("codes", "texts", "first", "kinds", "text_kinds", "chemo", "imaging", "plain", "weakness")

    def __init__(self, matcher: Matcher, concept: Json | None) -> None:
        codes = matcher.codes_of(concept)
        self.codes: tuple[Code, ...] = tuple(codes)
        self.texts: tuple[str, ...] = tuple(texts_of(concept))
        first: object = None  # PAIN, the LabRule of the first pain/lab code, or None
        for code in codes:
            if code in matcher.pain_codes:
                first = PAIN
                break
            lab = matcher.lab_by_code.get(code)
            if lab is not None:
                first = lab
                break
        self.first = first
        self.kinds: tuple[ClinicalKind, ...] = tuple(matcher.clinical_kinds(codes))
        self.text_kinds: tuple[ClinicalKind, ...] = tuple(matcher.clinical_kinds_from_text(self.texts))
        self.chemo = any(code in matcher.chemo_procedure_codes for code in codes)
        self.imaging: ImagingKind | None = next(
            (kind for kind in map(matcher.imaging_by_code.get, codes) if kind is not None), None
        )
        #: a generalised-weakness code (a limb red flag only with a leg site / text)
        self.weakness = matcher.generalised_weakness(codes)
        #: True when nothing in the concept alone makes an Observation a fact (no pain/lab
        #: code, no clinical kind by code or by text, no weakness code): only its value can.
        self.plain = first is None and not self.kinds and not self.text_kinds and not self.weakness


@dataclass(frozen=True, slots=True)
class DrugMatch:
    """The drug class a medication was recognised as, and how."""

    rule: DrugRule
    gcsf_class: GcsfClass | None
    confidence: Confidence
    label: str
    on_body_injector: bool


class Matcher:
    """Lookup tables for one (ValueSetIndex, MatchingConfig) pair; read-only after construction."""

    def __init__(self, valuesets: ValueSetIndex, config: MatchingConfig) -> None:
        self.config = config
        self.valuesets = valuesets
        self.icd_system = config.systems.get("icd10cm", "")
        self.atc_system = config.systems.get("atc", "")
        self.ucum_system = config.systems.get("ucum", "")
        self._aliases = config.system_aliases
        self._text_cache: TextCache[str, tuple[clinical_text.TextFinding, ...]] = TextCache()
        self._concept_cache: TextCache[tuple[t.Any, ...], ConceptInfo] = TextCache()
        #: ``config.status_skip`` per resource type, looked up once (the config is immutable)
        self.observation_status_skip = config.status_skip.get("Observation", ())
        self.procedure_status_skip = config.status_skip.get("Procedure", ())
        self.condition_status_skip = config.status_skip.get("Condition", frozenset())
        self.rank = {system: i for i, system in enumerate(config.system_priority)}
        self.drug_by_code: dict[Code, DrugRule] = {}
        for drug in config.drugs:
            for code in _codes(valuesets, drug.valuesets):
                self.drug_by_code.setdefault(code, drug)
        self.atc_rules = tuple(d for d in config.drugs if d.atc_prefixes)
        self.text = config.text or clinical_text.load_text_config()
        #: every free text is examined up to this many characters (clinical_text.toml max_chars)
        self.max_chars: int = self.text.max_chars
        #: the configured name patterns (drugs, on-body injector, chemotherapy orders, imaging)
        self.patterns = NamePatterns(config, self.max_chars)
        self.weakness_codes = frozenset(_codes(valuesets, config.generalised_weakness_valuesets))
        clinical: dict[Code, list[ClinicalKind]] = {}
        for rule in config.clinical:
            for code in _codes(valuesets, rule.valuesets):
                if rule.kind is ClinicalKind.RED_FLAG_NEURO and code in self.weakness_codes:
                    continue  # generalised weakness: a limb red flag only with a leg site / text
                kinds = clinical.setdefault(code, [])
                if rule.kind not in kinds:
                    kinds.append(rule.kind)
        self.clinical_by_code = {code: tuple(kinds) for code, kinds in clinical.items()}
        self.icd_rules = tuple(r for r in config.clinical if r.icd10cm_prefixes)
        self.code_site: dict[Code, SpineSite] = {}
        self.body_site: dict[Code, SpineSite] = {}
        for site in config.sites:
            for code in _codes(valuesets, site.code_valuesets):
                self.code_site.setdefault(code, site.site)
            for code in _codes(valuesets, site.body_valuesets):
                self.body_site.setdefault(code, site.site)
        self.pain_codes = frozenset(_codes(valuesets, config.pain_score_valuesets))
        self.lab_by_code: dict[Code, LabRule] = {}
        for lab in config.labs:
            for code in _codes(valuesets, lab.valuesets):
                self.lab_by_code.setdefault(code, lab)
        self.chemo_procedure_codes = frozenset(_codes(valuesets, config.chemotherapy_procedure_valuesets))
        self.imaging_by_code: dict[Code, ImagingKind] = {}
        self.imaging_body: list[tuple[ImagingRule, frozenset[Code]]] = []
        for img in config.imaging:
            for code in _codes(valuesets, img.valuesets):
                self.imaging_by_code.setdefault(code, img.kind)
            if img.modalities and img.body_valuesets:
                self.imaging_body.append((img, frozenset(_codes(valuesets, img.body_valuesets))))
        self._empty_info = ConceptInfo(self, None)

    # --- codings ------------------------------------------------------------------------

    def code_of(self, coding: Json) -> Code | None:
        """Return the normalised (system, code) of a Coding, or None when either is missing."""
        system = coding.get("system")
        code = coding.get("code")
        if not system or not isinstance(code, str):
            return None
        system = self._aliases.get(system, system)
        code = code.strip()
        if system == self.icd_system:
            code = code.upper()
            if len(code) > 3 and "." not in code:
                code = f"{code[:3]}.{code[3:]}"
        return (system, code)

    def codes_of(self, concept: Json | None) -> list[Code]:
        """Return the normalised codes of a CodeableConcept."""
        if not concept:
            return []
        out = []
        for coding in concept.get("coding") or ():
            code = self.code_of(coding)
            if code is not None:
                out.append(code)
        return out

    def concept_info(self, concept: t.Any) -> ConceptInfo | None:
        """Return the (cached) :class:`ConceptInfo` of a CodeableConcept, or None.

        None means the concept is not plain JSON (not a ``dict``, ``coding`` not a list of
        ``dict``, or a ``text``/``system``/``code``/``display`` that is neither a string nor
        absent): the caller must then take its general path, which reads the concept with
        :meth:`codes_of` / :func:`texts_of` and fails where they fail. A falsy concept gives
        the empty info, as :meth:`codes_of` and :func:`texts_of` give nothing for it.
        """
        if not concept:
            return self._empty_info
        if type(concept) is not dict:
            return None
        coding = concept.get("coding")
        if not coding:
            key: tuple[t.Any, ...] = (concept.get("text"),)
        elif type(coding) is list and len(coding) == 1:  # the usual case, spelled out
            c = coding[0]
            if type(c) is not dict:
                return None
            key = (concept.get("text"), c.get("system"), c.get("code"), c.get("display"))
        elif type(coding) is list:
            parts = [concept.get("text")]
            for c in coding:
                if type(c) is not dict:
                    return None
                parts += (c.get("system"), c.get("code"), c.get("display"))
            key = tuple(parts)
        else:
            return None
        cache = self._concept_cache
        try:
            info = cache.data.get(key)
        except TypeError:  # an unhashable value (list, object): not plain
            return None
        if info is None:
            # Only keys of str/None are stored, so a key holding another type (1, True, 1.0)
            # can never hit a stored one: it is checked here and takes the general path.
            if any(part is not None and type(part) is not str for part in key):
                return None
            info = ConceptInfo(self, concept)
            # a concept with a string over the cap is used once, not kept (its texts are labels)
            sizes = [len(part) for part in key if part is not None]
            if max(sizes, default=0) <= self.max_chars:
                cache.put(key, info, sum(sizes))
        return info

    # --- clinical kinds --------------------------------------------------------------------

    def clinical_kinds(self, codes: Iterable[Code]) -> dict[ClinicalKind, Code]:
        """Return each kind the codes mean (value sets, then ICD-10-CM prefix rules)."""
        found: dict[ClinicalKind, Code] = {}
        for code in codes:
            for kind in self.clinical_by_code.get(code, ()):
                found.setdefault(kind, code)
            if code[0] == self.icd_system:
                for rule in self.icd_rules:
                    if rule.kind not in found and _prefixed(code[1], rule.icd10cm_prefixes, rule.icd10cm_exclude):
                        found[rule.kind] = code
        return found

    def text_findings(self, text: str) -> tuple[clinical_text.TextFinding, ...]:
        """The clinical-text component's findings in ``text`` (its first ``max_chars`` characters;
        cached per examined text)."""
        text = text[: self.max_chars]
        cache = self._text_cache
        found = cache.data.get(text)
        if found is None:
            found = clinical_text.findings(text, self.text)
            cache.put(text, found, len(text))
        return found

    def clinical_kinds_from_text(self, texts: Iterable[str], *, ignore_modifiers: bool = False) -> list[ClinicalKind]:
        """Return the clinical kinds the texts name as present and current (text fallback).

        With ``ignore_modifiers`` negation and history are not applied (a questionnaire item's
        question names the symptom; its answer says whether it is present)."""
        kinds: list[ClinicalKind] = []
        for text in texts:
            if not text:
                continue
            for finding in self.text_findings(text):
                kind = _CLINICAL_KINDS.get(finding.kind)
                if kind is not None and kind not in kinds and (ignore_modifiers or finding.current):
                    kinds.append(kind)
        return kinds

    def names(self, texts: Iterable[str], kind: str) -> bool:
        """Whether any text names ``kind`` (a component kind such as ``pain-location-item``), not negated."""
        return any(f.kind == kind and not f.negated for text in texts if text for f in self.text_findings(text))

    def absent_value(self, text: str) -> bool:
        """Whether an Observation value text means "not present" (clinical-text component)."""
        return clinical_text.absent_value(text, self.text)

    def absent_answer(self, text: str) -> bool:
        """Whether a questionnaire answer text is the lowest category ("never", "none")."""
        return clinical_text.absent_answer(text, self.text)

    def generalised_weakness(self, codes: Iterable[Code]) -> bool:
        """Whether a code means generalised weakness (not a limb red flag by itself)."""
        return any(code in self.weakness_codes for code in codes)

    def limb_weakness(self, codes: Iterable[Code], body_sites: Iterable[Json], texts: Iterable[str]) -> bool:
        """Generalised weakness coded, with a lower-limb body site or a text naming the legs."""
        if not self.generalised_weakness(codes):
            return False
        body_texts = [text for body in body_sites for text in texts_of(body)]
        return self.names([*body_texts, *texts], _LOWER_LIMB)

    # --- sites ----------------------------------------------------------------------------

    def site_of(self, codes: Iterable[Code], body_sites: Iterable[Json], texts: Iterable[str]) -> SpineSite | None:
        """Return the spine site fixed by the codes, else by a body site, else by text."""
        for code in codes:
            site = self.code_site.get(code)
            if site is not None:
                return site
        body_texts: list[str] = []
        for body in body_sites:
            for code in self.codes_of(body):
                site = self.body_site.get(code)
                if site is not None:
                    return site
            body_texts.extend(texts_of(body))
        for group in (body_texts, texts):
            site = self.site_from_text(group)
            if site is not None:
                return site
        return None

    def site_from_text(self, texts: Iterable[str]) -> SpineSite | None:
        """Return the most specific spine site a text names (clinical-text ``site:`` findings)."""
        found = {f.kind for text in texts if text for f in self.text_findings(text) if not f.negated}
        return next((site for name, site in _SITES if name in found), None)

    # --- drugs ----------------------------------------------------------------------------

    def classify_drug(self, codes: Iterable[Code], texts: list[str], extra_texts: Iterable[str] = ()) -> DrugMatch | None:
        """Return the drug class of a medication: coded by system rank, ATC prefixes, then text."""
        best: tuple[int, DrugRule, Code] | None = None
        for code in codes:
            rank = self.rank.get(code[0], _OTHER_RANK)
            if best is not None and rank >= best[0]:
                continue
            rule = self.drug_by_code.get(code)
            if rule is None and code[0] == self.atc_system:
                rule = next(
                    (d for d in self.atc_rules if _prefixed(code[1].upper(), d.atc_prefixes, d.atc_exclude)), None
                )
            if rule is not None:
                best = (rank, rule, code)
        confidence = Confidence.CODED
        if best is not None:
            rule = best[1]
        else:
            text_rule = self._drug_from_text(texts)
            if text_rule is None:
                return None
            rule = text_rule
            confidence = Confidence.TEXT
        gcsf_class = rule.gcsf_class
        if rule.drug_class.value == "gcsf" and gcsf_class is None:
            by_text = self._drug_from_text(texts, only_classified_gcsf=True)
            gcsf_class = by_text.gcsf_class if by_text is not None else self.config.gcsf_unknown_class
        on_body = rule.drug_class.value == "gcsf" and any(
            self.patterns.on_body_injector(text) for text in (*texts, *extra_texts) if text
        )
        label = next((text for text in texts if text), rule.label)
        return DrugMatch(rule, gcsf_class, confidence, label, on_body)

    def _drug_from_text(self, texts: list[str], *, only_classified_gcsf: bool = False) -> DrugRule | None:
        # rule order first (long-acting before daily), then the texts
        hits = [self.patterns.drug_rules(text, only_classified_gcsf) for text in texts if text]
        for rule in self.config.drugs:
            if any(rule in found for found in hits):
                return rule
        return None


def texts_of(concept: Json | None) -> Iterator[str]:
    """Yield the text and every coding display of a CodeableConcept."""
    if not concept:
        return
    text = concept.get("text")
    if isinstance(text, str) and text:
        yield text
    for coding in concept.get("coding") or ():
        display = coding.get("display")
        if isinstance(display, str) and display:
            yield display


def _prefixed(code: str, prefixes: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    return code.startswith(prefixes) and not (exclude and code.startswith(exclude))


def _codes(valuesets: ValueSetIndex, urls: Iterable[str]) -> Iterator[Code]:
    for url in urls:
        yield from valuesets.members(url)


_CACHE: dict[tuple[int, int], tuple[ValueSetIndex, MatchingConfig, Matcher]] = {}


def matcher_for(valuesets: ValueSetIndex, config: MatchingConfig) -> Matcher:
    """Return the (cached) :class:`Matcher` for this pair of immutable inputs."""
    key = (id(valuesets), id(config))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is valuesets and hit[1] is config:
        return hit[2]
    matcher = Matcher(valuesets, config)
    if len(_CACHE) >= 8:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (valuesets, config, matcher)
    return matcher
