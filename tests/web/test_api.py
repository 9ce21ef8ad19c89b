"""The HTTP API at /api/v1/: bearer tokens (made by the real console script), listings in
and out, and the OpenAPI description."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from newsletter.operators import api_tokens
from newsletter.models import ApiToken, Listing, utcnow
from tests.conftest import env_for

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], env=env_for(settings), capture_output=True, text=True, timeout=120)


@pytest.fixture
def token(database) -> str:
    with database.session_scope() as session:
        return api_tokens.create(session, "jobboard").secret


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def row(n: int, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": f"job-{n}",
        "title": f"Pflegefachkraft {n} (m/w/d)",
        "url": f"https://jobs.example.org/stellen/job-{n}",
        "published_at": "2026-11-20T09:30:00+01:00",
        "company": "Klinikum Würzburg",
        "location": "Würzburg",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def stored(database) -> dict[str, Listing]:
    with database.session_scope() as session:
        return {r.external_id: r for r in session.scalars(select(Listing))}


# -- authentication ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "method, path",
    [("POST", "/api/v1/listings"), ("DELETE", "/api/v1/listings/job-1"), ("POST", "/api/v1/editions")],
)
@pytest.mark.parametrize(
    "headers, invalid",
    [
        ({}, False),
        ({"Authorization": "Basic am9iczpnZWhlaW0="}, False),
        ({"Authorization": "Bearer"}, False),
        ({"Authorization": "Bearer not-a-token-of-ours"}, True),
    ],
)
def test_every_route_wants_a_valid_bearer_token(client, database, token, method, path, headers, invalid):
    response = client.open(path, method=method, json=[row(1)], headers=headers)
    assert response.status_code == 401
    assert response.is_json and "bearer token" in response.get_json()["error"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) is invalid
    assert stored(database) == {}


def test_a_revoked_token_is_refused(client, settings, database, token):
    assert client.post("/api/v1/listings", json=[], headers=auth(token)).status_code == 200
    result = cli(settings, "api-token", "revoke", "jobboard")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "revoked: 1"
    assert client.post("/api/v1/listings", json=[], headers=auth(token)).status_code == 401
    again = cli(settings, "api-token", "revoke", "jobboard")
    assert again.returncode == 1 and again.stderr.strip() == "error: no active api token named 'jobboard'"


def test_token_is_shown_once_and_stored_hashed(client, settings, database):
    result = cli(settings, "api-token", "create", "Jobbörse Produktion")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.splitlines()[-1]
    assert len(secret) >= 43 and " " not in secret

    with database.session_scope() as session:
        dump = [tuple(r) for r in session.execute(text("SELECT * FROM api_tokens"))]
        [token_row] = session.scalars(select(ApiToken)).all()
    assert token_row.name == "Jobbörse Produktion"
    assert token_row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(dump)
    assert token_row.last_used_at is None

    assert client.post("/api/v1/listings", json=[], headers=auth(secret)).status_code == 200
    listing = cli(settings, "api-token", "list")
    assert listing.returncode == 0 and "Jobbörse Produktion" in listing.stdout and "active" in listing.stdout
    assert secret not in listing.stdout
    with database.session_scope() as session:
        assert session.scalar(select(ApiToken.last_used_at)) is not None

    # The same name twice while the first is active: refused, nothing printed as a token.
    twice = cli(settings, "api-token", "create", "Jobbörse Produktion")
    assert twice.returncode == 1 and twice.stdout == ""
    assert twice.stderr.strip().startswith("error: name: an active token named")


def test_last_used_at_is_written_at_most_once_a_minute(database):
    with database.session_scope() as session:
        new = api_tokens.create(session, "board")
    start = utcnow()
    with database.session_scope() as session:
        assert api_tokens.verify(session, new.secret, now=start).last_used_at == start
    with database.session_scope() as session:
        later = start + timedelta(seconds=30)
        assert api_tokens.verify(session, new.secret, now=later).last_used_at == start
        assert not session.dirty
    with database.session_scope() as session:
        later = start + timedelta(seconds=61)
        assert api_tokens.verify(session, new.secret, now=later).last_used_at == later
    with database.session_scope() as session:
        assert api_tokens.verify(session, new.secret + "x") is None
        assert api_tokens.verify(session, "") is None


# -- listings ----------------------------------------------------------------------------------

def test_post_listings_keeps_good_rows_and_names_bad_ones(client, database, token):
    body = [
        row(1),
        row(2, url="javascript:alert(1)"),
        row(3, title="Altenpfleger\r\n(m/w/d)"),
        {"title": "ohne id", "url": "https://jobs.example.org/x", "published_at": "2026-11-20"},
        row(5, published_at="2026-02-30T10:00:00Z"),
        "kein Objekt",
        row(1, title="noch einmal"),
    ]
    response = client.post("/api/v1/listings", json=body, headers=auth(token))
    assert response.status_code == 200
    assert response.get_json() == {
        "added": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": [
            {"index": 1, "id": "job-2", "reason": "url: only absolute http and https links are allowed (got 'javascript')"},
            # STANDARDS 27: CR/LF in listing data is refused, not tidied into the title.
            {"index": 2, "id": "job-3", "reason": "title: line breaks are not allowed in a single-line field"},
            {"index": 3, "id": None, "reason": "id: missing"},
            {"index": 4, "id": "job-5", "reason": "published_at: no such date: 2026-02-30"},
            {"index": 5, "id": None, "reason": "listing: expected a JSON object"},
            {"index": 6, "id": "job-1", "reason": "id: 'job-1' appears again (first at item 0)"},
        ],
    }
    listings = stored(database)
    assert sorted(listings) == ["job-1"]
    assert listings["job-1"].title == "Pflegefachkraft 1 (m/w/d)"

    again = client.post("/api/v1/listings", json=[row(1), row(3, title="Altenpfleger (m/w/d)")], headers=auth(token))
    assert again.get_json() == {"added": 1, "updated": 0, "unchanged": 1, "rejected": []}
    updated = client.post("/api/v1/listings", json=[row(3, title="Altenpfleger (m/w/d) Nachtdienst")], headers=auth(token))
    assert updated.get_json() == {"added": 0, "updated": 1, "unchanged": 0, "rejected": []}


@pytest.mark.parametrize(
    "data, content_type, reason",
    [
        (json.dumps({"id": "job-1"}), "application/json", "expected a JSON array of listings"),
        (json.dumps("job-1"), "application/json", "expected a JSON array of listings"),
        ("[{", "application/json", "not valid JSON (Expecting property name enclosed in double quotes"),
        (b"\xff\xfe[", "application/json", "not valid JSON ("),
        ("[" * 100_000, "application/json", "not valid JSON (JSON nested too deeply)"),
        ("id=job-1", "application/x-www-form-urlencoded", "not valid JSON (Expecting value"),
    ],
)
def test_a_body_that_is_not_an_array_is_400(client, database, token, data, content_type, reason):
    """The answer says which: JSON that cannot be read, or JSON that is no array."""
    response = client.post("/api/v1/listings", data=data, content_type=content_type,
                           headers={**auth(token), "Accept": "text/html"})
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "body" and body["error"].startswith(f"body: {reason}"), body
    assert stored(database) == {}


def test_more_than_5000_listings_in_one_request_is_400(client, database, token):
    response = client.post("/api/v1/listings", json=[{}] * 5001, headers=auth(token))
    assert response.status_code == 400
    assert response.get_json()["error"] == "body: at most 5000 listings per request"
    exactly = client.post("/api/v1/listings", json=[{}] * 5000, headers=auth(token))
    assert exactly.status_code == 200 and len(exactly.get_json()["rejected"]) == 5000


def test_bodies_above_the_form_limit_are_accepted_up_to_a_few_mb(client, database, token):
    description = "Wir suchen Verstärkung für unser Team. " * 40  # ~1.6 KB each
    body = [row(n, description=description) for n in range(200)]
    payload = json.dumps(body).encode()
    assert 64 * 1024 < len(payload) < 4 * 1024 * 1024
    response = client.post("/api/v1/listings", data=payload, content_type="application/json", headers=auth(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["added"] == 200

    huge = json.dumps([row(1, description="x" * (5 * 1024 * 1024))]).encode()
    too_big = client.post("/api/v1/listings", data=huge, content_type="application/json", headers=auth(token))
    assert too_big.status_code == 413 and too_big.is_json
    # The public pages keep their 64 KB limit.
    form = client.post("/subscribe", data={"email": "a@example.org", "keywords": "x" * (100 * 1024)})
    assert form.status_code == 413


def test_delete_withdraws_idempotently_and_a_feed_does_not_bring_it_back(client, database, token):
    client.post("/api/v1/listings", json=[row(1), row(2)], headers=auth(token))

    first = client.delete("/api/v1/listings/job-1", headers=auth(token))
    assert first.status_code == 200
    withdrawn_at = first.get_json()["withdrawn_at"]
    assert first.get_json()["id"] == "job-1" and withdrawn_at.endswith("Z")
    second = client.delete("/api/v1/listings/job-1", headers=auth(token))
    assert second.status_code == 200 and second.get_json()["withdrawn_at"] == withdrawn_at
    listings = stored(database)
    assert listings["job-1"].withdrawn_at is not None and listings["job-2"].withdrawn_at is None

    unknown = client.delete("/api/v1/listings/job-404", headers=auth(token))
    assert unknown.status_code == 404 and unknown.get_json() == {"error": "no listing with this id"}

    # A feed that still carries the listing (same data, or edited) does not resurrect it.
    same = client.post("/api/v1/listings", json=[row(1)], headers=auth(token))
    assert same.get_json()["unchanged"] == 1
    edited = client.post("/api/v1/listings", json=[row(1, title="Pflegefachkraft (m/w/d) – Teilzeit")],
                         headers=auth(token))
    assert edited.get_json()["updated"] == 1
    assert stored(database)["job-1"].withdrawn_at is not None

    # Posted anew (published after the withdrawal): it is back.
    reposted = (utcnow() + timedelta(minutes=1)).isoformat(timespec="seconds") + "Z"
    back = client.post("/api/v1/listings", json=[row(1, published_at=reposted)], headers=auth(token))
    assert back.get_json()["updated"] == 1
    assert stored(database)["job-1"].withdrawn_at is None


def test_ids_with_slashes_can_be_withdrawn(client, database, token):
    client.post("/api/v1/listings", json=[row(1, id="ABC/2026/17")], headers=auth(token))
    response = client.delete("/api/v1/listings/ABC/2026/17", headers=auth(token))
    assert response.status_code == 200 and response.get_json()["id"] == "ABC/2026/17"


# -- OpenAPI -----------------------------------------------------------------------------------

def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_describes_the_api(client, token):
    response = client.get("/api/v1/openapi.json", headers=auth(token))
    assert response.status_code == 200 and response.mimetype == "application/json"
    spec = json.loads(response.get_data(as_text=True))
    assert spec["openapi"].startswith("3.1")
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert scheme["description"].startswith("A token from `newsletter api-token create NAME")
    assert spec["security"] == [{"bearerAuth": []}]
    paths = spec["paths"]
    assert set(paths) == {"/openapi.json", "/listings", "/listings/{id}", "/editions", "/editions/preview", "/editions/{id}", "/editions/{id}/{action}"}
    assert paths["/openapi.json"]["get"]["security"] == []  # the description needs no token
    assert set(paths["/listings"]) == {"post"} and set(paths["/listings/{id}"]) == {"delete"}
    assert set(paths["/editions"]) == {"post"} and set(paths["/editions/{id}"]) == {"get"}
    assert "202" in paths["/editions"]["post"]["responses"]
    edition = spec["components"]["schemas"]["Edition"]
    assert set(edition["required"]) == {"id", "state", "queued", "sent", "failed", "bounced"}
    result = spec["components"]["schemas"]["ImportResult"]
    assert set(result["required"]) == {"added", "updated", "unchanged", "rejected"}
    # Every $ref points at a schema that exists.
    for ref in _refs(spec):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in spec["components"]["schemas"]


@pytest.mark.parametrize("url", ["http://[::1", "https://example.org]/x", "http://[/a"])
def test_an_unbalanced_ipv6_bracket_is_a_rejected_row_not_a_500(client, database, token, url):
    response = client.post("/api/v1/listings", json=[row(1, url=url), row(2)], headers=auth(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["added"] == 1
    assert body["rejected"] == [{"index": 0, "id": "job-1", "reason": "url: has no valid host"}]


def test_the_cli_names_a_row_with_an_unbalanced_ipv6_bracket_without_a_traceback(settings, database, tmp_path):
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps([row(1, url="http://[::1")]))
    result = cli(settings, "listings", "import", str(feed))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "item 0: url: has no valid host" in result.stdout + result.stderr


@pytest.mark.parametrize("number", ["1e999999999999999999999999", "9" * 5000])
def test_a_number_too_big_to_read_is_a_rejected_row_not_a_500(client, database, token, number):
    body = ('[{"id": ' + number + ', "title": "Koch (m/w/d)", "url": "https://jobs.example.org/1", '
            '"published_at": "2026-01-05T09:00:00+01:00"}]')
    answer = client.post("/api/v1/listings", data=body, content_type="application/json", headers=auth(token))
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["added"] == 0
    [rejected] = answer.get_json()["rejected"]
    assert rejected["index"] == 0 and "id" in rejected["reason"]
    assert "Traceback" not in answer.get_data(as_text=True)
