"""The database or Redis away, and back.

PostgreSQL is taken away for real by a TCP forwarder between the app and the server
(tests/tcp_proxy.py): while it refuses connections and has cut the live ones, every request
that needs the database answers 503 with Retry-After (the error page, or JSON), logging one
line each and no traceback; once it forwards again, the same app serves the same requests.
Redis away (a port where nothing listens): signups answer as always, the per-IP limit holds
in memory, and the reconciler sends the mail once a worker reaches Redis."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from newsletter import create_app
from newsletter.models import OutboxMessage
from newsletter.operators import api_tokens
from newsletter.tokens import tokens_for
from newsletter.web.outages import is_outage
from tests.conftest import replace
from tests.helpers import add_reader, all_rows, find_subscriber, signup
from tests.smtp_sink import free_port
from tests.tcp_proxy import TcpProxy

READER = "rosa@example.org"
# Trust authentication never asks for it: it is here to show that no log line carries it.
PASSWORD = "pw-that-must-not-be-logged"
NOT_AWAY = (
    "SQLite is a file opened inside the app's process: it cannot be away as a server is, and "
    "a file made unreadable is no such fault (root reads it anyway); SQLite's busy and I/O "
    "errors are classified in test_sqlite_busy_is_an_outage_and_a_missing_table_is_a_bug"
)
GERMAN_SORRY = "Bei uns ist etwas schiefgelaufen. Bitte versuchen Sie es später noch einmal."


def _listing(n: int) -> dict[str, str]:
    return {"id": f"outage-{n}", "title": f"Entwickler {n}", "url": f"https://jobs.example.org/{n}",
            "published_at": datetime.now(UTC).isoformat()}


def _requests(client: Any, prefs_path: str, api_token: str) -> dict[str, Callable[[int], Any]]:
    """The requests that need the database, each as a function of a round number (signups
    take a new address each round)."""
    auth = {"Authorization": f"Bearer {api_token}"}
    return {
        "signup form": lambda n: signup(client, f"form{n}@example.org"),
        "signup json": lambda n: client.post("/subscribe", json={"email": f"json{n}@example.org"},
                                             headers={"Accept": "application/json"}),
        "preferences page": lambda n: client.get(prefs_path),
        "api": lambda n: client.post("/api/v1/listings", json=[_listing(n)], headers=auth),
        "healthz": lambda n: client.get("/healthz"),
    }


WORKING = {"signup form": 200, "signup json": 202, "preferences page": 200, "api": 200, "healthz": 200}
JSON_ANSWERS = {"signup json", "api", "healthz"}


def _assert_working(requests: dict[str, Callable[[int], Any]], n: int) -> None:
    for name, send in requests.items():
        response = send(n)
        assert response.status_code == WORKING[name], (name, response.status_code, response.get_data(as_text=True))


def test_database_away_answers_503_and_the_same_app_works_again_once_it_is_back(
    backend, settings, database, redis_conn, caplog
):
    if backend == "sqlite":
        pytest.skip(NOT_AWAY)
    url = make_url(settings.database_url)
    with database.session_scope() as session:
        add_reader(session, READER, keywords="Python")
        token = api_tokens.create(session, "board", ["listings"]).secret
    reader = find_subscriber(database, READER)
    prefs_path = "/preferences/" + tokens_for(settings).preferences(reader.public_id, reader.link_generation)

    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        proxied = url.set(port=proxy.port, password=PASSWORD).render_as_string(hide_password=False)
        app = create_app(replace(settings, database_url=proxied))
        requests = _requests(app.test_client(), prefs_path, token)
        try:
            _assert_working(requests, 1)

            proxy.pause()
            caplog.clear()
            with caplog.at_level(logging.INFO):
                for name, send in requests.items():
                    response = send(2)
                    body = response.get_data(as_text=True)
                    assert response.status_code == 503, (name, response.status_code, body)
                    assert response.headers["Retry-After"] == "30", name
                    if name in JSON_ANSWERS:
                        assert response.is_json, name
                        if name != "healthz":  # its own body: which check failed
                            assert response.json["retry_after"] == 30
                            assert "database does not answer" in response.json["error"]
                    else:
                        assert response.mimetype == "text/html", name
                        assert "Fehler 503" in body and GERMAN_SORRY in body, name
                    assert "Traceback" not in body and PASSWORD not in body
                english = app.test_client().post("/subscribe?lang=en", data={"email": "en@example.org"})
                assert english.status_code == 503
                assert "Something went wrong on our side. Please try again later." in english.get_data(as_text=True)
            # One line per request that met the outage (healthz reports it in its answer).
            lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert [r.name for r in lines] == ["newsletter.web.errors"] * 5, [r.getMessage() for r in lines]
            assert all(r.exc_info is None and r.exc_text is None for r in caplog.records)
            assert "POST /subscribe " in lines[0].getMessage()
            assert "GET /preferences/<token> " in lines[2].getMessage()  # the rule: no reader's token
            assert not any(PASSWORD in r.getMessage() or prefs_path in r.getMessage() for r in caplog.records)
            assert find_subscriber(database, "form2@example.org") is None

            proxy.resume()
            _assert_working(requests, 3)
            assert find_subscriber(database, "form3@example.org") is not None
            assert find_subscriber(database, "json3@example.org") is not None
        finally:
            app.extensions["newsletter_db"].dispose()


def test_a_database_host_that_answers_nothing_gives_503_within_the_connect_timeout(
    backend, settings, database, redis_conn
):
    """A host behind a failed network takes the connection and never answers: without
    `connect_timeout` in NEWSLETTER_DATABASE_URL (docs/production.md) a reader would wait
    for the TCP timeout, minutes, and gunicorn would kill the worker first."""
    if backend == "sqlite":
        pytest.skip(NOT_AWAY)
    url = make_url(settings.database_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        proxied = url.set(port=proxy.port, query={"connect_timeout": "2"}).render_as_string(hide_password=False)
        app = create_app(replace(settings, database_url=proxied))
        client = app.test_client()
        try:
            assert signup(client, "before@example.org").status_code == 200
            proxy.go_silent()
            started = time.monotonic()
            response = signup(client, READER)
            waited = time.monotonic() - started
            assert response.status_code == 503 and response.headers["Retry-After"] == "30"
            assert waited < 10, f"the reader waited {waited:.1f} s"
            proxy.resume()
            assert signup(client, READER).status_code == 200
        finally:
            app.extensions["newsletter_db"].dispose()


def test_a_missing_table_is_a_bug_not_an_outage_it_answers_500_with_its_traceback_logged(
    backend, settings, database, redis_conn, caplog
):
    """SQLite reports a missing table as an OperationalError, the class a lost connection
    has: it must not hide behind "try again later" (a database never migrated)."""
    with database.engine.begin() as conn:
        conn.execute(text("ALTER TABLE subscribers RENAME TO subscribers_elsewhere"))
    app = create_app(settings)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production, not as under TESTING
    try:
        with caplog.at_level(logging.ERROR):
            response = signup(app.test_client(), READER)
        assert response.status_code == 500
        assert "Retry-After" not in response.headers
        assert [r.exc_info is not None for r in caplog.records if r.levelno >= logging.ERROR] == [True]
    finally:
        app.extensions["newsletter_db"].dispose()
        with database.engine.begin() as conn:
            conn.execute(text("ALTER TABLE subscribers_elsewhere RENAME TO subscribers"))


def test_sqlite_busy_is_an_outage_and_a_missing_table_is_a_bug(tmp_path):
    """A writer that holds SQLite's lock past the busy timeout makes the app's statement fail
    with SQLITE_BUSY: that is the database being unavailable for now (503). Produced for
    real, with a timeout of 0 instead of the app's 30 s."""
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(OperationalError) as busy, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert "locked" in str(busy.value.orig)
        assert is_outage(busy.value)
        with pytest.raises(OperationalError) as missing, engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
        assert not is_outage(missing.value)
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()


