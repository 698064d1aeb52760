"""Warm start (issue 13): synthetic calls before the fork and in each worker, leaving no trace;
in signed mode also the trusted clients' key sets and the JWT verification path."""

from __future__ import annotations

import logging
import socket
import time

import pytest
import sqlalchemy as sa

from backpain_cds import warm as warm_module
from backpain_cds.app import create_app
from backpain_cds.logs import JsonFormatter
from backpain_cds.settings import Settings
from backpain_cds.warm import enabled, warm_up
from cds_hooks.auth import warm as auth_warm
from cds_hooks.auth.warm import exercise_verification
from fhir_mapping import matcher as matcher_module
from tests.support import hook_requests as hr
from tools.harness.jwt_factory import JwksServer, TestSigner
from tools.harness.servers import free_port


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


# -- signed mode: trusted clients with a jwks_url ------------------------------------------------

ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"
PATH = "/cds-services/back-pain-after-chemo"


@pytest.fixture
def signer():
    return TestSigner("ES384", iss=ISS)


@pytest.fixture
def jwks(signer):
    with JwksServer(signer.jwks()) as server:
        yield server


def _signed_app(tmp_path, jwks_url: str):
    settings = Settings.from_mapping({
        "public_base_url": BASE,
        "database_url": f"sqlite:///{tmp_path / 'signed.sqlite3'}",
        "validate_responses": True,
        "auth": {"trusted_clients": [{"iss": ISS, "jwks_url": jwks_url}]},
    })
    return create_app(settings)


def _signed_call(app, signer):
    headers = {"Authorization": f"Bearer {signer.token(BASE + PATH)}"}
    prefetch = hr.nothing_found_prefetch({"resourceType": "Patient", "id": "p1"})
    return app.test_client().post(PATH, json=hr.patient_view(prefetch=prefetch), headers=headers)


def test_without_warm_up_the_first_signed_call_fetches_the_key_set(tmp_path, jwks, signer):
    app = _signed_app(tmp_path, jwks.url)
    assert jwks.total_hits == 0
    assert _signed_call(app, signer).status_code == 200
    assert jwks.total_hits == 1  # what the warm-up below moves out of the first call


def test_a_workers_first_signed_call_makes_no_key_set_request(tmp_path, jwks, signer, caplog):
    app = _signed_app(tmp_path, jwks.url)
    with caplog.at_level(logging.INFO, logger="backpain_cds"):
        warm_up(app, where="worker")
    assert jwks.total_hits == 1  # fetched at warm-up
    assert _signed_call(app, signer).status_code == 200
    assert _signed_call(app, signer).status_code == 200
    assert jwks.total_hits == 1  # and not again by the calls
    assert _jti_count(app) == 2  # the two real calls; the warm-up's statements were rolled back
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no 401 line, no failure


def test_the_master_fetches_no_key_set_but_runs_the_verification(tmp_path, jwks, monkeypatch):
    verified = []
    real = warm_module.exercise_verification
    monkeypatch.setattr(warm_module, "exercise_verification", lambda policy: verified.append(real(policy)))
    app = _signed_app(tmp_path, jwks.url)
    warm_up(app, where="master")
    assert jwks.total_hits == 0  # no fetch thread or pooled connection crosses the fork
    assert verified == [2]  # ES384 and RS384, the default algorithms


def test_the_throwaway_verification_leaves_the_real_verifier_as_it_was(tmp_path, jwks, signer):
    app = _signed_app(tmp_path, jwks.url)
    authenticator = app.extensions["backpain_cds"]["authenticator"]
    assert exercise_verification(authenticator.policy) == 2
    assert authenticator.issuers == (ISS,)
    assert jwks.total_hits == 0
    assert _jti_count(app) == 0  # the throwaway tokens' ids went to a store of their own
    # a token signed with a throwaway key is still refused by the real verifier
    throwaway = auth_warm._THROWAWAY_KEYS[("EC", "P-384")]
    forged = TestSigner("ES384", iss=ISS, kid=throwaway.kid, key=throwaway)
    response = app.test_client().post(PATH, json=hr.patient_view(prefetch={}),
                                      headers={"Authorization": forged.authorization(BASE + PATH)})
    assert response.status_code == 401


def _jti_count(app) -> int:
    from backpain_cds.storage import seen_jti

    with app.extensions["backpain_cds"]["store"].engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(seen_jti)).scalar_one()


def test_start_up_survives_an_unreachable_jwks_url_and_logs_it_once(tmp_path, signer, caplog):
    port = free_port()  # nothing listens there
    app = _signed_app(tmp_path, f"http://127.0.0.1:{port}/keys/jwks.json?secret=s3cr3t-value")
    with caplog.at_level(logging.INFO, logger="backpain_cds"):
        elapsed = warm_up(app, where="worker")
    assert elapsed < warm_module.KEY_SET_WAIT_SECONDS + 3
    failures = [r for r in caplog.records if "key set" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(failures) == 1
    line = JsonFormatter().format(failures[0])
    assert ISS in line and "ConnectionError" in line and "127.0.0.1" in line
    assert "s3cr3t" not in line and "/keys/" not in line
    assert [r.getMessage() for r in caplog.records].count("warm-up done") == 1
    assert not [r for r in caplog.records if "warm-up failed" in r.getMessage()]


def test_a_failed_warm_up_fetch_does_not_hold_back_the_first_calls_own_fetch(tmp_path, jwks, signer):
    jwks.status = 503
    app = _signed_app(tmp_path, jwks.url)
    warm_up(app, where="worker")
    assert jwks.total_hits == 1
    jwks.status = 200  # the EHR's key endpoint is back within jwks_min_refresh_seconds
    assert _signed_call(app, signer).status_code == 200
    assert jwks.total_hits == 2


def test_a_key_set_server_that_never_answers_delays_the_start_by_the_bound_only(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(warm_module, "KEY_SET_WAIT_SECONDS", 0.5)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        app = _signed_app(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json")
        with caplog.at_level(logging.WARNING, logger="backpain_cds"):
            started = time.monotonic()
            warm_up(app, where="worker")
            elapsed = time.monotonic() - started
    # the fetch itself would wait for its 5 s read timeout; the start waits 0.5 s (+ the CPU warm-up)
    assert elapsed < 3.5
    assert any(getattr(r, "reason", None) == "still fetching" for r in caplog.records)
