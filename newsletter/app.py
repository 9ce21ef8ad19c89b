"""The Flask app factory (re-exported as newsletter.create_app)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import get_input_stream

from newsletter.config import Settings, load_settings


class BoundedRequest(Request):
    """A request whose streamed (chunked) body over max_content_length answers 413.

    Werkzeug refuses a Content-Length over the limit, but a body without one it only cuts
    off at the limit: the form would be parsed from its first 64 KB (a 400 about a field)
    instead of refused. Reading one byte past the limit tells the two apart; such a body is
    read whole on first use (at most the limit, as form and JSON parsing read it anyway).
    """

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length  # on first use: the API raises it after authentication
        streamed = self.content_length is None and "wsgi.input_terminated" in self.environ
        if limit is None or not streamed:
            return super().stream
        body = get_input_stream(self.environ, max_content_length=limit + 1).read()
        if len(body) > limit:
            raise RequestEntityTooLarge()
        return io.BytesIO(body)


class BoundedJSONProvider(DefaultJSONProvider):
    """JSON bodies as Flask reads them, with a body nested too deeply for the parser
    refused like any malformed one: the json module raises RecursionError there, which
    Flask does not catch (a 500 from user input)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app from `settings` (default: the environment and `.env`)."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from newsletter import db
    from newsletter.web import admin, api, errors, health, i18n, metrics, public, security
    from newsletter.web.digest_view import bp as digest_view_bp
    from newsletter.web.extensions import init_limiter, init_redis

    settings = settings or load_settings()
    instance = Path(settings.instance_path).resolve()
    app = Flask(__name__, instance_path=str(instance))
    app.request_class = BoundedRequest
    app.json = BoundedJSONProvider(app)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        MAX_CONTENT_LENGTH=64 * 1024,
        JSON_AS_ASCII=False,
        TESTING=settings.env == "test",
    )
    app.extensions["newsletter_settings"] = settings
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
            x_host=settings.trusted_proxies,
        )

    db.init_app(app, db.Database(settings.database_url))
    init_redis(app, settings)
    init_limiter(app, settings)
    i18n.init_app(app)
    security.init_app(app, settings)
    errors.init_app(app)
    app.register_blueprint(public.bp)
    app.register_blueprint(digest_view_bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    admin.init_app(app)
    app.register_blueprint(metrics.bp)
    if settings.demo:
        from newsletter.web import inbox

        app.register_blueprint(inbox.bp)
    return app
