"""The detail view's texts from ``knowledge/detail_view.toml`` (a site overlay's file is deep-merged over it)."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from pathlib import Path

from assessment.findings import Citation
from fhir_mapping.overlay import read_overlaid_toml

FILE_NAME = "detail_view.toml"


class ViewTextError(ValueError):
    """``detail_view.toml`` is missing or malformed."""


@dataclass(frozen=True)
class SafetyNetting:
    title: str
    intro: str
    items: tuple[str, ...]
    advice: str
    citation: Citation


@dataclass(frozen=True)
class Handout:
    """The printable patient handout's texts (plain language)."""

    title: str
    intro: str
    sections: tuple[tuple[str, str, tuple[str, ...]], ...]  #: (key, title, items), in order
    your_dates_title: str
    no_dates: str
    footer: str
    citation: Citation


@dataclass(frozen=True)
class ViewText:
    safety_netting: SafetyNetting
    handout: Handout


def load_view_text(directories: t.Sequence[Path]) -> ViewText:
    """Read ``detail_view.toml`` from the knowledge directories (the overlay's deep-merged over ours)."""
    data, files, problems = read_overlaid_toml(directories, FILE_NAME)
    if not files:
        raise ViewTextError(f"{FILE_NAME} is missing from the knowledge directories")
    if problems:
        raise ViewTextError("; ".join(problems))
    try:
        raw = data["safety_netting"]
        cite = raw["citation"]
        hand = data["handout"]
        return ViewText(
            handout=Handout(
                title=_str(hand["title"]),
                intro=_str(hand["intro"]),
                sections=tuple(
                    (key, _str(hand[f"{key}_title"]), tuple(_str(i) for i in hand[key]))
                    for key in ("causes", "self_care", "gcsf", "seek_help")
                ),
                your_dates_title=_str(hand["your_dates_title"]),
                no_dates=_str(hand["no_dates"]),
                footer=_str(hand["footer"]),
                citation=_citation(hand["citation"]),
            ),
            safety_netting=SafetyNetting(
                title=_str(raw["title"]),
                intro=_str(raw["intro"]),
                items=tuple(_str(i) for i in raw["items"]),
                advice=_str(raw.get("advice", "")),
                citation=_citation(cite),
            ),
        )
    except (KeyError, TypeError) as exc:
        raise ViewTextError(f"{' + '.join(map(str, files))}: {exc.__class__.__name__}: {exc}") from None


def _citation(cite: t.Any) -> Citation:
    return Citation(
        title=_str(cite["title"]),
        url=_str(cite["url"]),
        recommendation=_str(cite.get("recommendation", "")),
        grade=_str(cite.get("grade", "")),
    )


def _str(value: t.Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
