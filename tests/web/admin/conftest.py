"""Fixtures of the admin's tests: accounts made the way `newsletter admin create-user`
makes them, and logging in through the real login form (its CSRF token included).

    operator / viewer      the address of an account of that role (the `database` fixture's)
    login(client, email)   log `client` in through /admin/login; the password is PASSWORD
    csrf(client)           a CSRF token of the client's session, from a page's form
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from newsletter.models import AdminRole
from newsletter.operators import accounts

PASSWORD = "lange genug und geheim 42"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_account(database: Any, email: str, role: str = AdminRole.OPERATOR, password: str = PASSWORD) -> str:
    with database.session_scope() as session:
        accounts.create(session, email, password, role)
    return email


@pytest.fixture
def operator(database: Any) -> str:
    return make_account(database, "olga@jobs.example.org", AdminRole.OPERATOR)


@pytest.fixture
def viewer(database: Any) -> str:
    return make_account(database, "viktor@jobs.example.org", AdminRole.VIEWER)


def token_in(html: str) -> str:
    match = _TOKEN.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def csrf(client: Any, page: str = "/admin/login", **request: Any) -> str:
    """A CSRF token of the client's session, taken from a form of `page`."""
    response = client.get(page, **request)
    assert response.status_code == 200, response.status_code
    return token_in(response.get_data(as_text=True))


def login(client: Any, email: str, password: str = PASSWORD, **request: Any) -> Any:
    """Log in through the form; returns the POST's response (303 on success). `request`
    goes to both requests (e.g. environ_base={"REMOTE_ADDR": ...}, base_url=...)."""
    token = csrf(client, **request)
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token}, **request)


def logged_in(client: Any, email: str) -> Any:
    response = login(client, email)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return client


def post(client: Any, path: str, data: dict[str, str] | None = None, page: str = "/admin/") -> Any:
    """POST a form of the admin as a browser would: with the session's CSRF token."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf(client, page)})
