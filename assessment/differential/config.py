"""Typed configuration of the detail view's differential, from ``knowledge/differential.toml``.

The caller reads and merges the TOML (and any site overlay) and passes the mapping here, with
the concepts of the value sets it names; this module never touches files. Clinical content —
which causes, which agents, which windows, every sentence — is data; only the placeholders each
sentence may use (:data:`FACT_VARIABLES`) are fixed here, because the builder fills them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from assessment.findings import Citation

__all__ = [
    "CAUSE_KEYS",
    "FACT_VARIABLES",
    "AgentGroup",
    "CauseText",
    "DifferentialConfig",
    "DifferentialConfigError",
    "parse_differential_config",
]

#: the causes the builder knows how to weigh (the seed leaflet's four)
CAUSE_KEYS = ("gcsf-timing", "chemotherapy-side-effects", "spread-to-spine", "posture-non-specific")

#: every fact sentence the builder writes, with the placeholders it fills
FACT_VARIABLES: Mapping[str, frozenset[str]] = MappingProxyType({
    "gcsf_dose_in_window": frozenset({"onset_date", "day", "product", "verb", "dose_date", "window_end"}),
    "gcsf_dose_after_onset": frozenset({"product", "verb", "dose_date", "onset_date"}),
    "gcsf_window_before_onset": frozenset(
        {"product", "verb", "dose_date", "window_end", "days_after", "onset_date"}
    ),
    "gcsf_none": frozenset({"lookback_days"}),
    "chemo_agent": frozenset({"agent", "verb", "dose_date", "group", "effects"}),
    "chemo_onset_after_dose": frozenset({"onset_date", "day", "agent", "verb", "dose_date", "window_days"}),
    "chemo_onset_outside_window": frozenset(
        {"onset_date", "day", "agent", "verb", "dose_date", "window_days"}
    ),
    "chemo_dose_after_onset": frozenset({"agent", "verb", "dose_date", "onset_date"}),
    "chemo_none": frozenset({"groups", "lookback_days"}),
    "chemo_red_flag": frozenset({"flag"}),
    "spine_night_pain": frozenset({"text", "date"}),
    "spine_no_red_flag": frozenset({"red_flag_days"}),
    "spine_no_feature": frozenset(),
    "spine_scores_falling": frozenset({"first", "last", "first_date", "last_date"}),
    "spine_imaging": frozenset({"kind", "date"}),
    "posture_no_red_flag": frozenset({"red_flag_days"}),
    "posture_no_feature": frozenset(),
    "posture_not_in_window": frozenset(),
    "posture_no_chemo_timing": frozenset({"groups"}),
    "outranked": frozenset(),
})
#: imaging kinds (assessment.facts.ImagingKind values) the ``spine_imaging`` fact names
IMAGING_KINDS = ("spine-mri", "bone-scan")

Code = tuple[str, str]
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.-]+)?$")


class DifferentialConfigError(ValueError):
    """``differential.toml`` is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid differential configuration:\n- " + "\n- ".join(self.problems))


@dataclass(frozen=True)
class CauseText:
    """One cause as the page names it."""

    key: str
    title: str
    summary: str
    rules: tuple[str, ...]  #: card rules that stand for this cause
    citation: Citation


@dataclass(frozen=True)
class AgentGroup:
    """Chemotherapy agents known for neuropathy or muscle pain (e.g. the taxanes)."""

    key: str
    title: str  #: in a sentence: "a taxane"
    effects: str
    window: timedelta  #: pain starting this long after a dose fits the agent
    names: tuple[str, ...]
    codes: Mapping[Code, str] = field(default_factory=lambda: MappingProxyType({}))  #: code -> name
    pattern: re.Pattern[str] | None = None  #: whole-word match of any name (longest first)

    def agents(self, codes: Iterable[Code], text: str) -> tuple[str, ...]:
        """Return the agent names a medication's codes or text name (code matches first)."""
        found = [self.codes[code] for code in codes if code in self.codes]
        if text and self.pattern is not None:
            found += [match.group(0).lower() for match in self.pattern.finditer(text)]
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class DifferentialConfig:
    """Everything ``differential.toml`` says."""

    version: str
    title: str
    intro: str
    none_text: str
    lookback: timedelta
    causes: tuple[CauseText, ...]  #: in page order
    facts: Mapping[str, str]
    groups: tuple[AgentGroup, ...]
    night_pain: tuple[re.Pattern[str], ...] = ()
    night_pain_exclude: tuple[re.Pattern[str], ...] = ()
    imaging_names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def fact(self, key: str, **values: object) -> str:
        """Return fact ``key`` filled in, as a sentence (first letter upper case)."""
        text = self.facts[key].format(**values)
        return text[:1].upper() + text[1:]

    def groups_text(self) -> str:
        """Return the groups' titles as one phrase: "a taxane, a vinca alkaloid or a platinum agent"."""
        titles = [g.title for g in self.groups]
        if len(titles) <= 1:
            return "".join(titles)
        return ", ".join(titles[:-1]) + " or " + titles[-1]


