"""Typed matching configuration, parsed from ``knowledge/matching.toml`` (+ site overlays).

The file says which value set means which fact kind, holds the prefix rules for ATC and
ICD-10-CM, the text-fallback patterns, negation words, status filters and unit factors. Every
regular expression is compiled here, once, at start-up.
"""

from __future__ import annotations

import re
import tomllib
import typing as t
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from assessment.facts import ClinicalKind, DrugClass, GcsfClass, ImagingKind, LabKind, SpineSite

from .overlay import merge_overlay
from .valuesets import ValueSetIndex

__all__ = [
    "ChemotherapyOrderRule",
    "ClinicalRule",
    "DrugRule",
    "ImagingRule",
    "LabRule",
    "MatchingConfig",
    "MatchingConfigError",
    "SiteRule",
    "load_matching_config",
    "MAX_REPEAT",
    "normalise_unit",
    "unbounded_repetition",
    "validate_matching_config",
]

Code = tuple[str, str]
#: Largest repetition count a text pattern may use (``{0,80}``); ``*``, ``+`` and ``{m,}`` are
#: refused. A pattern whose every repetition is bounded matches at most a fixed number of
#: characters from each start, so a search costs at most (examined length) x (a constant of
#: the pattern): linear. ``heparin[^.;]*\bflush`` was quadratic: 64 KB of "heparin " took 7 s.
MAX_REPEAT = 100
_REPEAT_BRACES = re.compile(r"\{(\d*)(,?)(\d*)\}")


class MatchingConfigError(ValueError):
    """The matching configuration cannot be read or has a wrong shape."""


@dataclass(frozen=True, slots=True)
class DrugRule:
    """How one drug class is recognised in medication resources."""

    id: str
    drug_class: DrugClass
    gcsf_class: GcsfClass | None
    label: str
    valuesets: tuple[str, ...]
    atc_prefixes: tuple[str, ...]
    atc_exclude: tuple[str, ...]
    text: re.Pattern[str] | None
    text_exclude: re.Pattern[str] | None
    #: dual-use antineoplastic (methotrexate, ...): chemotherapy only with a malignancy
    requires_malignancy: bool = False


@dataclass(frozen=True, slots=True)
class ChemotherapyOrderRule:
    """How chemotherapy ordered (ServiceRequest) or planned (CarePlan activity) is recognised."""

    statuses: frozenset[str]  #: resource statuses that count (active, completed)
    activity_status_skip: frozenset[str]  #: CarePlan activity.detail statuses that do not count
    text: re.Pattern[str] | None  #: words / regimen names meaning chemotherapy
    text_exclude: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class ClinicalRule:
    """How one :class:`ClinicalKind` is recognised in Conditions and Observations."""

    kind: ClinicalKind
    valuesets: tuple[str, ...]
    icd10cm_prefixes: tuple[str, ...]
    icd10cm_exclude: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SiteRule:
    """How a spine site is read from a code or a body site (its text: the clinical-text component)."""

    site: SpineSite
    code_valuesets: tuple[str, ...]
    body_valuesets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LabRule:
    """Which codes give a lab kind and how its units convert."""

    kind: LabKind
    valuesets: tuple[str, ...]
    unit_factors: Mapping[str, float]  #: keys normalised with :func:`normalise_unit`


@dataclass(frozen=True, slots=True)
class ImagingRule:
    """Which codes, text or modality + body site give an imaging kind."""

    kind: ImagingKind
    valuesets: tuple[str, ...]
    text: re.Pattern[str] | None
    modalities: frozenset[str]
    body_valuesets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MatchingConfig:
    """Everything fhir_mapping needs besides the value sets, already compiled."""

    version: str
    systems: Mapping[str, str]  #: short name (rxnorm, atc, snomed, icd10cm, loinc, ucum) -> URI
    system_aliases: Mapping[str, str]
    status_skip: Mapping[str, frozenset[str]]  #: resourceType -> statuses that drop it
    system_priority: tuple[str, ...]  #: system URIs, most trusted first
    gcsf_unknown_class: GcsfClass
    on_body_injector: re.Pattern[str] | None
    drugs: tuple[DrugRule, ...]
    clinical: tuple[ClinicalRule, ...]
    negation_value_codes: frozenset[Code]
    negation_interpretation_codes: frozenset[Code]
    sites: tuple[SiteRule, ...]
    pain_score_valuesets: tuple[str, ...]
    pain_score_max: float
    pain_unit_factors: Mapping[str, float]
    labs: tuple[LabRule, ...]
    chemotherapy_procedure_valuesets: tuple[str, ...]
    imaging: tuple[ImagingRule, ...]
    chemotherapy_order: ChemotherapyOrderRule = ChemotherapyOrderRule(frozenset(), frozenset(), None, None)
    #: value sets of generalised weakness (M62.81, R53.1 ...): a limb red flag only with a leg site / text
    generalised_weakness_valuesets: tuple[str, ...] = ()
    #: the clinical-text component's compiled terms (``knowledge/clinical_text.toml`` + overlay),
    #: set by fhir_mapping.knowledge; None = the packaged file
    text: t.Any = None
    #: free-text keys found in the matching files that now belong to clinical_text.toml
    misplaced_text: tuple[str, ...] = ()

    def bound_valueset_urls(self) -> frozenset[str]:
        """Return every value set url the configuration refers to."""
        urls: set[str] = set(self.pain_score_valuesets) | set(self.chemotherapy_procedure_valuesets)
        urls.update(self.generalised_weakness_valuesets)
        for drug in self.drugs:
            urls.update(drug.valuesets)
        for rule in self.clinical:
            urls.update(rule.valuesets)
        for site in self.sites:
            urls.update(site.code_valuesets)
            urls.update(site.body_valuesets)
        for lab in self.labs:
            urls.update(lab.valuesets)
        for img in self.imaging:
            urls.update(img.valuesets)
            urls.update(img.body_valuesets)
        return frozenset(urls)

    def text_patterns(self) -> t.Iterator[tuple[str, re.Pattern[str]]]:
        """Every configured text pattern, named by where it is configured (for checks and tests)."""
        if self.on_body_injector is not None:
            yield "[medication] on_body_injector_text", self.on_body_injector
        for drug in self.drugs:
            if drug.text is not None:
                yield f"[[medication.drug]] {drug.id} text", drug.text
            if drug.text_exclude is not None:
                yield f"[[medication.drug]] {drug.id} text_exclude", drug.text_exclude
        order = self.chemotherapy_order
        if order.text is not None:
            yield "[chemotherapy_order] text", order.text
        if order.text_exclude is not None:
            yield "[chemotherapy_order] text_exclude", order.text_exclude
        for img in self.imaging:
            if img.text is not None:
                yield f"[[imaging]] {img.kind.value} text", img.text


