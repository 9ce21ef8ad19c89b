"""What bench/signup.py and bench/digest.py both need: a free port, the project's console
scripts, and a PostgreSQL database and a Redis database of the run's own."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BenchError(RuntimeError):
    """The benchmark could not be set up or run; str() is one line for the operator."""


def stop_on_sigterm(_signum: int, _frame: object) -> None:
    """A SIGTERM handler: unwind through the finally blocks and context managers, which clean up."""
    raise SystemExit(143)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_script(name: str) -> str:
    """A console script next to the running interpreter (.venv/bin when run as documented)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise BenchError(f"{path} not found: run this with the project's .venv/bin/python")
    return str(path)


@contextlib.contextmanager
def postgres_database(admin_url: str, prefix: str) -> Iterator[str]:
    """Create <prefix>_<pid> on the server of `admin_url`, yield its URL, drop it after.
    No other database is created, changed or dropped; `admin_url`'s own is only connected
    to, for CREATE and DROP DATABASE."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = make_url(admin_url)
    name = f"{prefix}_{os.getpid()}"
    options = {"isolation_level": "AUTOCOMMIT", "connect_args": {"connect_timeout": 5}}
    engine = create_engine(url, **options)
    try:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except SQLAlchemyError as first:
            # The URL may name a database that does not exist: the server's maintenance
            # database is as good a place to issue CREATE DATABASE from.
            engine.dispose()
            engine = create_engine(url.set(database="postgres"), **options)
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            except SQLAlchemyError:
                reason = str(getattr(first, "orig", None) or first).splitlines()[0]
                raise BenchError(f"cannot create database {name}: {reason}") from None
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                # FORCE: a connection left by a killed server or worker must not keep it alive.
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


# tests/conftest.py claims Redis databases 15..1 with these keys in database 0; claiming the
# same way keeps test runs and benchmarks side by side from flushing each other's queues.
REDIS_CLAIM_KEY = "newsletter:test-run:db"


@dataclass(frozen=True)
class RedisDb:
    url: str
    number: int
    client: Any  # redis.Redis, imported late so that load-generating processes stay light


def _release(lock: Any, key: str, token: str) -> None:
    # Only if still ours: a claim that expired may be someone else's by now.
    if lock.get(key) == token.encode():
        lock.delete(key)


def _usable(lock: Any, server: str, number: int) -> bool:
    """Nobody connected to database `number` and nothing in it: a set-up older than the
    claims (or a demo) may use a number without claiming it; its data is not ours to flush."""
    from redis import Redis

    if any(client.get("db") == str(number) for client in lock.client_list()):
        return False
    probe = Redis.from_url(f"{server}/{number}", socket_connect_timeout=2, socket_timeout=10)
    try:
        return int(probe.dbsize()) == 0
    finally:
        probe.close()


@contextlib.contextmanager
def claimed_redis(server: str, label: str, prefer: int) -> Iterator[RedisDb]:
    """A Redis database of this run's own (`prefer`, else the lowest free number; test runs
    take theirs from 15 down), flushed before and after."""
    from redis import Redis
    from redis.exceptions import RedisError

    lock = Redis.from_url(f"{server}/0", socket_connect_timeout=2, socket_timeout=10)
    token = f"{label}:{os.getpid()}"
    number = None
    try:
        for candidate in [prefer, *(n for n in range(1, 16) if n != prefer)]:
            key = f"{REDIS_CLAIM_KEY}:{candidate}"
            if not lock.set(key, token, nx=True, ex=6 * 3600):
                continue
            if _usable(lock, server, candidate):
                number = candidate
                break
            _release(lock, key, token)
    except RedisError as exc:
        lock.close()
        raise BenchError(f"Redis at {server} does not answer: {exc}") from None
    if number is None:
        lock.close()
        raise BenchError("every Redis database 1-15 is claimed or in use")
    url = f"{server}/{number}"
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
    try:
        client.flushdb()
        yield RedisDb(url, number, client)
    finally:
        with contextlib.suppress(RedisError):
            client.flushdb()
            _release(lock, f"{REDIS_CLAIM_KEY}:{number}", token)
        client.close()
        lock.close()


# Production refuses the built-in example operator; the bench brings its own.
BENCH_OPERATOR = {
    "impressum": "Bench Jobs GmbH, Prüfstraße 1, 10115 Berlin. HRB 1.",
    "mail_from": "Bench Jobs <newsletter@bench.example.org>",
    "privacy_url": "https://bench.example.org/datenschutz",
    "board_url": "https://bench.example.org",
    "board_search_url": "https://bench.example.org/suche?q={keywords}&ort={location}",
}
