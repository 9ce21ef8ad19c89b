"""Fixtures against real services: SQLite and PostgreSQL, a Redis database of the tests' own
(flushed around each test that asks for it), an aiosmtpd sink and real RQ workers.

A test gets only what it asks for: `settings` and `database` are a database and settings
alone; `redis_conn` empties the run's Redis database (`app`, `client` and `drain` ask for
it: the app counts rate limits and queues jobs there, the worker takes them); `smtp` starts
the sink that `settings` then sends mail to (`drain` asks for it: a worker's jobs mail).

PostgreSQL: NEWSLETTER_TEST_POSTGRES=require (what .ci/run sets) fails when it does not
answer; the default `auto` runs the PostgreSQL half only when it answers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsletter.config import Settings, load_settings
from newsletter.migrate import upgrade
from newsletter.models import Base

from .smtp_sink import SmtpSink, free_port

PG_ADMIN_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_MODE = os.environ.get("NEWSLETTER_TEST_POSTGRES", "auto")
REDIS_SERVER = os.environ.get("NEWSLETTER_TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
REDIS_URL = f"{REDIS_SERVER}/13"  # replaced by the database number this run claims
_LOCK_KEY = "newsletter:test-run:db"


def pytest_configure(config: pytest.Config) -> None:
    """Claim a Redis database number (1-15) of this run's own, so that test runs side by
    side (CI, a developer, a helper) never flush or run each other's jobs."""
    global REDIS_URL
    lock = Redis.from_url(f"{REDIS_SERVER}/0")
    try:
        for number in range(15, 0, -1):
            if lock.set(f"{_LOCK_KEY}:{number}", os.getpid(), nx=True, ex=6 * 3600):
                REDIS_URL = f"{REDIS_SERVER}/{number}"
                config._newsletter_redis_db = number  # type: ignore[attr-defined]
                return
    except Exception:  # noqa: BLE001 - no Redis: the tests that need it fail with a clear error
        return
    finally:
        lock.close()
    raise pytest.UsageError("every Redis database 1-15 is taken by other test runs")


def pytest_unconfigure(config: pytest.Config) -> None:
    number = getattr(config, "_newsletter_redis_db", None)
    if number is not None:
        lock = Redis.from_url(f"{REDIS_SERVER}/0")
        lock.delete(f"{_LOCK_KEY}:{number}")
        lock.close()
SECRET = "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _postgres_answers() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = ["sqlite"]
        if PG_MODE != "off":
            backends.append("postgresql")
        metafunc.parametrize("backend", backends, scope="session")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of the tests' own on the machine's PostgreSQL, dropped at the end."""
    if not _postgres_answers():
        if PG_MODE == "require":
            pytest.fail(f"PostgreSQL does not answer at {PG_ADMIN_URL} (NEWSLETTER_TEST_POSTGRES=require)")
        pytest.skip("PostgreSQL does not answer here; set NEWSLETTER_TEST_POSTGRES=require to fail instead")
    name = f"newsletter_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "newsletter.db"
        shutil.copy(template, target)
        yield f"sqlite:///{target}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def redis_conn() -> Iterator[Redis]:
    """The run's own Redis database, empty when the test starts and emptied after it."""
    conn = Redis.from_url(REDIS_URL)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """An SMTP sink of the test's own; `settings` sends to it when the test asks for both."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "env": "test",
        "redis_url": REDIS_URL,  # module global: read at call time, after pytest_configure
        "base_url": "http://newsletter.test",
        "secret_key": SECRET,
        "mail_from": "Jobs-Newsletter <newsletter@jobs.example.org>",
        "retry_base_seconds": 0.2,
        "signup_rate_limit": "1000 per minute",
    }
    base.update(overrides)
    return load_settings(environ={}, dotenv_path=None, **base)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings of the test's database. Redis is only named here (ask for `redis_conn`, or
    `app` or `drain`, to have it empty); mail goes to the `smtp` sink if the test asks for
    one, and otherwise to a port where nothing listens."""
    smtp_port = request.getfixturevalue("smtp").port if "smtp" in request.fixturenames else free_port()
    return make_settings(
        database_url=database_url, smtp_port=smtp_port, instance_path=str(tmp_path / "instance")
    )


@pytest.fixture
def app(settings: Settings, redis_conn: Redis) -> Iterator[Any]:
    from newsletter import create_app

    application = create_app(settings)
    yield application
    application.extensions["newsletter_db"].dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def database(settings: Settings) -> Iterator[Any]:
    from newsletter.db import Database

    db = Database(settings.database_url)
    yield db
    db.dispose()


@pytest.fixture
def drain(settings: Settings, redis_conn: Redis, smtp: SmtpSink) -> Iterator[Any]:
    """Run a real RQ worker (in-process, burst) over all queues until they are empty; the
    mail its jobs send goes to the `smtp` sink."""
    from rq import SimpleWorker

    from newsletter import job_context, queueing

    ctx = job_context.configure(settings)

    def run(with_reconcile: bool = True) -> None:
        if with_reconcile:
            from worker import jobs

            jobs.reconcile()
        worker = SimpleWorker(list(queueing.ALL), connection=ctx.redis)
        worker.work(burst=True, with_scheduler=False)

    yield run
    ctx.database.dispose()


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess (`newsletter worker`) these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    for field_name in Settings.__dataclass_fields__:
        if field_name == "extra":
            continue
        value = getattr(settings, field_name)
        if isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env["NEWSLETTER_" + field_name.upper()] = str(value)
    return env


__all__ = ["make_settings", "env_for", "replace"]
