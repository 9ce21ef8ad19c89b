"""The Flask app factory (re-exported as newsletter.create_app)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from .config import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app from `settings` (default: the environment and `.env`)."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from . import db
    from .web import api, errors, health, i18n, public, security
    from .web.extensions import init_limiter, init_redis

    settings = settings or load_settings()
    instance = Path(settings.instance_path).resolve()
    app = Flask(__name__, instance_path=str(instance))
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
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    if settings.demo:
        from .web import inbox

        app.register_blueprint(inbox.bp)
    return app
