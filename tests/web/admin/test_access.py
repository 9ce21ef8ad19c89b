"""Who gets in to /admin/ and what they may do: no session sees nothing (every route of the
blueprint, enumerated), every POST needs its CSRF token and changes nothing without it, a
viewer changes nothing, the session cookie's flags, idle expiry, and the headers."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from flask import url_for

from newsletter import create_app
from newsletter.editions import planning
from newsletter.models import AuditEvent, Edition, EditionState, OperatorAlarm
from newsletter.operators import accounts
from tests.helpers import add_listing, add_reader, all_rows
from tests.web.admin.conftest import PASSWORD, csrf, logged_in, login, post

SECRET_TITLE = "Geheime Stelle Kryptologin"
READER = "leserin.geheim@example.net"
ALARM = "relay refuses us: 550 5.7.1 sender rejected"
ARGS = {"edition_id": 1, "action": "pause"}
# The POSTs a viewer may make (ending their own session) and the login form itself.
NOT_OPERATOR_ONLY = {"admin.logout", "admin.login"}


def _rules(app, method: str) -> list[tuple[str, str]]:
    """(endpoint, path) of every admin route taking `method`, arguments filled in."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint.startswith("admin.") and method in rule.methods:
                found.append((rule.endpoint, url_for(rule.endpoint, **{k: ARGS[k] for k in rule.arguments})))
    assert found, "no admin routes found"
    return found


@pytest.fixture
def world(database, settings):
    """Something to see and something to change: a sending edition to a reader, an alarm."""
    with database.session_scope() as session:
        add_listing(session, 1, SECRET_TITLE)
        add_reader(session, READER)
        session.add(OperatorAlarm(kind="smtp_policy", message=ALARM))
    with database.session_scope() as session:
        edition = planning.create_edition(session, settings, "test")
        assert edition.id == 1 and edition.state == EditionState.SENDING


def _state(database) -> tuple:
    """What any admin POST could change."""
    return ([(e.id, e.state) for e in all_rows(database, Edition)],
            [(a.id, a.seen_at) for a in all_rows(database, OperatorAlarm)],
            [(e.action, e.edition_id) for e in all_rows(database, AuditEvent) if not e.action.startswith("login")])


def test_without_a_session_every_admin_route_refuses_and_shows_nothing(app, client, world):
    gets, posts = _rules(app, "GET"), _rules(app, "POST")
    assert {"admin.dashboard", "admin.edition", "admin.preview_frame", "admin.audit_log"} <= {e for e, _ in gets}
    for endpoint, path in gets + posts:
        method = client.get if (endpoint, path) in gets else client.post
        response = method(path)
        body = response.get_data(as_text=True)
        if endpoint in ("admin.login_form", "admin.login"):
            continue
        assert response.status_code in (303, 401), (endpoint, response.status_code)
        if response.status_code == 303:
            assert response.headers["Location"].startswith("/admin/login"), endpoint
        for secret in (SECRET_TITLE, READER, ALARM):
            assert secret not in body, (endpoint, secret)
    # A script's request (the progress refresh) gets 401 and JSON, not a login page.
    response = client.get("/admin/editions/1/progress", headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.get_json() == {"error": "login required"}
    # The contract's words: /admin/ answers 401 or redirects to its login page.
    response = client.get("/admin/")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/login?next=/admin/"


def test_after_login_the_page_asked_for_opens_and_no_next_leads_off_site(client, operator):
    token = csrf(client, "/admin/login?next=/admin/editions")
    response = client.post("/admin/login", data={"email": operator, "password": PASSWORD, "csrf_token": token,
                                                 "next": "/admin/editions"})
    assert response.headers["Location"] == "/admin/editions"
    for evil in ("https://evil.example/admin/", "//evil.example/admin/", "/\\evil.example", "/admin/../../x",
                 "/public"):
        client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin/")})
        token = csrf(client)
        response = client.post("/admin/login", data={"email": operator, "password": PASSWORD,
                                                     "csrf_token": token, "next": evil})
        location = response.headers["Location"]
        assert location in ("/admin/", "/admin/../../x") and "evil" not in location, (evil, location)


def test_every_admin_post_without_its_csrf_token_is_refused_and_changes_nothing(app, client, database, world, operator):
    logged_in(client, operator)
    before = _state(database)
    posts = _rules(app, "POST")
    assert {"admin.send_now", "admin.change_edition", "admin.alarms_seen", "admin.preview_test"} <= {e for e, _ in posts}
    for endpoint, path in posts:
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data={"alarm": "1", "to": "x@example.org", "keywords": "a", **data})
            assert response.status_code == 400, (endpoint, data, response.status_code)
    assert _state(database) == before
    assert client.get("/admin/").status_code == 200  # logout without a token did not log out either


