"""The SMART store on SQLite and PostgreSQL: single-use states, browser binding, encryption."""

from __future__ import annotations

import secrets
import threading

import pytest
import sqlalchemy as sa

from backpain_cds.schema import upgrade
from smart_launch.session_store import SmartStore

SECRET = "store-secret-0123456789-0123456789-abcdef"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 's.sqlite3'}")
    else:
        engine = sa.create_engine(request.getfixturevalue("postgres_url"))
    upgrade(engine)  # the SMART tables come with the service's schema migrations
    smart = SmartStore(engine, SECRET)
    yield smart
    engine.dispose()


def _launch(store: SmartStore, **overrides) -> tuple[str, str]:
    state, browser = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    values = dict(state=state, browser_id=browser, iss="https://ehr/fhir", launch="launch-value",
                  code_verifier="verifier-value-" + state, issuer=None, token_endpoint="https://ehr/token",
                  now=1000, expires_at=1600)
    values.update(overrides)
    store.save_launch(**values)
    return state, browser


def test_a_state_is_claimed_once_in_its_browser_before_expiry(store) -> None:
    state, browser = _launch(store)
    assert store.claim_launch(state=state, browser_id="other" * 5, now=1001) == (None, "state not bound to this browser")
    assert store.claim_launch(state=state, browser_id=None, now=1001)[1] == "state not bound to this browser"
    pending, reason = store.claim_launch(state=state, browser_id=browser, now=1001)
    assert reason == "" and pending.code_verifier == "verifier-value-" + state and pending.launch == "launch-value"
    assert store.claim_launch(state=state, browser_id=browser, now=1002) == (None, "state already used")
    expired_state, expired_browser = _launch(store)
    assert store.claim_launch(state=expired_state, browser_id=expired_browser, now=1600) == (None, "state expired")
    assert store.claim_launch(state="nope", browser_id=browser, now=1001) == (None, "unknown state")


def test_concurrent_claims_of_one_state_let_exactly_one_win(store) -> None:
    state, browser = _launch(store)
    wins = []

    def claim() -> None:
        pending, _ = store.claim_launch(state=state, browser_id=browser, now=1001)
        if pending is not None:
            wins.append(pending)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1


def test_sessions_keep_the_token_encrypted_and_bound_to_the_browser(store) -> None:
    view, browser = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    token = {"access_token": "AT-" + view, "patient": "p1", "scope": "launch patient/*.rs",
             "need_patient_banner": True, "fhirContext": [{"reference": "Encounter/1"}], "appContext": "h"}
    store.save_session(view_id=view, browser_id=browser, iss="https://ehr/fhir", token=token, now=1000, expires_at=2000)
    session, reason = store.load_session(view_id=view, browser_id=browser, now=1500)
    assert reason == "" and session.access_token == "AT-" + view and session.patient == "p1"
    assert session.need_patient_banner and session.fhir_context == [{"reference": "Encounter/1"}]
    assert store.load_session(view_id=view, browser_id="x" * 30, now=1500)[0] is None
    assert store.load_session(view_id=view, browser_id=browser, now=2000) == (None, "session expired")
    dump = repr(store.raw_rows())
    assert "AT-" + view not in dump and view not in dump and browser not in dump
    other = SmartStore(store.engine, "another-secret-0123456789-0123456789-xyz")
    assert other.load_session(view_id=view, browser_id=browser, now=1500)[0] is None


def test_the_nonce_is_kept_as_a_digest_and_the_fhir_user_encrypted(store) -> None:
    from smart_launch.identity import OidcSettings, new_nonce

    nonce, nonce_hash = new_nonce()
    oidc = OidcSettings("https://ehr", "https://ehr/jwks", ("RS256", "ES256"))
    state, browser = _launch(store, nonce_hash=nonce_hash, oidc=oidc, issuer=oidc.issuer)
    assert nonce not in repr(store.raw_rows())
    pending, _ = store.claim_launch(state=state, browser_id=browser, now=1001)
    assert pending.nonce_hash == nonce_hash and pending.oidc == oidc
    view, browser = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.save_session(view_id=view, browser_id=browser, iss="https://ehr/fhir", now=1000, expires_at=2000,
                       token={"access_token": "AT", "patient": "p1"}, fhir_user="Practitioner/dr-" + view)
    assert "Practitioner/dr-" + view not in repr(store.raw_rows())
    assert store.load_session(view_id=view, browser_id=browser, now=1500)[0].fhir_user == "Practitioner/dr-" + view


def test_tables_of_an_older_version_get_the_new_columns(tmp_path) -> None:
    """A database migrated to the baseline (SMART tables before OpenID Connect support), with a
    launch in it: the migration to head adds the nullable columns and keeps the row."""
    from alembic import command

    from backpain_cds.schema import alembic_config, upgrade

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    command.upgrade(alembic_config(engine=engine), "0001_baseline")
    with engine.connect() as conn:
        assert "nonce_hash" not in {c["name"] for c in sa.inspect(conn).get_columns("smart_launch_state")}
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO smart_launch_state (state_hash, browser_hash, iss, launch_enc, verifier_enc, "
            "token_endpoint, created_at, expires_at) VALUES ('old', 'b', 'https://ehr', 'x', 'y', 'https://t', 1, 2)"))
    upgrade(engine)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert {"nonce_hash", "jwks_uri", "id_token_algs"} <= {c["name"] for c in inspector.get_columns("smart_launch_state")}
        assert "fhir_user_enc" in {c["name"] for c in inspector.get_columns("smart_session")}
        assert conn.execute(sa.text("SELECT count(*) FROM smart_launch_state")).scalar() == 1
    smart = SmartStore(engine, SECRET)
    state, browser = _launch(smart, nonce_hash="ab" * 32)
    assert smart.claim_launch(state=state, browser_id=browser, now=1001)[0].nonce_hash == "ab" * 32
    engine.dispose()