def normalise_unit(unit: str) -> str:
    """Return the lookup key for a unit string: case-folded, without spaces."""
    return "".join(unit.split()).casefold()


def load_matching_config(paths: Sequence[Path]) -> MatchingConfig:
    """Read and merge the TOML files in order (later files override earlier keys) and compile.

    :raises MatchingConfigError: a file is missing, is not TOML, or has a wrong shape.
    """
    if not paths:
        raise MatchingConfigError("no matching configuration file given")
    merged: dict[str, t.Any] = {}
    for path in paths:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MatchingConfigError(f"cannot read matching configuration {path}: {exc}") from exc
        merged = merge_overlay(merged, data)
    try:
        return _build(merged)
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise MatchingConfigError(f"invalid matching configuration: {exc!r}") from exc


def validate_matching_config(config: MatchingConfig, valuesets: ValueSetIndex) -> list[str]:
    """Return the problems of ``config`` against the loaded value sets (empty when usable)."""
    problems = [
        f"matching configuration refers to value set {url} which is not loaded"
        for url in sorted(config.bound_valueset_urls() - valuesets.urls)
    ]
    for drug in config.drugs:
        if not (drug.valuesets or drug.atc_prefixes or drug.text):
            problems.append(f"drug rule {drug.id} has no value set, ATC prefix or text pattern")
    problems += [
        f"{key}: clinical free text is read by the clinical-text component; move it to clinical_text.toml"
        for key in config.misplaced_text
    ]
    for name, pattern in config.text_patterns():
        bad = unbounded_repetition(pattern.pattern)
        if bad is not None:
            problems.append(
                f"{name}: repetition {bad!r} is unbounded or above {{{MAX_REPEAT}}}; "
                f"use a bounded one such as {{0,80}} (matching stays linear in the text length)"
            )
    kinds = {rule.kind for rule in config.clinical}
    problems += [f"no clinical rule for kind {kind.value}" for kind in ClinicalKind if kind not in kinds]
    labs = {rule.kind for rule in config.labs}
    problems += [f"no lab rule for kind {kind.value}" for kind in LabKind if kind not in labs]
    for lab in config.labs:
        if not lab.unit_factors:
            problems.append(f"lab rule {lab.kind.value} lists no unit")
    for short in ("rxnorm", "atc", "snomed", "icd10cm", "loinc"):
        if short not in config.systems:
            problems.append(f"[systems] lacks {short}")
    return problems


