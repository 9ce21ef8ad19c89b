"""What a job needs (settings, database, Redis, renderer), built once per process from the
environment. A forked child (a job run by a forking RQ worker, a test harness) must not
reuse its parent's database connections, so the context is rebuilt when the process id
changes; `newsletter worker` itself runs its jobs in-process and keeps it.

It lives in the package, not in worker/, because the jobs that the web and the CLI queue
(newsletter/queueing.py) read it, and neither may import worker/."""

from __future__ import annotations

import os
from dataclasses import dataclass

from redis import Redis

from newsletter.config import Settings, load_settings
from newsletter.db import Database
from newsletter.mail.compose import Renderer


@dataclass
class Context:
    settings: Settings
    database: Database
    redis: Redis
    pid: int
    renderer: Renderer


_current: Context | None = None


def redis_from_settings(settings: Settings, **options: object) -> Redis:
    """A Redis client for NEWSLETTER_REDIS_URL with short timeouts: Redis only carries work,
    so a request must not hang when it is gone."""
    options.setdefault("socket_connect_timeout", 2)
    options.setdefault("socket_timeout", 5)
    return Redis.from_url(settings.redis_url, **options)  # type: ignore[arg-type]


def configure(settings: Settings) -> Context:
    """Set the process's context (the worker and the scheduler do this at start)."""
    global _current
    if _current is not None and _current.pid == os.getpid():
        _current.database.dispose()
    _current = Context(settings, Database(settings.database_url), redis_from_settings(settings), os.getpid(), Renderer(settings))
    return _current


def get() -> Context:
    """The context of this process, rebuilt after a fork."""
    global _current
    if _current is None:
        return configure(load_settings())
    if _current.pid != os.getpid():
        # Forked: drop inherited pool entries without closing the parent's sockets.
        _current.database.engine.dispose(close=False)
        _current = Context(
            _current.settings,
            Database(_current.settings.database_url),
            redis_from_settings(_current.settings),
            os.getpid(),
            _current.renderer,  # holds no connection; its compiled templates stay shared
        )
    return _current
