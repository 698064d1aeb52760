"""Pydantic models of the CDS Hooks 2.0.1 response, discovery and their invariants.

Used to check every response: in the test suite (``validate_responses = true``) and by
``backpain-cds replay``. Each model follows one table of the spec (§Card, §Suggestion,
§Action, §Link, §Discovery) and the 3.0-ballot invariants that restate 2.0 rules
(cds-resp-1 .. cds-resp-6).
"""

from __future__ import annotations

import typing as t
import uuid as _uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NON_EMPTY = Field(min_length=1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_empty_values(cls, data: t.Any) -> t.Any:
        """Spec §JSON: an optional field without a value is omitted, never null/""/[]/{}."""
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None or value == "" or value == [] or value == {}:
                    if not (cls is CdsResponse and key == "cards"):
                        raise ValueError(f"{key} is empty; omit optional fields instead")
        return data


class Coding(_Strict):
    code: str = _NON_EMPTY
    system: str = _NON_EMPTY
    display: str | None = None


class Source(_Strict):
    label: str = _NON_EMPTY
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None

    @field_validator("url", "icon")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute URL")
        return value


class Action(_Strict):
    type: t.Literal["create", "update", "delete"]
    description: str = _NON_EMPTY  # cds-resp-5
    resource: dict[str, t.Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _resource_for_type(self) -> Action:
        if self.type in ("create", "update") and self.resource is None:
            raise ValueError(f"a {self.type} action needs a resource")
        if self.type == "delete" and self.resourceId is None:
            raise ValueError("a delete action should use resourceId")  # cds-resp-2
        return self


class Suggestion(_Strict):
    label: str = _NON_EMPTY
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Strict):
    label: str = _NON_EMPTY
    url: str = _NON_EMPTY
    type: t.Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context_only_smart(self) -> Link:
        if self.appContext is not None and self.type != "smart":  # cds-resp-3
            raise ValueError("appContext is only allowed on smart links")
        return self


class Card(_Strict):
    model_config = ConfigDict(extra="allow")  # `extension` and future fields

    uuid: str | None = None
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: t.Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: t.Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None
    extension: dict[str, t.Any] | None = None

    @model_validator(mode="after")
    def _invariants(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:  # cds-resp-6
            raise ValueError("selectionBehavior is required when there are suggestions")
        if self.selectionBehavior == "at-most-one" and self.suggestions:  # cds-resp-1
            if sum(1 for s in self.suggestions if s.isRecommended) > 1:
                raise ValueError("at most one suggestion may be recommended with at-most-one")
        for reason in self.overrideReasons or []:  # cds-resp-4
            if not reason.display:
                raise ValueError("every overrideReason needs a display")
        if self.uuid is not None:
            _uuid.UUID(self.uuid)
        return self


class BackpainExtension(BaseModel):
    """Our card extension (ARCHITECTURE §4): rule, ruleVersion, evidence."""

    model_config = ConfigDict(extra="forbid")

    rule: str = _NON_EMPTY
    ruleVersion: str = Field(pattern=r"^\d+\.\d+\.\d+")
    evidence: list[str]

    @field_validator("evidence")
    @classmethod
    def _references(cls, value: list[str]) -> list[str]:
        for ref in value:
            kind, _, ident = ref.partition("/")
            if not kind or not ident or not kind[0].isupper():
                raise ValueError(f"evidence {ref!r} is not a Type/id reference")
        return value


class CdsResponse(_Strict):
    cards: list[Card]
    systemActions: list[Action] | None = None


class DiscoveryService(_Strict):
    hook: str = _NON_EMPTY
    title: str | None = None
    description: str = _NON_EMPTY
    id: str = _NON_EMPTY
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(BaseModel):
    services: list[DiscoveryService]


def validate_cds_response(body: t.Any) -> CdsResponse:
    """Validate a service response; raise ``pydantic.ValidationError`` on any violation."""
    response = CdsResponse.model_validate(body)
    for card in body.get("cards", []):
        extension = (card.get("extension") or {}).get("backpain-cds")
        if extension is not None:
            BackpainExtension.model_validate(extension)
        for suggestion in card.get("suggestions") or []:
            if "uuid" not in suggestion:
                raise ValueError("our suggestions always carry a uuid (needed for feedback)")
        if "uuid" not in card:
            raise ValueError("our cards always carry a uuid (needed for feedback)")
    return response


def validate_discovery(body: t.Any) -> Discovery:
    """Validate a discovery response."""
    return Discovery.model_validate(body)
