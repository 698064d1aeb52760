"""Load FHIR ValueSet resources and answer "is (system, code) in value set <url>?" in O(1).

Only enumerated value sets are supported: ``compose.include[].concept`` (what the project's
knowledge ships) and, for site overlays that drop in a published expansion, ``expansion.contains``
(nested ``contains`` included). Intensional definitions (``filter``, ``valueSet`` imports)
need a terminology server; :func:`validate_valueset` reports them.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import orjson

__all__ = [
    "ValueSetIndex",
    "concepts_by_url",
    "ValueSetLoadError",
    "load_valueset_files",
    "validate_valueset",
]

Code = tuple[str, str]  #: (system, code)
_EMPTY: frozenset[t.Any] = frozenset()


class ValueSetLoadError(ValueError):
    """A value set file or folder could not be read."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class ValueSetIndex:
    """Immutable membership index over enumerated value sets, keyed by canonical url."""

    urls: frozenset[str]
    _members: Mapping[str, frozenset[Code]] = field(repr=False)
    _by_code: Mapping[Code, frozenset[str]] = field(repr=False)
    _versions: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_resources(cls, resources: Iterable[dict[str, t.Any]]) -> ValueSetIndex:
        """Build the index; a later resource with the same url replaces an earlier one."""
        members: dict[str, frozenset[Code]] = {}
        versions: dict[str, str] = {}
        for resource in resources:
            url = resource.get("url")
            if resource.get("resourceType") != "ValueSet" or not isinstance(url, str) or not url:
                continue
            members[url] = frozenset(_enumerate(resource))
            versions[url] = str(resource.get("version") or "")
        by_code: dict[Code, set[str]] = {}
        for url, codes in members.items():
            for code in codes:
                by_code.setdefault(code, set()).add(url)
        return cls(
            urls=frozenset(members),
            _members=MappingProxyType(members),
            _by_code=MappingProxyType({k: frozenset(v) for k, v in by_code.items()}),
            _versions=MappingProxyType(versions),
        )

    def contains(self, url: str, system: str, code: str) -> bool:
        """Return whether value set ``url`` holds ``code`` of ``system`` (exact match on both)."""
        return (system, code) in self._members.get(url, _EMPTY)

    def members(self, url: str) -> frozenset[Code]:
        """Return the (system, code) pairs of value set ``url`` (empty if unknown)."""
        return self._members.get(url, _EMPTY)

    def codes(self, url: str) -> frozenset[Code]:
        """Return the (system, code) pairs of value set ``url``; same as :meth:`members`."""
        return self._members.get(url, _EMPTY)

    def urls_for(self, system: str, code: str) -> frozenset[str]:
        """Return the urls of every value set that holds ``code`` of ``system``."""
        return self._by_code.get((system, code), _EMPTY)

    def version(self, url: str) -> str | None:
        """Return the business version of value set ``url``, or None if it is not loaded."""
        return self._versions.get(url)


def _enumerate(resource: Mapping[str, t.Any]) -> Iterable[Code]:
    compose = resource.get("compose") or {}
    for include in compose.get("include") or ():
        system = include.get("system")
        if not system:
            continue
        for concept in include.get("concept") or ():
            code = concept.get("code")
            if code:
                yield (system, code)
    stack = list((resource.get("expansion") or {}).get("contains") or ())
    while stack:
        entry = stack.pop()
        if entry.get("system") and entry.get("code") and not entry.get("abstract"):
            yield (entry["system"], entry["code"])
        stack.extend(entry.get("contains") or ())


def concepts_by_url(resources: Iterable[Mapping[str, t.Any]]) -> dict[str, list[tuple[str, str, str]]]:
    """Return ``(system, code, display)`` of every enumerated concept, per value-set url (a later
    resource with the same url replaces an earlier one, as in :class:`ValueSetIndex`)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for resource in resources:
        url = resource.get("url")
        if resource.get("resourceType") != "ValueSet" or not isinstance(url, str) or not url:
            continue
        rows: list[tuple[str, str, str]] = []
        for include in (resource.get("compose") or {}).get("include") or ():
            system = include.get("system")
            for concept in include.get("concept") or () if system else ():
                if concept.get("code"):
                    rows.append((system, concept["code"], str(concept.get("display") or "")))
        stack = list((resource.get("expansion") or {}).get("contains") or ())
        while stack:
            entry = stack.pop()
            if entry.get("system") and entry.get("code") and not entry.get("abstract"):
                rows.append((entry["system"], entry["code"], str(entry.get("display") or "")))
            stack.extend(entry.get("contains") or ())
        out[url] = rows
    return out


def load_valueset_files(dirs: Sequence[Path]) -> list[dict[str, t.Any]]:
    """Read ValueSet JSON files from each directory in order (overlay directories come last).

    Each entry may be a knowledge directory (its ``valuesets/`` sub-folder is read, and a
    knowledge directory without one contributes nothing) or a folder of ``*.json`` files.
    Files are read in name order, so the result is deterministic; pass the list to
    :meth:`ValueSetIndex.from_resources`, where later urls replace earlier ones.

    :raises ValueSetLoadError: a directory does not exist or a file is not valid JSON.
    """
    resources: list[dict[str, t.Any]] = []
    for base in dirs:
        base = Path(base)
        if not base.is_dir():
            raise ValueSetLoadError(f"value set directory does not exist: {base}", base)
        folder = base / "valuesets" if (base / "valuesets").is_dir() else base
        for path in sorted(folder.glob("*.json")):
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise ValueSetLoadError(f"cannot read value set {path}: {exc}", path) from exc
            if not isinstance(data, dict):
                raise ValueSetLoadError(f"value set file {path} does not hold a JSON object", path)
            resources.append(data)
    return resources


def validate_valueset(resource: Mapping[str, t.Any]) -> list[str]:
    """Return the problems that stop ``resource`` from being used as an enumerated value set.

    Messages do not repeat the value set's url; callers prefix it.
    """
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "ValueSet":
        return ["not a FHIR ValueSet resource"]
    problems = [
        f"missing {key}"
        for key in ("url", "version", "title", "purpose")
        if not isinstance(resource.get(key), str) or not resource.get(key, "").strip()
    ]
    includes = (resource.get("compose") or {}).get("include") or []
    expansion = (resource.get("expansion") or {}).get("contains") or []
    if not includes and not expansion:
        problems.append("no compose.include and no expansion: the value set is empty")
    count = 0
    for i, include in enumerate(includes):
        where = f"compose.include[{i}]"
        if not include.get("system"):
            problems.append(f"{where} has no system")
        if include.get("filter") or include.get("valueSet"):
            problems.append(f"{where} uses filter/valueSet: only enumerated concepts are supported")
        concepts = include.get("concept") or []
        if not concepts and not include.get("filter") and not include.get("valueSet"):
            problems.append(f"{where} enumerates no concept")
        for j, concept in enumerate(concepts):
            code = concept.get("code") if isinstance(concept, Mapping) else None
            if not isinstance(code, str) or not code.strip() or code != code.strip():
                problems.append(f"{where}.concept[{j}] has no usable code")
            else:
                count += 1
    for j, entry in enumerate(expansion):
        if not entry.get("contains") and not (entry.get("system") and entry.get("code")):
            problems.append(f"expansion.contains[{j}] lacks system or code")
        else:
            count += 1
    for j, _exclude in enumerate((resource.get("compose") or {}).get("exclude") or []):
        problems.append(f"compose.exclude[{j}] is not supported (leave excluded codes out)")
    if (includes or expansion) and count == 0:
        problems.append("holds no code")
    return problems
