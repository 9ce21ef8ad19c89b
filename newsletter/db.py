"""Engine and sessions. Web requests get one session each; jobs and CLI use session_scope()."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from flask import Flask


class Database:
    """An engine and its session factory; one per process and database URL."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine_options.setdefault("connect_args", {"timeout": 30})
        else:
            engine_options.setdefault("pool_pre_ping", True)
        self.engine: Engine = create_engine(url, **engine_options)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error: the unit of a job."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


T = TypeVar("T")


def retry_once_on_conflict(session: Session, step: Callable[[], T]) -> T:
    """Run `step` and commit, and return what it returned. A concurrent insert of the same
    unique row (the same new address, the same new listing id) makes the first try fail
    with IntegrityError: it is rolled back and run once more, and the second try finds the
    row the other writer made. A second collision is rolled back and raised; any other
    error is left to the caller, session as the step left it."""
    try:
        result = step()
        session.commit()
        return result
    except IntegrityError:
        session.rollback()
    try:
        result = step()
        session.commit()
    except IntegrityError:
        session.rollback()
        raise
    return result


def ping(session: Session) -> None:
    """Ask the database for an answer (GET /healthz); raises SQLAlchemyError without one."""
    session.execute(text("SELECT 1"))


def _sqlite_begin_immediate(connection: Any) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another writer got there first; taking the write lock at BEGIN makes it
    # wait (busy_timeout) instead. WAL keeps readers of other connections unblocked.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" hook issue BEGIN itself
    # WAL lets the web read while a worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL needs a lock another connection may hold, and
    # only switch when needed (the mode is kept in the file; `db upgrade` sets it once).
    cursor.execute("PRAGMA busy_timeout=30000")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def init_app(app: Flask, database: Database) -> None:
    """Give each request its own session, closed at teardown."""
    app.extensions["newsletter_db"] = database

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        from flask import g

        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()


def get_session() -> Session:
    """The current request's session."""
    from flask import current_app, g

    if "db_session" not in g:
        g.db_session = current_app.extensions["newsletter_db"].sessionmaker()
    session: Session = g.db_session
    return session
