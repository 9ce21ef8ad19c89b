"""API token scopes (STANDARDS 36): tokens made by the real console script with
`--scope listings|editions`, used through the HTTP API; a token without the scope a route
needs gets 403 and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text

from newsletter.models import ApiToken, Edition, Listing, Subscriber, email_hash, utcnow
from tests.conftest import env_for

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")

EDITION_ROUTES = [
    ("POST", "/api/v1/editions"),
    ("GET", "/api/v1/editions/preview"),
    ("GET", "/api/v1/editions/1"),
    ("POST", "/api/v1/editions/1/cancel"),
]


def cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], env=env_for(settings), capture_output=True, text=True, timeout=120)


def created(settings, name: str, *options: str) -> str:
    result = cli(settings, "api-token", "create", name, *options)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def fresh_listing(n: int) -> dict[str, str]:
    published = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return {"id": f"job-{n}", "title": f"Pflegefachkraft {n} (m/w/d)", "url": f"https://jobs.example.org/stellen/{n}",
            "published_at": published, "location": "Würzburg"}


def a_reader(database) -> None:
    """Someone an edition would go to, so that a refused trigger would have sent mail."""
    with database.session_scope() as session:
        session.add(Subscriber(email="leser@example.org", email_hash=email_hash("leser@example.org"),
                               status="confirmed", confirmed_at=utcnow()))


def count(database, model) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def assert_forbidden(response, scope: str) -> None:
    assert response.status_code == 403, response.get_data(as_text=True)
    body = response.get_json()
    assert body["scope"] == scope and f"'{scope}'" in body["error"], body
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_a_listings_token_imports_listings_but_cannot_touch_editions(client, settings, database):
    a_reader(database)
    secret = created(settings, "feed", "--scope", "listings")
    imported = client.post("/api/v1/listings", json=[fresh_listing(1)], headers=auth(secret))
    assert imported.status_code == 200 and imported.get_json()["added"] == 1
    for method, path in EDITION_ROUTES:
        assert_forbidden(client.open(path, method=method, headers=auth(secret)), "editions")
    assert count(database, Edition) == 0


def test_an_editions_token_cannot_import_or_withdraw_listings(client, settings, database):
    with database.session_scope() as session:
        session.add(Listing(external_id="job-1", title="Koch (m/w/d)", url="https://jobs.example.org/stellen/1",
                            published_at=utcnow() - timedelta(hours=1)))
    secret = created(settings, "ops", "--scope", "editions")
    assert_forbidden(client.post("/api/v1/listings", json=[fresh_listing(2)], headers=auth(secret)), "listings")
    assert_forbidden(client.delete("/api/v1/listings/job-1", headers=auth(secret)), "listings")
    with database.session_scope() as session:
        [(external_id, withdrawn_at)] = session.execute(select(Listing.external_id, Listing.withdrawn_at)).all()
    assert external_id == "job-1" and withdrawn_at is None
    assert client.get("/api/v1/editions/preview", headers=auth(secret)).status_code == 200


def test_a_token_made_without_scopes_does_both(client, settings, database):
    a_reader(database)
    secret = created(settings, "both")
    assert client.post("/api/v1/listings", json=[fresh_listing(1)], headers=auth(secret)).get_json()["added"] == 1
    response = client.post("/api/v1/editions", headers=auth(secret))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert count(database, Edition) == 1
    both = created(settings, "explicit", "--scope", "listings", "--scope", "editions")
    assert client.get("/api/v1/editions/preview", headers=auth(both)).status_code == 200
    assert client.delete("/api/v1/listings/job-1", headers=auth(both)).status_code == 200


def test_a_token_from_before_scopes_existed_keeps_both(client, database):
    """A row written without the scopes column, as every token made before migration 0003
    was: the column's server default gives it both scopes."""
    from newsletter.operators.api_tokens import token_hash

    with database.session_scope() as session:
        session.execute(text("INSERT INTO api_tokens (name, token_hash, created_at) VALUES (:n, :h, :at)"),
                        {"n": "old", "h": token_hash("an-old-secret"), "at": utcnow()})
    assert client.post("/api/v1/listings", json=[], headers=auth("an-old-secret")).status_code == 200
    assert client.get("/api/v1/editions/preview", headers=auth("an-old-secret")).status_code == 200


def test_an_unknown_scope_is_one_line_and_makes_no_token(settings, database):
    result = cli(settings, "api-token", "create", "root", "--scope", "admin")
    assert result.returncode != 0
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "admin" in line and "listings" in line and "Traceback" not in result.stderr
    assert count(database, ApiToken) == 0


def test_the_token_list_shows_each_tokens_scopes(settings, database):
    created(settings, "feed", "--scope", "listings")
    created(settings, "ops")
    result = cli(settings, "api-token", "list")
    assert result.returncode == 0, result.stderr
    lines = {line.split("\t")[0]: line for line in result.stdout.splitlines()}
    assert "\tscopes listings\t" in lines["feed"]
    assert "\tscopes listings editions\t" in lines["ops"]


def test_openapi_needs_no_token_and_states_the_scopes(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]["description"]
    assert "`listings`" in scheme and "`editions`" in scheme
    needs = {(path, method): op["security"] for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert needs[("/listings", "post")] == needs[("/listings/{id}", "delete")] == [{"bearerAuth": ["listings"]}]
    assert needs[("/editions", "post")] == needs[("/editions/{id}", "get")] == [{"bearerAuth": ["editions"]}]
    for ops in spec["paths"].values():
        for op in ops.values():
            if op.get("security") != []:  # every operation but the description itself
                assert "403" in op["responses"], op["operationId"]


def test_every_api_route_names_the_scope_it_needs(app):
    """A route without one would answer 403 to every token: caught here, not in production."""
    routes = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")}
    assert len(routes) == 7
    for endpoint in routes:
        assert getattr(app.view_functions[endpoint], "api_scope", None) in ("listings", "editions", "public"), endpoint
