"""API tokens in the admin, tried against the real /api/v1: a token made with one scope is
shown once (not on the list, not in the audit log, not in any log line), works for that
scope and is refused the other, and a revoked one answers 401. Also: the generic access
checks of test_access.py reach every route of the readers', listings' and tokens' pages."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest

from newsletter.models import ApiToken, AuditEvent, utcnow
from tests.helpers import all_rows
from tests.web.admin.conftest import logged_in, post
from tests.web.admin.test_access import _rules


@pytest.fixture
def en(client):
    client.environ_base.update({"HTTP_ACCEPT_LANGUAGE": "en"})
    return client


def _secret(page: str) -> str:
    match = re.search(r'<input type="text" id="secret" class="secret" value="([^"]+)"', page)
    assert match, "no token on the page"
    return match.group(1)


def _listing() -> list[dict[str, str]]:
    return [{"id": "api-1", "title": "Über die API", "url": "https://jobs.example.org/api-1",
             "published_at": (utcnow() - timedelta(hours=1)).isoformat() + "Z"}]


def test_a_token_is_shown_once_works_for_its_scope_only_and_is_401_once_revoked(en, database, operator, caplog):
    caplog.set_level(logging.DEBUG)
    logged_in(en, operator)
    created = post(en, "/admin/tokens", {"name": "Jobbörse Feed", "scope": "listings"}, page="/admin/tokens")
    assert created.status_code == 201
    secret = _secret(created.get_data(as_text=True))
    assert "shown this once" in created.get_data(as_text=True)

    bearer = {"Authorization": f"Bearer {secret}"}
    response = en.post("/api/v1/listings", json=_listing(), headers=bearer)
    assert response.status_code == 200 and response.get_json()["added"] == 1
    assert en.get("/api/v1/editions/1", headers=bearer).status_code == 403  # not its scope

    listing = en.get("/admin/tokens").get_data(as_text=True)
    assert "Jobbörse Feed" in listing and secret not in listing
    [row] = all_rows(database, ApiToken)
    assert row.scopes == "listings" and row.last_used_at is not None and row.revoked_at is None
    assert row.token_hash != secret and secret not in repr([(e.action, e.detail) for e in all_rows(database, AuditEvent)])

    asked = post(en, "/admin/tokens/revoke", {"name": "Jobbörse Feed"}, page="/admin/tokens")
    assert asked.status_code == 200 and "Revoke the token “Jobbörse Feed”?" in asked.get_data(as_text=True)
    assert en.post("/api/v1/listings", json=_listing(), headers=bearer).status_code == 200  # asking revoked nothing
    done = post(en, "/admin/tokens/revoke", {"name": "Jobbörse Feed", "confirm": "yes"}, page="/admin/tokens")
    assert done.status_code == 303
    assert en.post("/api/v1/listings", json=_listing(), headers=bearer).status_code == 401
    assert 'data-revoked="Jobbörse Feed">–<' not in en.get("/admin/tokens").get_data(as_text=True)

    audit = [(e.actor, e.action, e.detail) for e in all_rows(database, AuditEvent) if e.action.startswith("token.")]
    assert audit == [(operator, "token.create", {"name": "Jobbörse Feed", "scopes": "listings"}),
                     (operator, "token.revoke", {"name": "Jobbörse Feed", "count": 1})]
    assert secret not in caplog.text


def test_both_scopes_reach_the_editions_and_no_scope_is_refused(en, database, operator):
    logged_in(en, operator)
    refused = post(en, "/admin/tokens", {"name": "ohne"}, page="/admin/tokens")
    assert refused.status_code == 400 and "Choose at least one scope." in refused.get_data(as_text=True)
    assert all_rows(database, ApiToken) == []
    created = post(en, "/admin/tokens", {"name": "Redaktion", "scope": ["listings", "editions"]}, page="/admin/tokens")
    secret = _secret(created.get_data(as_text=True))
    assert en.get("/api/v1/editions/1", headers={"Authorization": f"Bearer {secret}"}).status_code == 404  # allowed in
    twice = post(en, "/admin/tokens", {"name": "Redaktion", "scope": "listings"}, page="/admin/tokens")
    assert twice.status_code == 400 and "revoke it first" in twice.get_data(as_text=True)
    assert len(all_rows(database, ApiToken)) == 1


def test_a_viewer_lists_tokens_but_cannot_make_or_revoke_one(client, database, operator, viewer):
    logged_in(client, operator)
    post(client, "/admin/tokens", {"name": "bestehend", "scope": "editions"}, page="/admin/tokens")
    post(client, "/admin/logout")
    logged_in(client, viewer)
    page = client.get("/admin/tokens").get_data(as_text=True)
    assert "bestehend" in page and "/admin/tokens/revoke" not in page and 'name="scope"' not in page
    assert post(client, "/admin/tokens", {"name": "neu", "scope": "listings"}).status_code == 403
    assert post(client, "/admin/tokens/revoke", {"name": "bestehend", "confirm": "yes"}).status_code == 403
    assert [(t.name, t.revoked_at) for t in all_rows(database, ApiToken)] == [("bestehend", None)]


def test_the_generic_access_checks_reach_every_new_route(app):
    """test_access.py walks the url map: no session, no CSRF token and a viewer are tried on
    every admin route it finds. These are the routes of this half of the admin."""
    gets = {endpoint for endpoint, _ in _rules(app, "GET")}
    posts = {endpoint for endpoint, _ in _rules(app, "POST")}
    assert {"admin.subscribers", "admin.subscriber", "admin.subscribers_import_form", "admin.suppressions_page",
            "admin.listings", "admin.tokens"} <= gets
    assert {"admin.subscriber_unsubscribe", "admin.subscriber_erase", "admin.subscriber_export",
            "admin.subscribers_import", "admin.suppression_lift", "admin.listings_upload", "admin.listing_withdraw",
            "admin.token_create", "admin.token_revoke"} <= posts
