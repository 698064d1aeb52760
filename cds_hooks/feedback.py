"""Validate feedback bodies (CDS Hooks 2.0.1 §Feedback).

All entries are validated before anything is stored, so an invalid body stores nothing.
The sandbox's shape is accepted: an override ``reason`` without ``display`` or ``system``
(``display`` is required on the card's overrideReasons, not in feedback).

Every string is refused (400 naming the field) when a supported database would refuse it:
longer than its column (``card`` 128 characters, ``reason.code`` 256, ``reason.system`` 512,
suggestion ids 128, ``userComment`` 4096) or containing U+0000, which PostgreSQL text cannot
hold and SQLite would store. The check comes before storage, whatever the engine.
"""

from __future__ import annotations

import re
import typing as t
from datetime import datetime

from cds_hooks.errors import InvalidRequest
from cds_hooks.ports import FeedbackEntry

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
_MAX_ENTRIES = 1000
_MAX_SUGGESTIONS = 100
_MAX_TEXT = 4096


def parse_feedback(body: t.Any) -> list[FeedbackEntry]:
    """Validate a feedback body; raise :class:`InvalidRequest` naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the feedback body must be a JSON object")
    entries = body.get("feedback")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest("feedback must be a non-empty array", field="feedback")
    if len(entries) > _MAX_ENTRIES:
        raise InvalidRequest(f"feedback has more than {_MAX_ENTRIES} entries", field="feedback")
    return [_entry(raw, f"feedback[{i}]") for i, raw in enumerate(entries)]


def _entry(raw: t.Any, path: str) -> FeedbackEntry:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{path} must be an object", field=path)
    card = _text(raw.get("card"), f"{path}.card", required=True, limit=128)
    outcome = raw.get("outcome")
    if outcome not in ("accepted", "overridden"):
        raise InvalidRequest(f"{path}.outcome must be accepted or overridden", field=f"{path}.outcome")
    timestamp = _timestamp(raw.get("outcomeTimestamp"), f"{path}.outcomeTimestamp")

    accepted: tuple[str, ...] = ()
    raw_accepted = raw.get("acceptedSuggestions")
    if outcome == "accepted":
        if not isinstance(raw_accepted, list) or not raw_accepted:
            raise InvalidRequest(
                f"{path}.acceptedSuggestions is required when the outcome is accepted",
                field=f"{path}.acceptedSuggestions",
            )
        if len(raw_accepted) > _MAX_SUGGESTIONS:
            raise InvalidRequest(
                f"{path}.acceptedSuggestions has more than {_MAX_SUGGESTIONS} entries",
                field=f"{path}.acceptedSuggestions",
            )
        ids = []
        for j, item in enumerate(raw_accepted):
            where = f"{path}.acceptedSuggestions[{j}]"
            if not isinstance(item, dict):
                raise InvalidRequest(f"{where} must be an object with an id", field=where)
            ids.append(_text(item.get("id"), f"{where}.id", required=True, limit=128))
        accepted = tuple(ids)
    elif raw_accepted is not None:
        raise InvalidRequest(
            f"{path}.acceptedSuggestions is only allowed when the outcome is accepted",
            field=f"{path}.acceptedSuggestions",
        )

    code = system = comment = None
    override = raw.get("overrideReason")
    if override is not None:
        where = f"{path}.overrideReason"
        if outcome != "overridden":
            raise InvalidRequest(f"{where} is only allowed when the outcome is overridden", field=where)
        if not isinstance(override, dict):
            raise InvalidRequest(f"{where} must be an object", field=where)
        reason = override.get("reason")
        if reason is not None:
            if not isinstance(reason, dict):
                raise InvalidRequest(f"{where}.reason must be a Coding", field=f"{where}.reason")
            code = _text(reason.get("code"), f"{where}.reason.code", required=True, limit=256)
            system = _text(reason.get("system"), f"{where}.reason.system", required=False, limit=512)
        comment = _text(override.get("userComment"), f"{where}.userComment", required=False, limit=_MAX_TEXT)
        if code is None and comment is None:  # cds-fb-3
            raise InvalidRequest(f"{where} needs a reason or a userComment", field=where)

    return FeedbackEntry(
        card_uuid=card or "",
        outcome=outcome,
        outcome_timestamp=timestamp,
        accepted_suggestions=accepted,
        override_code=code,
        override_system=system,
        override_comment=comment,
    )


@t.overload
def _text(value: t.Any, path: str, *, required: t.Literal[True], limit: int) -> str: ...
@t.overload
def _text(value: t.Any, path: str, *, required: bool, limit: int) -> str | None: ...
def _text(value: t.Any, path: str, *, required: bool, limit: int) -> str | None:
    if value is None:
        if required:
            raise InvalidRequest(f"{path} is required", field=path)
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{path} must be a non-empty string", field=path)
    if len(value) > limit:
        raise InvalidRequest(f"{path} is longer than {limit} characters", field=path)
    if "\x00" in value:
        raise InvalidRequest(f"{path} must not contain U+0000", field=path)
    return value


def _timestamp(value: t.Any, path: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise InvalidRequest(
            f"{path} must be an RFC 3339 date-time such as 2021-12-11T10:05:31Z", field=path
        )
    try:
        return datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise InvalidRequest(f"{path} is not a valid date-time", field=path) from None
