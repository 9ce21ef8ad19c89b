"""The app bench/signup.py serves: the real app plus two baseline routes.

Both are registered on the very same Flask app, so a request to them passes through the
same gunicorn workers, WSGI stack, before/after-request hooks (limiter, Babel, security
headers) and teardown as POST /subscribe:

- GET /bench/hello returns "hello": the fixed cost of serving any request on this machine,
  the issue's baseline.
- POST /bench/write reads the same form, inserts one row, commits and sends one Redis
  command: the least any signup that is kept (a database commit) and handed on (Redis) can
  do. Printed next to the target's ratio, it says how much of the gap to hello-world is the
  I/O every signup must do and how much is the signup's own code.
"""

from __future__ import annotations

from flask import Flask, request
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, func

from newsletter import create_app
from newsletter.db import get_session
from newsletter.web.extensions import redis

HELLO_PATH = "/bench/hello"
WRITE_PATH = "/bench/write"

_metadata = MetaData()
bench_writes = Table(
    "bench_writes", _metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("at", DateTime, nullable=False, server_default=func.now()),
)
_INSERT = bench_writes.insert()


def hello() -> str:
    return "hello"


def write() -> str:
    session = get_session()
    session.connection().execute(_INSERT, {"email": request.form.get("email", "")})
    session.commit()
    redis().rpush("bench:writes", 1)
    return "ok"


def create_bench_table(database_url: str) -> None:
    """Called by bench/signup.py before gunicorn starts (its two workers import this)."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    _metadata.create_all(engine)
    engine.dispose()


def make_app() -> Flask:
    """gunicorn's app factory ("signup_app:make_app()"): importing this module builds nothing."""
    app = create_app()
    app.add_url_rule(HELLO_PATH, "bench_hello", hello)
    app.add_url_rule(WRITE_PATH, "bench_write", write, methods=["POST"])
    return app
