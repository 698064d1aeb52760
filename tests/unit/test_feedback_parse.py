from __future__ import annotations

import pytest

from cds_hooks.errors import InvalidRequest
from cds_hooks.feedback import parse_feedback

CARD = "0a1b2c3d-0000-4000-8000-000000000001"


def test_sandbox_accepted_feedback_parses():
    entries = parse_feedback({"feedback": [{"card": CARD, "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s-1"}], "outcomeTimestamp": "2021-12-11T10:05:31.123Z"}]})
    assert entries[0].accepted_suggestions == ("s-1",)
    assert entries[0].outcome_timestamp.tzinfo is not None


def test_sandbox_override_without_display_or_comment_parses():
    entries = parse_feedback({"feedback": [{"card": CARD, "outcome": "overridden",
        "overrideReason": {"reason": {"code": "patient-declined"}}, "outcomeTimestamp": "2021-12-11T10:05:31Z"}]})
    assert entries[0].override_code == "patient-declined"
    assert entries[0].override_system is None


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"outcome": "accepted", "acceptedSuggestions": [{"id": "a"}], "outcomeTimestamp": "2021-12-11T10:05:31Z"}, "feedback[0].card"),
        ({"card": CARD, "outcome": "ignored", "outcomeTimestamp": "2021-12-11T10:05:31Z"}, "feedback[0].outcome"),
        ({"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"}, "feedback[0].acceptedSuggestions"),
        ({"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{}], "outcomeTimestamp": "2021-12-11T10:05:31Z"}, "feedback[0].acceptedSuggestions[0].id"),
        ({"card": CARD, "outcome": "overridden"}, "feedback[0].outcomeTimestamp"),
        ({"card": CARD, "outcome": "overridden", "outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp"),
        ({"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2021-12-11T10:05:31"}, "feedback[0].outcomeTimestamp"),
        ({"card": CARD, "outcome": "overridden", "overrideReason": {}, "outcomeTimestamp": "2021-12-11T10:05:31Z"}, "feedback[0].overrideReason"),
        ({"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{"id": "a"}], "overrideReason": {"userComment": "x"}, "outcomeTimestamp": "2021-12-11T10:05:31Z"}, "feedback[0].overrideReason"),
    ],
)
def test_an_invalid_entry_names_its_field(entry, field):
    with pytest.raises(InvalidRequest) as info:
        parse_feedback({"feedback": [entry]})
    assert info.value.field == field


@pytest.mark.parametrize("body", [[], {}, {"feedback": []}, {"feedback": "x"}, "text"])
def test_a_malformed_body_is_rejected(body):
    with pytest.raises(InvalidRequest):
        parse_feedback(body)