def parse_differential_config(
    data: Mapping[str, Any],
    *,
    rule_ids: Collection[str] | None = None,
    valueset_concepts: Mapping[str, Iterable[tuple[str, str, str]]] | None = None,
) -> DifferentialConfig:
    """Build the typed configuration or raise :class:`DifferentialConfigError` listing every
    problem. ``rule_ids`` (when given) are the rules a cause may name; ``valueset_concepts``
    maps a value-set url to its ``(system, code, display)`` concepts (a group's ``valuesets``
    must be among them)."""
    problems: list[str] = []
    text = _Reader(data, problems)
    version = text.string("version")
    if version and not _SEMVER.match(version):
        problems.append(f"version {version!r} is not a semantic version")
    lookback_days = data.get("lookback_days")
    if not isinstance(lookback_days, int) or isinstance(lookback_days, bool) or lookback_days <= 0:
        problems.append("lookback_days must be a positive whole number of days")
        lookback_days = 1
    causes = _causes(data, problems, rule_ids)
    facts = _facts(data.get("facts"), problems)
    groups = _groups(data.get("chemotherapy"), problems, valueset_concepts)
    night, night_exclude = _night_pain(data.get("night_pain"), problems)
    imaging = data.get("imaging_names")
    if not isinstance(imaging, Mapping) or not all(isinstance(imaging.get(k), str) for k in IMAGING_KINDS):
        problems.append(f"[imaging_names] must name each of {', '.join(IMAGING_KINDS)}")
        imaging = {}
    config = DifferentialConfig(
        version=version,
        title=text.string("title"),
        intro=text.string("intro"),
        none_text=text.string("none"),
        lookback=timedelta(days=lookback_days),
        causes=causes,
        facts=MappingProxyType(facts),
        groups=groups,
        night_pain=night,
        night_pain_exclude=night_exclude,
        imaging_names=MappingProxyType(dict(imaging)),
    )
    if problems:
        raise DifferentialConfigError(problems)
    return config


class _Reader:
    def __init__(self, data: Mapping[str, Any], problems: list[str], where: str = "") -> None:
        self.data, self.problems, self.where = data, problems, where

    def string(self, key: str, *, empty: bool = False) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or (not empty and not value.strip()):
            self.problems.append(f"{self.where}{key} must be a non-empty string")
            return ""
        return value


def _causes(data: Mapping[str, Any], problems: list[str], rule_ids: Collection[str] | None) -> tuple[CauseText, ...]:
    order = data.get("order")
    tables = data.get("causes")
    if not isinstance(tables, Mapping):
        problems.append("[causes] is missing")
        return ()
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(CAUSE_KEYS) or len(order) != len(CAUSE_KEYS):
        problems.append(f"order must list each of {', '.join(CAUSE_KEYS)} once")
        order = list(CAUSE_KEYS)
    unknown = sorted(set(tables) - set(CAUSE_KEYS))
    if unknown:
        problems.append(f"[causes] has unknown causes: {', '.join(unknown)} (known: {', '.join(CAUSE_KEYS)})")
    causes = []
    for key in order:
        table = tables.get(key)
        where = f"causes.{key}."
        if not isinstance(table, Mapping):
            problems.append(f"[causes.{key}] is missing")
            continue
        reader = _Reader(table, problems, where)
        rules = table.get("rules")
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            problems.append(f"{where}rules must be a list of rule ids")
            rules = []
        if rule_ids is not None:
            problems.extend(f"{where}rules: unknown rule {r!r}" for r in rules if r not in rule_ids)
        cite = table.get("citation")
        citation = Citation(title="", url="")
        if not isinstance(cite, Mapping):
            problems.append(f"{where}citation must be a table {{ title, url, recommendation, grade }}")
        else:
            cite_reader = _Reader(cite, problems, f"{where}citation.")
            citation = Citation(
                title=cite_reader.string("title"),
                url=cite_reader.string("url", empty=True),
                recommendation=cite_reader.string("recommendation", empty=True),
                grade=cite_reader.string("grade", empty=True),
            )
        causes.append(CauseText(key=key, title=reader.string("title"), summary=reader.string("summary"),
                                rules=tuple(rules), citation=citation))
    return tuple(causes)


