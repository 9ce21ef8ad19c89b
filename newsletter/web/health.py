"""GET /healthz: 200 when the database and Redis answer, 503 otherwise."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from newsletter.db import get_session, ping
from newsletter.web.extensions import redis, settings

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    try:
        ping(get_session())
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis().ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    # The address the rate limits and consent records see: an operator checks here that
    # NEWSLETTER_TRUSTED_PROXIES matches the proxies in front (README).
    return jsonify(
        status="ok" if healthy else "unavailable", checks=checks,
        client_ip=request.remote_addr, trusted_proxies=settings().trusted_proxies,
    ), 200 if healthy else 503
