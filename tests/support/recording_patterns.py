"""Record what the configured text patterns are given: the length of every string searched.

:func:`instrument` returns a copy of a :class:`MatchingConfig` whose every compiled pattern is a
:class:`RecordingPattern`; :func:`compiled_patterns` walks any configuration object for compiled
patterns left unwrapped (so a pattern added to the configuration later cannot escape the tests).
"""

from __future__ import annotations

import dataclasses
import re
import typing as t
from collections.abc import Mapping

from fhir_mapping.matchconfig import MatchingConfig


class RecordingPattern:
    """Stands in for a compiled pattern; appends ``(name, len(text))`` to ``log`` on every search."""

    def __init__(self, name: str, compiled: re.Pattern[str], log: list[tuple[str, int]]) -> None:
        self.name = name
        self.compiled = compiled
        self.pattern = compiled.pattern
        self.flags = compiled.flags
        self.log = log

    def search(self, text: str, *args: t.Any) -> re.Match[str] | None:
        self.log.append((self.name, len(text)))
        return self.compiled.search(text, *args)


def instrument(config: MatchingConfig, log: list[tuple[str, int]]) -> MatchingConfig:
    """``config`` with every text pattern recording into ``log``."""
    names = {id(pattern): name for name, pattern in config.text_patterns()}

    def wrap(pattern: re.Pattern[str] | None) -> t.Any:
        return None if pattern is None else RecordingPattern(names[id(pattern)], pattern, log)

    return dataclasses.replace(
        config,
        on_body_injector=wrap(config.on_body_injector),
        drugs=tuple(dataclasses.replace(d, text=wrap(d.text), text_exclude=wrap(d.text_exclude)) for d in config.drugs),
        chemotherapy_order=dataclasses.replace(
            config.chemotherapy_order,
            text=wrap(config.chemotherapy_order.text),
            text_exclude=wrap(config.chemotherapy_order.text_exclude),
        ),
        imaging=tuple(dataclasses.replace(img, text=wrap(img.text)) for img in config.imaging),
    )


def compiled_patterns(value: t.Any, path: str = "config") -> t.Iterator[tuple[str, re.Pattern[str]]]:
    """Every compiled ``re.Pattern`` reachable through dataclass fields, tuples, lists and mappings."""
    if isinstance(value, re.Pattern):
        yield path, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from compiled_patterns(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, (tuple, list, frozenset, set)):
        for i, item in enumerate(value):
            yield from compiled_patterns(item, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from compiled_patterns(item, f"{path}[{key!r}]")
