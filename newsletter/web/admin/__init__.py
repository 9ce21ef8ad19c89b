"""The operators' web admin at /admin/: accounts log in (auth.py), then see the dashboard
(dashboard.py), the editions (editions.py), the readers and the suppression list
(subscribers.py), the listings (listings.py) and the API tokens (tokens.py). Every view
names the least role it needs (`auth.require`); every POST needs an operator and a CSRF
token, but logging in and out.

CSRF protection (Flask-WTF) covers this blueprint only: the public signup form is embedded
on the job board's pages and must keep working without a token (CONTRACT)."""

from __future__ import annotations

from flask import Flask

from newsletter.web.admin import (  # noqa: F401 - their routes join bp
    auth,
    dashboard,
    editions,
    listings,
    subscribers,
    tokens,
    uploads,
)
from newsletter.web.admin.auth import bp, csrf


def init_app(app: Flask) -> None:
    """Register the admin at /admin/ with its CSRF protection."""
    # Checked by the admin's own before_request, never app-wide.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    # Flask-WTF's HTTPS check wants a same-origin Referer, which our pages never send
    # (Referrer-Policy: no-referrer, like the public pages); the token and the session
    # cookie's SameSite=Lax carry the protection.
    app.config["WTF_CSRF_SSL_STRICT"] = False
    csrf.init_app(app)
    app.register_blueprint(bp)
