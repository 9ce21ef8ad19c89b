"""GET /metrics: the Prometheus text format, figures read from the database and Redis at
every scrape (newsletter/operators/metrics.py), guarded by NEWSLETTER_METRICS_TOKEN when it
is set. A database that does not answer fails the scrape with 503 like every page
(errors.py), so Prometheus marks the target down (`up == 0`); Redis away is a figure
(`newsletter_redis_up 0`)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from newsletter.db import get_session
from newsletter.operators.metrics import NewsletterCollector
from newsletter.web.extensions import limiter, redis, settings

bp = Blueprint("metrics", __name__)


@bp.record_once
def _registry(state: BlueprintSetupState) -> None:
    # One registry per app, never prometheus_client's global one: every app (a test, a
    # gunicorn worker) answers for itself, and none registers its collector twice.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NewsletterCollector(get_session, redis))
    state.app.extensions["newsletter_metrics"] = registry


def _authorized(expected: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest on bytes: a non-ASCII header must be refused, not raise TypeError.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@bp.get("/metrics")
@limiter.exempt
def metrics() -> Response:
    token = settings().metrics_token
    if token and not _authorized(token):
        return Response("A valid metrics token is required (Authorization: Bearer TOKEN).\n", status=401,
                        mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"',
                                                        "Cache-Control": "no-store"})
    body = generate_latest(current_app.extensions["newsletter_metrics"])
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