def _facts(raw: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        problems.append("[facts] is missing")
        return {}
    facts: dict[str, str] = {}
    for key, allowed in FACT_VARIABLES.items():
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"facts.{key} must be a non-empty string (placeholders: {_names(allowed)})")
            continue
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            problems.append(f"facts.{key}: {exc}")
            continue
        bad = sorted({name for name in fields if name not in allowed})
        if bad:
            problems.append(f"facts.{key} uses unknown placeholders {', '.join(bad)} (allowed: {_names(allowed)})")
            continue
        facts[key] = value
    extra = sorted(set(raw) - set(FACT_VARIABLES))
    if extra:
        problems.append(f"[facts] has unknown keys: {', '.join(extra)}")
    return facts


def _names(allowed: frozenset[str]) -> str:
    return ", ".join("{" + name + "}" for name in sorted(allowed)) or "none"


def _groups(
    raw: Any, problems: list[str], valueset_concepts: Mapping[str, Iterable[tuple[str, str, str]]] | None
) -> tuple[AgentGroup, ...]:
    tables = raw.get("groups") if isinstance(raw, Mapping) else None
    if not isinstance(tables, Mapping) or not tables:
        problems.append("[chemotherapy.groups.<key>] must define at least one group of agents")
        return ()
    groups = []
    for key, table in tables.items():
        where = f"chemotherapy.groups.{key}."
        if not isinstance(table, Mapping):
            problems.append(f"{where[:-1]} must be a table")
            continue
        reader = _Reader(table, problems, where)
        window = table.get("window_days")
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            problems.append(f"{where}window_days must be a whole number of days")
            window = 0
        names = table.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            problems.append(f"{where}names must be a non-empty list of agent names")
            names = []
        names = [n.strip().lower() for n in names]
        codes: dict[Code, str] = {}
        for item in table.get("codes") or []:
            if not isinstance(item, Mapping) or not all(isinstance(item.get(k), str) and item.get(k) for k in ("system", "code", "name")):
                problems.append(f"{where}codes: each entry needs system, code and name")
                continue
            if item["name"].lower() not in names:
                problems.append(f"{where}codes: {item['code']} names {item['name']!r}, which is not in names")
            codes[(item["system"], item["code"])] = item["name"].lower()
        pattern = _name_pattern(names)
        for url in table.get("valuesets") or []:
            if valueset_concepts is None:
                continue
            concepts = valueset_concepts.get(url) if isinstance(url, str) else None
            if concepts is None:
                problems.append(f"{where}valuesets: unknown value set {url!r}")
                continue
            for system, code, display in concepts:
                hit = pattern.search(display) if pattern is not None and display else None
                if hit is not None:
                    codes.setdefault((system, code), hit.group(0).lower())
        groups.append(AgentGroup(key=str(key), title=reader.string("title"), effects=reader.string("effects"),
                                 window=timedelta(days=window), names=tuple(names),
                                 codes=MappingProxyType(codes), pattern=pattern))
    return tuple(groups)


def _name_pattern(names: list[str]) -> re.Pattern[str] | None:
    if not names:
        return None
    ordered = sorted(set(names), key=lambda n: (-len(n), n))  # "nab-paclitaxel" before "paclitaxel"
    return re.compile(r"\b(?:" + "|".join(re.escape(n) for n in ordered) + r")\b", re.IGNORECASE)


def _night_pain(raw: Any, problems: list[str]) -> tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]:
    if not isinstance(raw, Mapping):
        problems.append("[night_pain] is missing")
        return (), ()
    compiled: list[tuple[re.Pattern[str], ...]] = []
    for key in ("text", "exclude"):
        patterns = raw.get(key, [])
        out = []
        if not isinstance(patterns, list):
            problems.append(f"night_pain.{key} must be a list of regular expressions")
            patterns = []
        for pattern in patterns:
            try:
                out.append(re.compile(str(pattern), re.IGNORECASE))
            except re.error as exc:
                problems.append(f"night_pain.{key}: {pattern!r}: {exc}")
        compiled.append(tuple(out))
    return compiled[0], compiled[1]
