"""Logging in: a wrong password or a disabled account fails with the same answer, failed
attempts are limited per account and per address (429), and every attempt is audited."""

from __future__ import annotations

from limits import parse_many

from newsletter.models import AuditEvent
from newsletter.web.admin.auth import LOGIN_LIMIT_PER_ACCOUNT, LOGIN_LIMIT_PER_ADDRESS
from tests.helpers import all_rows
from tests.web.admin.conftest import PASSWORD, login, token_in


def _allowed(limit: str) -> int:
    [item] = parse_many(limit)
    return item.amount


def test_a_wrong_password_fails_and_a_right_one_opens_the_dashboard(client, operator):
    for email, password in ((operator, "falsches passwort!"), ("niemand@jobs.example.org", PASSWORD),
                            ("not an address", PASSWORD), (operator, "")):
        response = login(client, email, password)
        assert response.status_code == 401
        assert "Falsche Adresse oder falsches Passwort" in response.get_data(as_text=True)
        assert client.get("/admin/").status_code == 303
    response = login(client, operator.upper())  # an address's case is no secret
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    page = client.get("/admin/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Dashboard" in page and operator in page


def test_failed_logins_are_limited_per_account_from_any_address(client, operator):
    allowed = _allowed(LOGIN_LIMIT_PER_ACCOUNT)
    for n in range(allowed):
        assert login(client, operator, "falsch falsch falsch", environ_base={"REMOTE_ADDR": f"198.51.100.{n}"}).status_code == 401
    # Now even the right password, from yet another address, waits.
    response = login(client, operator, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert response.status_code == 429
    # Other accounts are not locked out by it.
    other = login(client, "someone@jobs.example.org", "x" * 12, environ_base={"REMOTE_ADDR": "203.0.113.8"})
    assert other.status_code == 401


def test_failed_logins_are_limited_per_address_across_accounts(client, operator):
    allowed = _allowed(LOGIN_LIMIT_PER_ADDRESS)
    here = {"REMOTE_ADDR": "192.0.2.44"}
    for n in range(allowed):
        assert login(client, f"guess{n}@jobs.example.org", "falsch falsch falsch", environ_base=here).status_code == 401
    assert login(client, operator, environ_base=here).status_code == 429
    assert login(client, operator, environ_base={"REMOTE_ADDR": "192.0.2.45"}).status_code == 303


def test_successful_logins_do_not_use_up_the_limit(app, operator):
    for _ in range(_allowed(LOGIN_LIMIT_PER_ACCOUNT) + 2):
        assert login(app.test_client(), operator).status_code == 303  # a browser each


def test_every_login_and_logout_is_in_the_audit_log(client, database, operator):
    login(client, operator, "falsch falsch falsch", environ_base={"REMOTE_ADDR": "198.51.100.9"})
    login(client, operator, environ_base={"REMOTE_ADDR": "198.51.100.10"})
    page = client.get("/admin/").get_data(as_text=True)
    assert client.post("/admin/logout", data={"csrf_token": token_in(page)},
                       environ_base={"REMOTE_ADDR": "198.51.100.10"}).status_code == 303
    events = [(e.actor, e.action, e.ip) for e in all_rows(database, AuditEvent)]
    assert events == [(operator, "login.failed", "198.51.100.9"), (operator, "login", "198.51.100.10"),
                      (operator, "logout", "198.51.100.10")]
    assert "falsch" not in str([e.detail for e in all_rows(database, AuditEvent)])  # never a password
