"""Who is logged in to the admin, and what they may do.

A session is Flask's signed cookie (HttpOnly, SameSite=Lax, Secure in production: app.py)
holding the account's id, the generation of its password it was made under (a new password
or a disable ends every older session) and when it was last used: unused for
NEWSLETTER_ADMIN_IDLE_MINUTES it ends. The database is asked on every request, so a
disabled account is out at once.

Every view of the blueprint names the least role it needs with `require`; a view without
one is refused (fail closed). Only an operator may POST, but for logging out; every POST
carries a CSRF token. Login attempts are limited per account and per address (Flask-Limiter,
failures only), and every login, failed or not, is in the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import Forbidden

from newsletter.db import get_session
from newsletter.models import AdminRole, AdminUser
from newsletter.operators import accounts, audit
from newsletter.validation import InvalidInput
from newsletter.web.errors import wants_json
from newsletter.web.extensions import client_key, limiter, settings

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()

# Failed attempts only (a successful login is a redirect): enough for typos, too few to guess.
LOGIN_LIMIT_PER_ACCOUNT = "5 per 15 minutes"
LOGIN_LIMIT_PER_ADDRESS = "20 per 15 minutes"
PUBLIC = "public"  # the access of the login form itself
# The one POST a viewer may make: ending their own session.
VIEWER_MAY_POST = frozenset({"admin.logout"})
# Polled by the edition page's script: a page left open is not someone using the admin.
KEEPS_IDLE = frozenset({"admin.edition_progress"})
# The admin's pages may run our own scripts and fetch our own JSON, and frame our own
# digest preview; everything else as on the public pages (web/security.py).
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; "
       "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_SESSION_KEYS = ("admin_uid", "admin_gen", "admin_seen")
_RANK = {AdminRole.VIEWER: 0, AdminRole.OPERATOR: 1}

View = TypeVar("View", bound=Callable[..., Any])


def require(role: str) -> Callable[[View], View]:
    """Mark a view as needing at least `role` (AdminRole), or PUBLIC for the login form."""
    def mark(view: View) -> View:
        view.admin_access = role  # type: ignore[attr-defined]
        return view
    return mark


def current_user() -> AdminUser | None:
    """The account logged in to this request, or None."""
    return g.get("admin_user")


def client_ip() -> str | None:
    """The client's address (the last trusted proxy's X-Forwarded-For: app.py's ProxyFix)."""
    return request.remote_addr


def record(action: str, *, edition_id: int | None = None, detail: dict[str, object] | None = None,
           actor: str | None = None) -> None:
    """Add an audit event for this request's account and address; the view commits."""
    user = current_user()
    audit.record(get_session(), actor or (user.email if user is not None else "-"), action, ip=client_ip(),
                 edition_id=edition_id, detail=detail)


def _access_of(endpoint: str | None) -> str | None:
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return getattr(view, "admin_access", None)


def _logged_in() -> AdminUser | None:
    """The account of the session cookie, if it is valid, enabled and not idle too long."""
    uid, generation, seen = (session.get(key) for key in _SESSION_KEYS)
    if not isinstance(uid, int) or not isinstance(seen, (int, float)):
        return None
    if time.time() - seen > settings().admin_idle_minutes * 60:
        g.admin_expired = True
        return None
    user = accounts.get(get_session(), uid)
    if user is None or user.disabled_at is not None or user.session_generation != generation:
        return None
    return user


def _safe_next(target: str | None) -> str | None:
    """A path inside the admin to return to after login; anything else is dropped
    (STANDARDS 31: no open redirect)."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin/") or parts.path.startswith("//"):
        return None
    return target


def _login_required() -> Response:
    if wants_json() or request.headers.get("X-Requested-With") == "fetch":
        response = jsonify(error="login required")
        response.status_code = 401
        return response
    if request.method != "GET":
        target = None
    else:
        target = request.full_path.rstrip("?") if request.query_string else request.path
    expired = "1" if g.get("admin_expired") else None
    return redirect(url_for("admin.login_form", next=_safe_next(target), expired=expired), code=303)


@bp.before_request
def _guard() -> Response | None:
    access = _access_of(request.endpoint)
    if access is None:
        raise Forbidden()  # a view nobody gave an access: refused, never open
    posting = request.method not in ("GET", "HEAD", "OPTIONS")
    if access != PUBLIC:
        user = _logged_in()
        if user is None:
            for key in _SESSION_KEYS:
                session.pop(key, None)
            return _login_required()
        g.admin_user = user
        if request.endpoint not in KEEPS_IDLE:
            session["admin_seen"] = int(time.time())
    if posting:
        csrf.protect()  # a missing or wrong token: CSRFError, a 400
    if access == PUBLIC:
        return None
    needed = access if not posting or request.endpoint in VIEWER_MAY_POST else AdminRole.OPERATOR
    user = current_user()
    if user is None or _RANK.get(user.role, -1) < _RANK.get(needed, 99):
        raise Forbidden(_("Your account may look but not change anything here."))
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["Cache-Control"] = "no-store"  # JSON too: it is as private as the pages
    return response


@bp.app_context_processor
def _admin_context() -> dict[str, Any]:
    return {"admin_user": current_user(), "is_operator": _is_operator()}


@bp.app_template_filter("admin_time")
def _admin_time(value: datetime | None) -> str:
    """A stored (naive UTC) time in the schedule's time zone, to the minute."""
    if value is None:
        return "–"
    return value.replace(tzinfo=UTC).astimezone(settings().tz).strftime("%Y-%m-%d %H:%M")


def _is_operator() -> bool:
    user = current_user()
    return user is not None and user.role == AdminRole.OPERATOR


# -- login and logout ---------------------------------------------------------------------

def _account_key() -> str:
    return "admin-account:" + (request.form.get("email") or "").strip().lower()[:320]


def _failed(response: Response) -> bool:
    return response.status_code != 303


@bp.get("/login")
@require(PUBLIC)
def login_form() -> Response | str:
    if current_user() is None and _logged_in() is not None:
        return redirect(url_for("admin.dashboard"), code=303)
    return render_template("admin/login.html", next=_safe_next(request.args.get("next")),
                           expired=bool(request.args.get("expired")), email="", error=None)


@bp.post("/login")
@require(PUBLIC)
@limiter.limit(LOGIN_LIMIT_PER_ACCOUNT, key_func=_account_key, deduct_when=_failed)
@limiter.limit(LOGIN_LIMIT_PER_ADDRESS, key_func=client_key, deduct_when=_failed)
def login() -> Response | tuple[str, int]:
    email = (request.form.get("email") or "").strip()
    password = request.form.get("password") or ""
    db = get_session()
    user = accounts.authenticate(db, email, password)
    if user is None:
        try:
            named = accounts.normal_email(email)
        except InvalidInput:
            named = "(not an address)"
        audit.record(db, named, "login.failed", ip=client_ip())
        db.commit()
        page = render_template("admin/login.html", next=_safe_next(request.form.get("next")), expired=False,
                               email=email[:320], error=_("Wrong address or password, or the account is disabled."))
        return page, 401
    audit.record(db, user.email, "login", ip=client_ip())
    db.commit()
    session.clear()  # a new session: nothing of the anonymous one (its CSRF token) carries over
    session.update(admin_uid=user.id, admin_gen=user.session_generation, admin_seen=int(time.time()))
    return redirect(_safe_next(request.form.get("next")) or url_for("admin.dashboard"), code=303)


@bp.post("/logout")
@require(AdminRole.VIEWER)
def logout() -> Response:
    record("logout")
    get_session().commit()
    session.clear()
    return redirect(url_for("admin.login_form"), code=303)
