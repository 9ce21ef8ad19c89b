"""What bench/signup.py and bench/digest.py both need: a free port, the project's console
scripts, and a PostgreSQL database of the run's own."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path


class BenchError(RuntimeError):
    """The benchmark could not be set up or run; str() is one line for the operator."""


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