def test_a_viewer_sees_everything_and_changes_nothing(app, client, database, world, viewer):
    logged_in(client, viewer)
    page = client.get("/admin/").get_data(as_text=True)
    assert ALARM in page and "Mark seen" not in page and "Als gesehen markieren" not in page
    assert 'href="/admin/editions/1"' in client.get("/admin/editions").get_data(as_text=True)
    detail = client.get("/admin/editions/1").get_data(as_text=True)
    assert "/admin/editions/1/pause" not in detail  # no buttons for what they may not do
    before = _state(database)
    posts = [(e, p) for e, p in _rules(app, "POST") if e not in NOT_OPERATOR_ONLY]
    for endpoint, path in posts:
        response = post(client, path, {"alarm": "1", "to": "x@example.org", "keywords": "Kryptologin"})
        assert response.status_code == 403, (endpoint, response.status_code)
    assert _state(database) == before
    assert post(client, "/admin/logout").status_code == 303  # leaving is theirs
    assert client.get("/admin/").status_code == 303


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_in_production(settings, redis_conn, operator):
    for production, secure in ((False, False), (True, True)):
        app = create_app(replace(settings, env="production", secret_key="k" * 40) if production else settings)
        client = app.test_client()
        response = login(client, operator, base_url="https://newsletter.test") if production else login(client, operator)
        assert response.status_code == 303
        [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags
        assert ("secure" in flags) is secure
        app.extensions["newsletter_db"].dispose()


def test_a_session_unused_for_the_idle_time_ends(client, operator, settings):
    logged_in(client, operator)
    assert client.get("/admin/").status_code == 200
    with client.session_transaction() as cookie:  # the cookie as a browser kept it, last used 31 minutes ago
        cookie["admin_seen"] = int(time.time()) - (settings.admin_idle_minutes * 60 + 60)
    response = client.get("/admin/editions")
    assert response.status_code == 303 and "expired=1" in response.headers["Location"]
    assert client.get("/admin/").status_code == 303  # and it stays ended
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Please log in again" in page or "Bitte melden Sie sich erneut an" in page


def test_use_keeps_the_session_but_the_progress_refresh_does_not(client, operator, settings, world):
    logged_in(client, operator)
    with client.session_transaction() as cookie:
        cookie["admin_seen"] = int(time.time()) - settings.admin_idle_minutes * 60 + 30
    assert client.get("/admin/editions/1/progress").status_code == 200
    with client.session_transaction() as cookie:
        assert cookie["admin_seen"] < time.time() - 60  # polling is not use
    assert client.get("/admin/editions").status_code == 200
    with client.session_transaction() as cookie:
        assert cookie["admin_seen"] >= time.time() - 5


def test_a_new_password_or_a_disable_ends_open_sessions(client, database, operator):
    logged_in(client, operator)
    with database.session_scope() as session:
        accounts.set_password(session, operator, "ein ganz neues passwort")
    assert client.get("/admin/").status_code == 303
    response = login(client, operator, "ein ganz neues passwort")
    assert response.status_code == 303 and client.get("/admin/").status_code == 200
    with database.session_scope() as session:
        accounts.disable(session, operator)
    assert client.get("/admin/").status_code == 303
    assert login(client, operator, "ein ganz neues passwort").status_code == 401


def test_admin_pages_keep_the_public_pages_security_headers(client, operator):
    public = client.get("/subscribe").headers
    logged_in(client, operator)
    for path in ("/admin/", "/admin/login"):
        headers = client.get(path).headers
        for name in ("X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"):
            assert headers[name] == public[name], (path, name)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and headers["Cache-Control"] == "no-store"


def test_the_public_signup_form_needs_no_csrf_token(client):
    response = client.post("/subscribe", data={"email": "neu@example.org"})
    assert response.status_code == 200
