"""Alembic, driven from code so that `newsletter db upgrade` needs no alembic.ini."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from newsletter.db import Database
from newsletter.paths import migrations_dir


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


# Any constant: the advisory lock that serialises migrations on one PostgreSQL database.
_MIGRATION_LOCK = 727_275


@contextmanager
def _one_at_a_time(database: Database) -> Iterator[None]:
    """Hold the database's migration lock: web and worker containers that all run `db
    upgrade` at start on a new database would otherwise each create the same tables (one
    wins, the others fail). The one that waited then finds the schema at head."""
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
                conn.commit()
        return
    path = database.engine.url.database
    if not path or path == ":memory:":
        yield
        return
    # SQLite: a lock file next to the database (one host, as SQLite itself).
    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(database_url: str, revision: str = "head") -> str:
    """Migrate the database to `revision`; returns the revision it is at afterwards."""
    database = Database(database_url)  # creates the SQLite folder when needed
    with _one_at_a_time(database):
        command.upgrade(alembic_config(database_url), revision)
    # One connection through Database leaves a SQLite file in WAL mode for good, so that
    # web workers starting together never race to switch it.
    with database.engine.connect():
        pass
    database.dispose()
    return current_revision(database_url) or "base"


def current_revision(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
