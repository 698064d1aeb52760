"""The service catalogue: which service ids stand on which hooks, with their prefetch templates.

Loaded from ``knowledge/services.toml`` (and the site overlay's, deep-merged over it) once at
start-up; discovery publishes it and invocations are routed on (id, hook).
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from pathlib import Path

from cds_hooks.errors import HookNotSupported, UnknownService
from fhir_mapping.overlay import read_overlaid_toml
from fhir_mapping.valuesets import ValueSetIndex

SUPPORTED_HOOKS = ("patient-view", "encounter-start", "order-select", "order-sign")

#: CDS Hooks 2.0.1 prefetch tokens: root-level context fields and the four user*Id tokens.
_TOKEN = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
_CONTEXT_TOKENS = {
    "patient-view": {"userId", "patientId", "encounterId"},
    "encounter-start": {"userId", "patientId", "encounterId"},
    "order-select": {"userId", "patientId", "encounterId"},
    "order-sign": {"userId", "patientId", "encounterId"},
}


@dataclass(frozen=True)
class ServiceDefinition:
    """One discovery entry."""

    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str
    prefetch: t.Mapping[str, str]
    #: Left out of discovery, still accepted at invocation (an old id/hook registration).
    deprecated: bool = False

    def to_discovery(self) -> dict[str, t.Any]:
        entry: dict[str, t.Any] = {
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "id": self.id,
        }
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


class ServiceCatalog:
    """Lookup of services by (id, hook)."""

    def __init__(self, services: t.Sequence[ServiceDefinition]) -> None:
        self.services = tuple(services)
        self._by_key = {(s.id, s.hook): s for s in services}
        self._ids = {s.id for s in services}

    def discovery(self) -> dict[str, t.Any]:
        """The ``GET /cds-services`` body."""
        return {"services": [s.to_discovery() for s in self.services if not s.deprecated]}

    def has_id(self, service_id: str) -> bool:
        return service_id in self._ids

    def resolve(self, service_id: str, hook: str) -> ServiceDefinition:
        """The service for this id and hook; 404 for an unknown id, 400 for a hook it lacks."""
        if service_id not in self._ids:
            raise UnknownService(f"no CDS service with id {service_id!r}")
        service = self._by_key.get((service_id, hook))
        if service is None:
            hooks = sorted(h for (i, h) in self._by_key if i == service_id)
            raise HookNotSupported(
                f"service {service_id!r} is not registered for hook {hook!r} "
                f"(it runs on {', '.join(hooks)})",
                field="hook",
            )
        return service


def load_catalog(dirs: t.Sequence[Path], valuesets: ValueSetIndex) -> tuple[ServiceCatalog, list[str]]:
    """Read services.toml from the knowledge directories (a site overlay's file is deep-merged
    over ours: ``[templates]`` key by key, its ``[[services]]`` array replaces ours whole)."""
    problems: list[str] = []
    data, files, read_problems = read_overlaid_toml(dirs, "services.toml")
    if not files:
        return ServiceCatalog([]), ["services.toml is missing"]
    if read_problems:
        return ServiceCatalog([]), read_problems
    templates = _templates(data.get("templates", {}), valuesets, problems)
    raw_services = _resolve_same_as(data.get("services", []), problems)
    services = []
    seen: set[tuple[str, str]] = set()
    published: set[str] = set()
    for i, raw in enumerate(raw_services):
        where = f"services.toml: services[{i}]"
        missing = [k for k in ("id", "hook", "title", "description") if not raw.get(k)]
        if missing:
            problems.append(f"{where} is missing {', '.join(missing)}")
            continue
        if raw["hook"] not in SUPPORTED_HOOKS:
            problems.append(f"{where}.hook {raw['hook']!r} is not one of {', '.join(SUPPORTED_HOOKS)}")
            continue
        if (raw["id"], raw["hook"]) in seen:
            problems.append(f"{where}: {raw['id']} on {raw['hook']} is defined twice")
        seen.add((raw["id"], raw["hook"]))
        if not raw.get("deprecated") and raw["id"] in published:
            problems.append(f"{where}: {raw['id']} is published on more than one hook")
        if not raw.get("deprecated"):
            published.add(raw["id"])
        prefetch = {}
        for key in raw.get("prefetch", []):
            if key not in templates:
                problems.append(f"{where}.prefetch names unknown template {key!r}")
                continue
            problems.extend(f"{where}: {p}" for p in template_problems(templates[key], raw["hook"]))
            prefetch[key] = templates[key]
        services.append(
            ServiceDefinition(
                id=raw["id"],
                hook=raw["hook"],
                title=raw["title"],
                description=raw["description"],
                usage_requirements=raw.get("usageRequirements", ""),
                prefetch=prefetch,
                deprecated=bool(raw.get("deprecated", False)),
            )
        )
    _check_deprecated_prefetch(services, problems)
    return ServiceCatalog(services), problems


#: what a deprecated entry takes from the published entry it names in ``same_as``
_INHERITED = ("title", "description", "usageRequirements", "prefetch")


def _resolve_same_as(raw_services: t.Any, problems: list[str]) -> list[t.Any]:
    """Fill a deprecated entry's ``same_as = "<published id>"`` from that entry (same hook).

    Old id/hook pairs are the same service under a former id: they take its title,
    description, usage requirements and prefetch instead of repeating them.
    """
    if not isinstance(raw_services, list):
        return []
    published = {
        (r.get("id"), r.get("hook")): r
        for r in raw_services
        if isinstance(r, dict) and not r.get("deprecated")
    }
    out = []
    for i, raw in enumerate(raw_services):
        if isinstance(raw, dict) and "same_as" in raw:
            target = published.get((raw["same_as"], raw.get("hook")))
            if not raw.get("deprecated"):
                problems.append(f"services.toml: services[{i}]: same_as is only for deprecated entries")
            elif target is None:
                problems.append(
                    f"services.toml: services[{i}]: same_as {raw['same_as']!r} names no published "
                    f"service on {raw.get('hook')!r}"
                )
            else:
                raw = {**{k: target[k] for k in _INHERITED if k in target}, **raw}
        out.append(raw)
    return out


def _check_deprecated_prefetch(services: t.Sequence[ServiceDefinition], problems: list[str]) -> None:
    """A deprecated pair must ask for the same prefetch as the published service on its hook."""
    published = {s.hook: s for s in services if not s.deprecated}
    for s in services:
        current = published.get(s.hook)
        if s.deprecated and current is not None and dict(s.prefetch) != dict(current.prefetch):
            problems.append(
                f"services.toml: deprecated {s.id} on {s.hook} asks for another prefetch than "
                f"{current.id} on {s.hook}; use same_as = {current.id!r}"
            )


def _templates(raw: t.Mapping[str, t.Any], valuesets: ValueSetIndex, problems: list[str]) -> dict[str, str]:
    templates = {}
    for key, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("query"), str):
            problems.append(f"services.toml: templates.{key} needs a query string")
            continue
        query = spec["query"]
        codes: list[str] = []
        for url in spec.get("code_valuesets", []):
            if url not in valuesets.urls:
                problems.append(f"services.toml: templates.{key} names unknown value set {url}")
                continue
            codes.extend(f"{system}|{code}" for system, code in sorted(valuesets.codes(url)))
        if codes:
            query += ("&" if "?" in query else "?") + "code=" + ",".join(codes)
        templates[key] = query
    return templates


def template_problems(template: str, hook: str) -> list[str]:
    """Tokens a 2.0.1 client cannot fill for this hook (e.g. ``{{context.medication.id}}``)."""
    problems = []
    for token in _TOKEN.findall(template):
        if token in _USER_TOKENS:
            continue
        if token.startswith("context.") and token[len("context."):] in _CONTEXT_TOKENS[hook]:
            continue
        problems.append(f"prefetch token {{{{{token}}}}} is not a CDS Hooks 2.0.1 token for {hook}")
    return problems


def fill_template(template: str, context: t.Mapping[str, t.Any]) -> str | None:
    """Fill the tokens from a validated context; None when a token has no value (skip the key)."""
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        if token in _USER_TOKENS:
            user = str(context.get("userId", ""))
            kind, _, ident = user.partition("/")
            if kind != _USER_TOKENS[token] or not ident:
                missing = True
                return ""
            return ident
        value = context.get(token[len("context."):]) if token.startswith("context.") else None
        if not isinstance(value, str) or not value:
            missing = True
            return ""
        return value

    filled = _TOKEN.sub(substitute, template)
    return None if missing else filled
