"""Site overlays of the knowledge files: one deep merge for every TOML file of ``knowledge/``.

The packaged ``knowledge/`` directory comes first, then the site overlay directory
(``[knowledge] path``). For each TOML knowledge file (``rules``, ``actions``, ``matching``,
``clinical_text``, ``differential``, ``services``, ``detail_view``) the overlay's file, when it
has one, is deep-merged over ours by :func:`merge_overlay`: tables merge key by key, anything
else (strings, numbers, arrays, arrays of tables) is replaced by the overlay's value. So an
overlay states only the keys it changes. Value sets (JSON) are replaced by canonical url
instead (:mod:`fhir_mapping.valuesets`).
"""

from __future__ import annotations

import tomllib
import typing as t
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["merge_overlay", "read_overlaid_toml"]


def merge_overlay(base: Mapping[str, t.Any], overlay: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Deep-merge ``overlay`` onto ``base``: tables merge key by key, anything else (scalars,
    arrays) is replaced by the overlay's value. Neither input is modified."""
    merged: dict[str, t.Any] = {key: _copy(value) for key, value in base.items()}
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_overlay(merged[key], value)
        else:
            merged[key] = _copy(value)
    return merged


def _copy(value: t.Any) -> t.Any:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def read_overlaid_toml(directories: Sequence[Path], name: str) -> tuple[dict[str, t.Any], list[Path], list[str]]:
    """Read the file ``name`` of each directory that has one and merge them in order.

    Returns the merged mapping, the files found (empty: the file is missing everywhere; the
    caller says so in its own words) and the problems: a file that cannot be read or is not
    TOML is reported as ``"<path>: <error>"`` and left out of the merge.
    """
    merged: dict[str, t.Any] = {}
    files = [directory / name for directory in directories if (directory / name).is_file()]
    problems: list[str] = []
    for path in files:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        merged = merge_overlay(merged, data)
    return merged, files, problems