def test_redis_away_signups_answer_as_always_and_the_reconciler_sends_the_mail_later(
    settings, database, smtp, drain
):
    away = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(away)
    client = app.test_client()
    try:
        assert signup(client, READER).status_code == 200
        answer = client.post("/subscribe", json={"email": "json@example.org"}, headers={"Accept": "application/json"})
        assert (answer.status_code, answer.json) == (202, {"status": "pending"})
        assert client.get("/healthz").status_code == 503
    finally:
        app.extensions["newsletter_db"].dispose()
    assert find_subscriber(database, READER).status == "pending"
    assert [m.queued_at for m in all_rows(database, OutboxMessage)] == [None, None]  # left to the reconciler
    assert smtp.to(READER) == []

    drain()  # a worker that reaches Redis: its reconciler queues what the signups could not
    assert len(smtp.to(READER)) == 1 and len(smtp.to("json@example.org")) == 1


def test_redis_away_the_signup_limit_still_holds_in_memory(settings):
    """Flask-Limiter falls back to memory (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED) rather than
    failing the signup or letting every request through."""
    away = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", signup_rate_limit="2 per minute")
    app = create_app(away)
    # An address of its own: the fallback's memory outlives an app in this process.
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.23"
    try:
        codes = [signup(client, f"limit{n}@example.org").status_code for n in range(3)]
    finally:
        app.extensions["newsletter_db"].dispose()
    assert codes == [200, 200, 429]
