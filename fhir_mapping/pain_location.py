"""Pain location wherever the record puts it (CLINICAL.md *Back pain*).

A pain score is back pain when its location is the back or spine: its own ``bodySite``, a
location component of the pain panel ("Pain primary location" = "Back"), or a separate
pain-location Observation recorded with it — same encounter, or within one hour. Locations are
recognised by the clinical-text component (``pain-location-item`` for the question, ``site:*``
for the answer); the pairing runs once after every resource is read, so resource order does not
matter.
"""

from __future__ import annotations

import bisect
import dataclasses
import typing as t
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from assessment.facts import PainScore, SpineSite

from .matcher import Matcher, texts_of

__all__ = ["PAIRING_WINDOW", "PainLocation", "encounter_of", "location_site", "component_site", "pair_locations", "value_texts"]

Json = Mapping[str, t.Any]
#: a pain-location Observation this close to a pain score locates it (CLINICAL.md: within 1 hour)
PAIRING_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PainLocation:
    """A separate pain-location Observation ("Pain primary location: Back")."""

    ref: str
    time: datetime | None
    encounter: str | None
    site: SpineSite


def encounter_of(resource: Json) -> str | None:
    """The ``encounter`` reference of a resource, if any."""
    encounter = resource.get("encounter")
    reference = encounter.get("reference") if isinstance(encounter, Mapping) else None
    return reference if isinstance(reference, str) and reference else None


def value_texts(holder: Json) -> list[str]:
    texts = list(texts_of(holder.get("valueCodeableConcept")))
    value = holder.get("valueString")
    if isinstance(value, str):
        texts.append(value)
    return texts


def _value_site(holder: Json, matcher: Matcher) -> SpineSite | None:
    concept = holder.get("valueCodeableConcept")
    if concept:
        site = matcher.site_of((), [concept], ())
        if site is not None:
            return site
    return matcher.site_from_text(value_texts(holder))


def location_site(resource: Json, code_texts: Iterable[str], matcher: Matcher) -> SpineSite | None:
    """The spine site of a pain-location Observation (its code asks where the pain is)."""
    if not matcher.names(code_texts, "pain-location-item"):
        return None
    return _value_site(resource, matcher)


def component_site(resource: Json, matcher: Matcher) -> SpineSite | None:
    """The spine site named by a location component of a pain panel, if any."""
    for component in resource.get("component") or ():
        if not isinstance(component, Mapping):
            continue
        if matcher.names(texts_of(component.get("code")), "pain-location-item"):
            site = _value_site(component, matcher)
            if site is not None:
                return site
    return None


def pair_locations(
    scores: list[tuple[PainScore, str | None]], locations: list[PainLocation]
) -> list[PainScore]:
    """Give each pain score without a site the site of a location recorded with it (same
    encounter, else the closest within :data:`PAIRING_WINDOW`)."""
    if not locations:
        return [score for score, _ in scores]
    by_encounter: dict[str, PainLocation] = {}
    timed = sorted((loc for loc in locations if loc.time is not None), key=lambda loc: (loc.time, loc.ref))
    times = [loc.time for loc in timed if loc.time is not None]  # every one: timed holds only timed locations
    for loc in sorted(locations, key=lambda loc: loc.ref):
        if loc.encounter:
            by_encounter.setdefault(loc.encounter, loc)
    out = []
    for score, encounter in scores:
        if score.site is None:
            found = by_encounter.get(encounter) if encounter else None
            if found is None:
                lo = bisect.bisect_left(times, score.time - PAIRING_WINDOW)
                hi = bisect.bisect_right(times, score.time + PAIRING_WINDOW)
                found = min(timed[lo:hi], key=lambda loc: (abs(loc.time - score.time), loc.ref), default=None)  # type: ignore[operator]
            if found is not None:
                score = dataclasses.replace(score, site=found.site)
        out.append(score)
    return out
