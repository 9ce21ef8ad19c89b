"""Redis and Flask-Limiter for the web app, and the request's way into queueing: the
functions of newsletter/queueing.py with this request's session and the app's Redis."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from redis import Redis
from redis.exceptions import RedisError

from newsletter import queueing
from newsletter.config import Settings
from newsletter.db import get_session
from newsletter.job_context import redis_from_settings

log = logging.getLogger(__name__)


def client_key() -> str:
    """The rate-limit bucket of the request's client: its IPv4 address, or its IPv6 /64.

    A home or server line gets a whole /64, so per IPv6 address its owner would have an
    unlimited budget (STANDARDS 28)."""
    address = get_remote_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


# No X-RateLimit-* headers: a form post never reads them, and they cost two Redis round
# trips per request on the signup's hot path (bench/signup.py).
limiter = Limiter(key_func=client_key, default_limits=[], headers_enabled=False)


def settings() -> Settings:
    """The Settings of the current app."""
    value: Settings = current_app.extensions["newsletter_settings"]
    return value


def redis() -> Redis:
    """The app's Redis client (queueing, health)."""
    value: Redis = current_app.extensions["newsletter_redis"]
    return value


def init_redis(app: Flask, s: Settings) -> None:
    """Give the app its Redis client, with shorter timeouts than a job's: a reader waits."""
    app.extensions["newsletter_redis"] = redis_from_settings(s, socket_connect_timeout=1, socket_timeout=2)


def limiter_storage_uri(redis_url: str) -> str:
    """Flask-Limiter names a Redis unix socket `redis+unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://"):]
    return redis_url


def init_limiter(app: Flask, s: Settings) -> None:
    # With Redis gone the limits fall back to memory rather than failing the signup:
    # Redis only carries work (DESIGN), the database holds the signup.
    app.config.update(
        RATELIMIT_STORAGE_URI=limiter_storage_uri(s.redis_url),
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 1, "socket_timeout": 2},
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_KEY_PREFIX="newsletter",
    )
    limiter.init_app(app)
    # The views' decorators name this one Limiter, so an app made after another (tests,
    # a reload) hands it a new storage; that the previous one was down says nothing about
    # it (Flask-Limiter 4.1 keeps the flag across init_app).
    limiter._storage_dead = False


def signup_limit() -> str:
    return settings().signup_rate_limit


def enqueue_outbox_after_commit(ids: Iterable[int]) -> None:
    """Queue outbox rows this request committed; with Redis down the request still succeeds
    and the reconciler sends them later (queueing.queue_outbox_after_commit)."""
    queueing.queue_outbox_after_commit(get_session(), redis(), ids)


def queue_edition_after_commit(edition_id: int) -> bool:
    """Queue the chunks of an edition this request committed; False when Redis is away (the
    reconciler queues them once it is back), which does not fail the request."""
    try:
        queueing.queue_edition(get_session(), redis(), edition_id, settings().send_chunk_size)
    except RedisError as exc:
        log.warning("Redis unavailable, edition %s left to the reconciler: %s", edition_id, exc)
        return False
    return True
