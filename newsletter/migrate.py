"""Alembic, driven from code so that `newsletter db upgrade` needs no alembic.ini."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from .db import Database
from .paths import migrations_dir


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> str:
    """Migrate the database to `revision`; returns the revision it is at afterwards."""
    database = Database(database_url)  # creates the SQLite folder when needed
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
