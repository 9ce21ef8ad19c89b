"""The schema as Alembic builds it: migrations match the models, go down and up again, and
the consent record refuses rewrites in the database itself."""

from __future__ import annotations

import re

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text, update
from sqlalchemy.exc import DatabaseError

from newsletter.migrate import alembic_config, upgrade
from newsletter.models import Base, ConsentEvent, Subscriber, SubscriberStatus, email_hash
from newsletter.paths import migrations_dir


def _newest_revision() -> str:
    """The revision id the newest migration file (by its number) declares."""
    newest = max((migrations_dir() / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    match = re.search(r"""^revision = ["']([^"']+)["']$""", newest.read_text(), re.MULTILINE)
    assert match, f"no revision in {newest.name}"
    return match.group(1)


def test_migrations_match_the_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_statuses_are_stored_and_read_back_as_their_plain_values(database):
    """The statuses are StrEnums; the database holds the same strings as before, and a
    value read back (a plain str) still equals its member, in Python and in SQL."""
    with database.session_scope() as session:
        session.add(Subscriber(email="a@example.org", email_hash=email_hash("a@example.org"),
                               status=SubscriberStatus.CONFIRMED))
    with database.session_scope() as session:
        stored = session.execute(text("SELECT status FROM subscribers")).scalar_one()
        status = session.scalars(select(Subscriber.status)).one()
        matching = session.scalar(select(func.count()).select_from(Subscriber).where(
            Subscriber.status.in_([SubscriberStatus.CONFIRMED])))
    assert type(stored) is str and stored == "confirmed"
    assert type(status) is str and status == SubscriberStatus.CONFIRMED and matching == 1


def test_downgrade_to_nothing_and_up_again(tmp_path):
    """Up reaches the newest file's revision (the head is not some older or branched one),
    down to nothing empties the schema, and up again reaches the same head."""
    url = f"sqlite:///{tmp_path}/roundtrip.db"
    head = _newest_revision()
    assert upgrade(url) == head
    command.downgrade(alembic_config(url), "base")
    engine = create_engine(url)
    left = [name for name in inspect(engine).get_table_names() if name != "alembic_version"]
    engine.dispose()
    assert left == []
    assert upgrade(url) == head


def test_consent_events_cannot_be_rewritten(database):
    with database.session_scope() as session:
        session.add(ConsentEvent(subscriber_public_id="p" * 16, email_hash="h", event="signup", ip="192.0.2.1"))
    with pytest.raises(DatabaseError, match="append-only"):
        with database.session_scope() as session:
            session.execute(update(ConsentEvent).values(ip="203.0.113.9"))


def test_upgrade_leaves_sqlite_in_wal_mode(tmp_path):
    """Web workers starting together must not race to switch the journal mode (a 500 on the
    first signups of a fresh SQLite deploy under gunicorn)."""
    import sqlite3

    path = tmp_path / "fresh.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_readers_with_a_place_keep_it_with_the_default_radius_after_the_upgrade(tmp_path):
    """Readers who gave a place before radius search get the 25 km a new signup with a place
    gets; readers without one keep radius 0 (no place)."""
    url = f"sqlite:///{tmp_path}/radius.db"
    command.upgrade(alembic_config(url), "0006")
    engine = create_engine(url)
    with engine.begin() as conn:
        for address, place in (("ort@example.org", "Köln"), ("ohne@example.org", "")):
            conn.execute(text(
                "INSERT INTO subscribers (public_id, email, email_hash, language, keywords, location, status, "
                "created_at) VALUES (:p, :e, :h, 'de', '', :l, 'confirmed', CURRENT_TIMESTAMP)"),
                {"p": address[:4], "e": address, "h": email_hash(address), "l": place})
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        got = dict(conn.execute(text("SELECT email, radius FROM subscribers")).all())
        remote = set(conn.execute(text("SELECT remote FROM subscribers")).scalars())
    engine.dispose()
    assert got == {"ort@example.org": 25, "ohne@example.org": 0}
    assert remote == {"also"}
