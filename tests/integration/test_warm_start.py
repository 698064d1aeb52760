"""Warm start (issue 13): synthetic calls before the fork and in each worker, leaving no trace."""

from __future__ import annotations

import logging

from backpain_cds.warm import enabled, warm_up
from fhir_mapping import matcher as matcher_module


def test_warm_up_builds_the_lookups_and_leaves_no_trace(app, caplog):
    state = app.extensions["backpain_cds"]
    knowledge = state["service"].knowledge
    matcher_module._CACHE.clear()
    before = state["metrics"].render()
    with caplog.at_level(logging.INFO, logger="backpain_cds"):
        assert warm_up(app, where="worker") > 0
    key = (id(knowledge.valuesets), id(knowledge.matching))
    assert key in matcher_module._CACHE  # the text/code matcher now exists before any call
    assert state["metrics"].render() == before  # synthetic calls are not counted
    assert state["store"].audit_rows() == [] and state["store"].feedback_rows() == []
    messages = [r.getMessage() for r in caplog.records]
    assert "warm-up done" in messages
    assert "hook call answered" not in messages  # no log line for a synthetic call
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "warm-up" in r.getMessage()]


def test_warm_up_never_fails_the_start(app, caplog, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr("backpain_cds.app.build_service", broken)
    with caplog.at_level(logging.WARNING, logger="backpain_cds"):
        warm_up(app, where="master")
    assert any("warm-up failed" in r.getMessage() for r in caplog.records)


def test_the_switch():
    assert enabled({}) and enabled({"BACKPAIN_CDS_WARM_START": "1"})
    assert not enabled({"BACKPAIN_CDS_WARM_START": "0"}) and not enabled({"BACKPAIN_CDS_WARM_START": "off"})
