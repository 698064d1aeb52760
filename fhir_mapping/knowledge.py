"""Load the clinical knowledge once: value sets, matching config, rules and card actions.

The packaged ``knowledge/`` directory comes first; a site overlay directory (``[knowledge]
path``) may replace value sets (by canonical url) and replace or extend any key of
``rules.toml``, ``matching.toml``, ``actions.toml``, ``clinical_text.toml`` (the clinical-text
component's terms: the merged file is compiled once and handed to every extractor through the
matching configuration) and ``differential.toml`` (the detail view's differential: causes,
agents, fact sentences), each deep-merged over ours (:func:`fhir_mapping.overlay.merge_overlay`,
also used for ``services.toml`` and ``detail_view.toml``, which their own layers load).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing as t
from dataclasses import dataclass
from pathlib import Path

import knowledge as _knowledge_package
from assessment.config import Quantity, RuleConfig, parse_rule_config, validate_rule_config
from assessment.differential import DifferentialConfig, DifferentialConfigError, parse_differential_config
from fhir_mapping.clinical_text import parse_text_config
from fhir_mapping.extract import MatchingConfig, load_matching_config, validate_matching_config
from fhir_mapping.overlay import read_overlaid_toml
from fhir_mapping.suggestions import ActionCatalog, parse_action_catalog
from fhir_mapping.valuesets import ValueSetIndex, concepts_by_url, load_valueset_files, validate_valueset

PACKAGED_KNOWLEDGE = Path(_knowledge_package.__file__).resolve().parent


class KnowledgeError(ValueError):
    """The knowledge base is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Knowledge:
    """Everything clinical the service knows, parsed and indexed."""

    valuesets: ValueSetIndex
    matching: MatchingConfig
    rules: RuleConfig
    actions: ActionCatalog
    directories: tuple[Path, ...]
    differential: DifferentialConfig


def knowledge_dirs(overlay: Path | None) -> list[Path]:
    """The packaged knowledge directory, then the site overlay if any."""
    return [PACKAGED_KNOWLEDGE] + ([overlay] if overlay is not None else [])


def load_knowledge(overlay: Path | None = None) -> Knowledge:
    """Load and validate; raise :class:`KnowledgeError` listing every problem."""
    result, problems = _load(overlay)
    if problems or result is None:
        raise KnowledgeError(problems or ["knowledge could not be loaded"])
    return result


def check_knowledge(overlay: Path | None = None) -> list[str]:
    """Every problem in the knowledge base (empty when all is well)."""
    return _load(overlay)[1]


def _load(overlay: Path | None) -> tuple[Knowledge | None, list[str]]:
    dirs = knowledge_dirs(overlay)
    problems: list[str] = []

    resources = load_valueset_files(dirs)
    for resource in resources:
        for problem in validate_valueset(resource):
            problems.append(f"value set {resource.get('url', resource.get('id', '?'))}: {problem}")
    valuesets = ValueSetIndex.from_resources(resources)

    rules_data = _merged_toml(dirs, "rules.toml", problems)
    actions_data = _merged_toml(dirs, "actions.toml", problems)
    actions, action_problems = parse_action_catalog(actions_data)
    problems.extend(action_problems)
    windows = action_windows(actions)
    problems.extend(
        f"rules.toml: {p}"
        for p in validate_rule_config(
            rules_data, valueset_urls=valuesets.urls, action_keys=actions.actions.keys(), action_windows=windows
        )
    )
    matching_paths = [d / "matching.toml" for d in dirs if (d / "matching.toml").is_file()]
    try:
        matching = load_matching_config(matching_paths)
        problems.extend(f"matching.toml: {p}" for p in validate_matching_config(matching, valuesets))
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"matching.toml: {exc}")
        return None, problems
    text_data = _merged_toml(dirs, "clinical_text.toml", problems)
    try:
        matching = dataclasses.replace(matching, text=parse_text_config(text_data))
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"clinical_text.toml: {exc!r}")
    differential_data = _merged_toml(dirs, "differential.toml", problems)
    rules_table = rules_data.get("rules")
    rule_ids: set[str] = {str(k) for k in rules_table} if isinstance(rules_table, dict) else set()
    differential = None
    try:
        differential = parse_differential_config(
            differential_data, rule_ids=rule_ids, valueset_concepts=concepts_by_url(resources)
        )
    except DifferentialConfigError as exc:
        problems.extend(f"differential.toml: {p}" for p in exc.problems)
    if problems or differential is None:
        return None, problems
    try:
        rules = parse_rule_config(rules_data, action_windows=windows)
    except ValueError as exc:
        return None, problems + [f"rules.toml: {exc}"]
    return Knowledge(valuesets, matching, rules, actions, tuple(dirs), differential), problems


def action_windows(actions: ActionCatalog) -> dict[str, Quantity]:
    """Each action's configured ``within``, for the card texts of the rules that offer it."""
    out = {}
    for key, spec in actions.actions.items():
        quantity = spec.within_quantity
        if quantity is not None:
            out[key] = Quantity(*quantity)
    return out


def _merged_toml(dirs: t.Sequence[Path], name: str, problems: list[str]) -> dict[str, t.Any]:
    merged, files, read_problems = read_overlaid_toml(dirs, name)
    problems.extend(read_problems)
    if not files:
        problems.append(f"{name} is missing from {dirs[0]}")
    return merged
