"""The HTTP API keeps to its OpenAPI description (issue 11): schemathesis generates requests
from /api/v1/openapi.json, valid and invalid ones, sends them in-process to the real Flask
app with a real token of both scopes, and runs every check it has (status codes, content
types, headers, response schemas, that invalid data is refused and valid data taken, that
the bearer token is not ignored ...). A route that drifts from its description fails here.

POST /listings answers 200 for a body with bad rows on purpose (CONTRACT: the bad rows are
named in `rejected`, the good ones kept), which schemathesis' `negative_data_rejection`
cannot know. For that one operation it is replaced by `listings_answer_as_described`, which
holds the server to what the description says instead: 400 exactly for a body that is not
an array of at most 5000 items (or JSON-LD without a JobPosting), and in a 200 every row
that keeps to ListingInput stored unless a rule the description states in words refused it.

Examples are bounded and derandomized so that the run is stable in CI and takes seconds.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from newsletter.operators import api_tokens
from newsletter.web.openapi import MAX_ITEMS, OPENAPI, RULES_IN_WORDS

BASE_URL = "http://localhost/api/v1"
# RULES_IN_WORDS: the rules ListingInput states only in words (see its description): a row
# refused for one of them may well match the schema.

# Loaded from the dict the app serves (test_the_served_description_is_the_tested_one holds
# them equal): the pytest integration needs the schema when it collects, before any app
# (and its database, SQLite or PostgreSQL) exists.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(OPENAPI)))

BOUNDED = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),  # function-scoped fixtures, slow-ish data
)

_LISTING = jsonschema_rs.validator_for(
    {**json.loads(json.dumps(OPENAPI)), "$ref": "#/components/schemas/ListingInput"},
    validate_formats=True,
)


@pytest.fixture
def bearer(database: Any) -> dict[str, str]:
    with database.session_scope() as session:
        secret = api_tokens.create(session, "schemathesis", ["listings", "editions"]).secret
    return {"Authorization": f"Bearer {secret}"}


def _is_json_ld(item: object) -> bool:
    return isinstance(item, dict) and any(isinstance(key, str) and key.startswith("@") for key in item)


def listings_answer_as_described(ctx: Any, response: Any, case: Any) -> None:
    """POST /listings: 400 only for what its 400 names; in a 200, a row that keeps to
    ListingInput is stored unless a rule stated in words refused it."""
    # (Other checks send probes through here too: OPTIONS, a request without the token ...)
    if (case.operation.path, case.method.upper()) != ("/listings", "POST") or response.status_code not in (200, 400):
        return
    body = case.body
    whole_body_bad = not isinstance(body, list) or len(body) > MAX_ITEMS or any(_is_json_ld(i) for i in body)
    if response.status_code == 400:
        assert whole_body_bad, f"400 for an array of listings: {response.json()}"
        return
    assert isinstance(body, list) and len(body) <= MAX_ITEMS, "200 for a body that is not an array of at most 5000"
    if whole_body_bad:  # JSON-LD: indices count JobPosting nodes, not items
        return
    rejected = {row["index"]: row["reason"] for row in response.json()["rejected"]}
    for index, item in enumerate(body):
        reason = rejected.get(index)
        if reason is None or not _LISTING.is_valid(item):
            continue
        stated = reason in RULES_IN_WORDS or "appears again" in reason
        assert stated, f"row {index} keeps to ListingInput but was rejected: {reason!r}\nrow: {item!r}"
    stored = response.json()["added"] + response.json()["updated"] + response.json()["unchanged"]
    assert stored + len(rejected) == len(body), "every row is either stored or rejected"


def _exclusions(case: Any) -> list[Any]:
    return [negative_data_rejection] if case.operation.path == "/listings" else []


@schema.parametrize()
@BOUNDED
def test_every_operation_keeps_to_its_description(case: Any, app: Any, bearer: dict[str, str]) -> None:
    case.operation.app = case.operation.schema.app = app  # each test's own app and database
    case.operation.base_url = BASE_URL
    case.call_and_validate(
        headers=bearer, additional_checks=[listings_answer_as_described], excluded_checks=_exclusions(case)
    )


def test_links_lead_from_a_new_edition_to_its_state_and_steering(app: Any, bearer: dict[str, str]) -> None:
    """Stateful: schemathesis follows the description's links from POST /editions to
    GET, pause, resume and cancel of the edition it made, checking every answer."""
    served = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    links = served.as_state_machine()

    class Steps(links):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": bearer}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(
                response, additional_checks=[listings_answer_as_described], excluded_checks=_exclusions(case),
                headers=kwargs.get("headers"), transport_kwargs=kwargs,
            )

    Steps.run(settings=settings(BOUNDED, max_examples=15, stateful_step_count=6))


def test_the_served_description_is_the_tested_one(client: Any) -> None:
    response = client.get("/api/v1/openapi.json")  # no token: it holds no secret
    assert response.status_code == 200
    assert response.get_json() == json.loads(json.dumps(OPENAPI))
    created = response.get_json()["paths"]["/editions"]["post"]["responses"]["202"]["links"]
    assert {name: link["parameters"] for name, link in created.items()} == {
        "GetEdition": {"id": "$response.body#/id"},
        "PauseEdition": {"id": "$response.body#/id", "action": "pause"},
        "ResumeEdition": {"id": "$response.body#/id", "action": "resume"},
        "CancelEdition": {"id": "$response.body#/id", "action": "cancel"},
    }


def test_a_whole_number_id_written_with_a_fraction_is_that_number(client: Any, bearer: dict[str, str]) -> None:
    """JSON Schema's `integer` (the description's id) counts 1921580.0 as a whole number."""
    row = {"title": "Koch (m/w/d)", "url": "https://jobs.example.org/1", "published_at": "2026-11-20"}
    body = b'[{"id": 1921580.0, "title": "Koch (m/w/d)", "url": "https://jobs.example.org/1", "published_at": "2026-11-20"}]'
    first = client.post("/api/v1/listings", data=body, headers={**bearer, "Content-Type": "application/json"})
    assert first.get_json() == {"added": 1, "updated": 0, "unchanged": 0, "rejected": []}
    again = client.post("/api/v1/listings", json=[{"id": 1921580, **row}, {"id": 2.5, **row}], headers=bearer)
    assert again.get_json()["unchanged"] == 1
    assert again.get_json()["rejected"] == [{"index": 1, "id": None, "reason": "id: expected text or a whole number"}]
