"""The operator's trigger through the HTTP API: create, preview, status, pause, resume,
cancel; then a real worker delivers what the API queued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.operators import api_tokens
from newsletter.models import Subscriber, email_hash


@pytest.fixture
def auth(database) -> dict[str, str]:
    with database.session_scope() as session:
        secret = api_tokens.create(session, "ops").secret
    return {"Authorization": f"Bearer {secret}"}


def fresh_listing(n: int) -> dict[str, str]:
    published = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return {"id": f"job-{n}", "title": f"Data Engineer {n} (m/w/d)", "url": f"https://jobs.example.org/stellen/{n}",
            "published_at": published, "company": "Datenhaus GmbH", "location": "Leipzig"}


def readers(database, count: int) -> None:
    with database.session_scope() as session:
        session.add_all(Subscriber(email=f"r{n}@example.org", email_hash=email_hash(f"r{n}@example.org"),
                                   status="confirmed", keywords="Data") for n in range(count))


def test_editions_need_a_token(client):
    assert client.post("/api/v1/editions").status_code == 401
    assert client.get("/api/v1/editions/1", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_create_preview_status_and_delivery(client, auth, database, smtp, drain):
    readers(database, 3)
    assert client.post("/api/v1/listings", json=[fresh_listing(1), fresh_listing(2)], headers=auth).get_json()["added"] == 2
    preview = client.get("/api/v1/editions/preview", headers=auth).get_json()
    assert preview["recipients"] == 3 and [item["id"] for item in preview["listings"]] == ["job-2", "job-1"]

    created = client.post("/api/v1/editions", headers=auth)
    assert created.status_code == 202
    body = created.get_json()
    assert body["state"] == "sending" and body["queued"] == 3 and body["recipients"] == 3
    drain()
    status = client.get(f"/api/v1/editions/{body['id']}", headers=auth).get_json()
    assert (status["state"], status["queued"], status["sent"], status["failed"], status["bounced"]) == ("done", 0, 3, 0, 0)
    assert len(smtp.messages) == 3


def test_pause_resume_cancel_and_conflicts(client, auth, database, smtp, drain):
    readers(database, 2)
    client.post("/api/v1/listings", json=[fresh_listing(1)], headers=auth)
    edition = client.post("/api/v1/editions", headers=auth).get_json()["id"]
    assert client.post(f"/api/v1/editions/{edition}/pause", headers=auth).get_json()["state"] == "paused"
    drain()
    assert smtp.messages == []
    second = client.post("/api/v1/editions", headers=auth)  # one edition at a time
    assert second.status_code == 409 and f"edition {edition} is still paused" in second.get_json()["error"]
    conflict = client.post(f"/api/v1/editions/{edition}/pause", headers=auth)
    assert conflict.status_code == 409 and "paused" in conflict.get_json()["error"]
    assert client.post(f"/api/v1/editions/{edition}/resume", headers=auth).get_json()["state"] == "sending"
    drain()
    assert len(smtp.messages) == 2
    assert client.post(f"/api/v1/editions/{edition}/cancel", headers=auth).status_code == 409  # done
    assert client.get("/api/v1/editions/999", headers=auth).status_code == 404
    assert client.post(f"/api/v1/editions/{edition}/explode", headers=auth).status_code == 404


@pytest.mark.parametrize("body", ['{"dry_run": true}', "[{", "preview please"])
def test_creating_an_edition_takes_no_options_so_none_is_ignored(client, auth, database, body):
    """A dry run asked for in the body used to create and send a real edition."""
    readers(database, 1)
    client.post("/api/v1/listings", json=[fresh_listing(1)], headers=auth)
    answer = client.post("/api/v1/editions", data=body, content_type="application/json", headers=auth)
    assert answer.status_code == 400 and "/api/v1/editions/preview" in answer.get_json()["error"]
    assert client.get("/api/v1/editions/1", headers=auth).status_code == 404  # none was made
    assert client.post("/api/v1/editions", json={}, headers=auth).status_code == 202


@pytest.mark.parametrize("method, path, status", [
    ("get", "/api/v1/editions/99999999999999999999999", 404),
    ("get", "/api/v1/editions/2147483648", 404),  # past PostgreSQL's integer
    ("post", "/api/v1/editions/2147483648/cancel", 404),
    ("post", "/api/v1/editions/99999999999999999999/pause", 404),
    ("get", "/api/v1/editions/abc", 404),
    ("post", "/api/v1/editions/1/frobnicate", 404),
    ("get", "/api/v1/nothing-here", 404),
    ("delete", "/api/v1/editions/1", 405),
    ("put", "/api/v1/listings", 405),
])
def test_every_api_error_is_json_never_a_page_or_a_500(client, auth, method, path, status):
    answer = getattr(client, method)(path, headers=auth)
    assert answer.status_code == status
    assert answer.mimetype == "application/json" and answer.get_json()["error"]


def test_openapi_describes_the_edition_routes(client, auth):
    spec = client.get("/api/v1/openapi.json", headers=auth).get_json()
    assert {"/editions", "/editions/preview", "/editions/{id}", "/editions/{id}/{action}", "/listings"} <= set(spec["paths"])
    assert {"202", "400", "401", "409"} <= set(spec["paths"]["/editions"]["post"]["responses"])