def unbounded_repetition(pattern: str) -> str | None:
    """The first repetition of ``pattern`` that is unbounded (``*``, ``+``, ``{m,}``) or counts
    above :data:`MAX_REPEAT`, as written (with the few characters before it); None when every
    repetition is bounded. Escapes and character classes are skipped (``\\*``, ``[*+]``)."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # a class: skip to its closing bracket (a leading "]" or "^]" is literal)
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
            continue
        if c in "*+":
            return pattern[max(0, i - 12):i + 1]
        if c == "{":
            braces = _REPEAT_BRACES.match(pattern, i)
            if braces is not None:
                low, comma, high = braces.groups()
                if (comma and not high) or int(high or low or 0) > MAX_REPEAT:
                    return pattern[max(0, i - 12):braces.end()]
                i = braces.end()
                continue
        i += 1
    return None


# --- building ------------------------------------------------------------------------------


def _words(terms: Sequence[str] | None) -> re.Pattern[str] | None:
    terms = [term for term in (terms or ()) if term]
    if not terms:
        return None
    return re.compile(r"\b(?:" + "|".join(f"(?:{term})" for term in terms) + r")\b", re.IGNORECASE)


def _build(raw: Mapping[str, t.Any]) -> MatchingConfig:
    base = raw.get("valueset_base", "")
    systems = dict(raw["systems"])

    def urls(names: Sequence[str] | None) -> tuple[str, ...]:
        return tuple(name if "://" in name or name.startswith("urn:") else base + name for name in names or ())

    def pairs(rows: Sequence[Mapping[str, str]] | None) -> frozenset[Code]:
        return frozenset((row["system"], row["code"]) for row in rows or ())

    med = raw["medication"]
    drugs = tuple(
        DrugRule(
            id=d["id"],
            drug_class=DrugClass(d["drug_class"]),
            gcsf_class=GcsfClass(d["gcsf_class"]) if d.get("gcsf_class") else None,
            label=d.get("label", d["id"]),
            valuesets=urls(d.get("valuesets")),
            atc_prefixes=tuple(p.upper() for p in d.get("atc_prefixes", ())),
            atc_exclude=tuple(p.upper() for p in d.get("atc_exclude", ())),
            text=_words(d.get("text")),
            text_exclude=_words(d.get("text_exclude")),
            requires_malignancy=bool(d.get("requires_malignancy", False)),
        )
        for d in med.get("drug", ())
    )
    clinical = tuple(
        ClinicalRule(
            kind=ClinicalKind(c["kind"]),
            valuesets=urls(c.get("valuesets")),
            icd10cm_prefixes=tuple(p.upper() for p in c.get("icd10cm_prefixes", ())),
            icd10cm_exclude=tuple(p.upper() for p in c.get("icd10cm_exclude", ())),
        )
        for c in raw.get("clinical", ())
    )
    neg = raw.get("negation", {})
    misplaced = [f"[[clinical]] {c['kind']} {key}" for c in raw.get("clinical", ()) for key in ("text", "text_exclude") if c.get(key)]
    misplaced += [f"[negation] {key}" for key in ("before", "after", "value_text") if neg.get(key)]
    misplaced += [f"[[site]] {s['site']} text" for s in raw.get("site", ()) if s.get("text")]
    pain = raw.get("pain_score", {})
    order = raw.get("chemotherapy_order", {})
    return MatchingConfig(
        version=str(raw.get("version", "")),
        systems=MappingProxyType(systems),
        system_aliases=MappingProxyType(dict(raw.get("system_aliases", {}))),
        status_skip=MappingProxyType({k: frozenset(v) for k, v in raw.get("status_skip", {}).items()}),
        system_priority=tuple(systems[name] for name in med.get("system_priority", ())),
        gcsf_unknown_class=GcsfClass(med.get("gcsf_unknown_class", "daily")),
        on_body_injector=_words(med.get("on_body_injector_text")),
        drugs=drugs,
        clinical=clinical,
        negation_value_codes=pairs(neg.get("value_codes")),
        negation_interpretation_codes=pairs(neg.get("interpretation_codes")),
        sites=tuple(
            SiteRule(
                site=SpineSite(s["site"]),
                code_valuesets=urls(s.get("code_valuesets")),
                body_valuesets=urls(s.get("body_valuesets")),
            )
            for s in raw.get("site", ())
        ),
        pain_score_valuesets=urls(pain.get("valuesets")),
        pain_score_max=float(pain.get("max", 10.0)),
        pain_unit_factors=MappingProxyType(
            {normalise_unit(k): float(v) for k, v in pain.get("unit_factors", {}).items()}
        ),
        labs=tuple(
            LabRule(
                kind=LabKind(lab["kind"]),
                valuesets=urls(lab.get("valuesets")),
                unit_factors=MappingProxyType(
                    {normalise_unit(k): float(v) for k, v in lab.get("unit_factors", {}).items()}
                ),
            )
            for lab in raw.get("lab", ())
        ),
        chemotherapy_procedure_valuesets=urls(raw.get("chemotherapy_procedure", {}).get("valuesets")),
        imaging=tuple(
            ImagingRule(
                kind=ImagingKind(img["kind"]),
                valuesets=urls(img.get("valuesets")),
                text=_words(img.get("text")),
                modalities=frozenset(m.upper() for m in img.get("modalities", ())),
                body_valuesets=urls(img.get("body_valuesets")),
            )
            for img in raw.get("imaging", ())
        ),
        chemotherapy_order=ChemotherapyOrderRule(
            statuses=frozenset(order.get("statuses", ("active", "completed"))),
            activity_status_skip=frozenset(order.get("activity_status_skip", ())),
            text=_words(order.get("text")),
            text_exclude=_words(order.get("text_exclude")),
        ),
        generalised_weakness_valuesets=urls(raw.get("generalised_weakness", {}).get("valuesets")),
        misplaced_text=tuple(misplaced),
    )
