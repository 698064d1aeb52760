"""The SQL store on SQLite and on PostgreSQL: feedback idempotency, audit, JWT ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from backpain_cds.schema import upgrade
from backpain_cds.storage import SqlStore, metadata
from cds_hooks.ports import CardAuditRecord, FeedbackEntry


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request, tmp_path):
    if request.param == "sqlite":
        store = SqlStore(f"sqlite:///{tmp_path / 's.sqlite3'}")
    else:
        store = SqlStore(request.getfixturevalue("postgres_url"))
    upgrade(store.engine)
    if request.param == "postgresql":
        with store.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    yield store
    if request.param == "postgresql":
        with store.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    store.engine.dispose()


def _entry(card: str, outcome: str = "accepted") -> FeedbackEntry:
    return FeedbackEntry(card, outcome, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                         accepted_suggestions=("s1",) if outcome == "accepted" else ())


def _issued(store: SqlStore, service_id: str) -> str:
    """A card uuid the store has in its audit trail for ``service_id``."""
    card = str(uuid.uuid4())
    store.record_cards([CardAuditRecord(card, service_id, "patient-view", str(uuid.uuid4()),
                                        "gcsf-bone-pain", "1", "info", "p1",
                                        datetime(2026, 1, 2, tzinfo=UTC))])
    return card


def test_the_same_card_and_outcome_twice_is_one_row(sql_store):
    card = _issued(sql_store, "back-pain-after-chemo")
    assert sql_store.save_feedback("back-pain-after-chemo", [_entry(card)]).stored == 1
    assert sql_store.save_feedback("back-pain-after-chemo", [_entry(card)]).stored == 0
    assert sql_store.save_feedback("back-pain-after-chemo", [_entry(card, "overridden")]).stored == 1
    rows = [r for r in sql_store.feedback_rows() if r["card_uuid"] == card]
    assert sorted(r["outcome"] for r in rows) == ["accepted", "overridden"]


def test_a_duplicate_inside_one_body_is_stored_once(sql_store):
    card = _issued(sql_store, "gcsf-order-review")
    assert sql_store.save_feedback("gcsf-order-review", [_entry(card), _entry(card)]) == (1, 0, (0,))


def test_feedback_on_a_card_never_issued_is_kept_apart(sql_store):
    issued = _issued(sql_store, "back-pain-after-chemo")
    forged = str(uuid.uuid4())
    elsewhere = _issued(sql_store, "gcsf-order-review")  # issued, but by another service
    saved = sql_store.save_feedback(
        "back-pain-after-chemo", [_entry(issued), _entry(forged), _entry(elsewhere)]
    )
    assert saved == (1, 2, (0,))  # the first entry is the one the statistics count
    assert [r["card_uuid"] for r in sql_store.feedback_rows()] == [issued]
    assert sorted(r["card_uuid"] for r in sql_store.unmatched_feedback_rows()) == sorted([forged, elsewhere])
    assert sql_store.save_feedback("back-pain-after-chemo", [_entry(forged)]) == (0, 0, ())


def test_jti_is_accepted_once_until_it_expires(sql_store):
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert sql_store.remember("https://ehr", "jti-1", expires) is True
    assert sql_store.remember("https://ehr", "jti-1", expires) is False
    assert sql_store.remember("https://other-ehr", "jti-1", expires) is True
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert sql_store.remember("https://ehr", "jti-old", past) is True
    assert sql_store.remember("https://ehr", "jti-old", expires) is True  # expired entry swept


def test_card_audit_rows_are_written(sql_store):
    now = datetime.now(UTC)
    card = str(uuid.uuid4())
    sql_store.record_cards([CardAuditRecord(card, "back-pain-after-chemo", "patient-view", "hi-1",
                                            "mscc-red-flags", "1.0.0", "critical", "p1", now)])
    assert any(r["card_uuid"] == card and r["rule_id"] == "mscc-red-flags" for r in sql_store.audit_rows())


def test_ping_reports_an_unreachable_database(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path}/no/such/dir/x.sqlite3")
    assert store.ping() is False


def test_schema_creation_is_idempotent(sql_store):
    upgrade(sql_store.engine)  # again: idempotent
    with sql_store.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= {"feedback", "card_audit", "seen_jti"}


def test_warm_writes_nothing_and_leaves_jwt_ids_alone(sql_store):
    """The warm-up's rolled-back statements (audit insert, feedback lookup, JWT-id statements)."""
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert sql_store.remember("https://ehr.example.org", "jti-1", expires)
    sql_store.warm()
    sql_store.warm()
    assert sql_store.audit_rows() == []
    assert not sql_store.remember("https://ehr.example.org", "jti-1", expires)  # still remembered
    assert sql_store.remember("warm-up", "warm-up", expires)  # the warm-up's own id was never kept
