"""The HTTP API at /api/v1/ for the job board's systems: JSON in and out, every route behind
`Authorization: Bearer TOKEN` (tokens from `newsletter api-token create`) except the
OpenAPI description, no CSRF (no cookies are involved), bodies up to MAX_BODY instead of
the app's 64 KB form limit. Each route names the token scope it needs (`_needs`); a route
that names none is refused to every token, so a new route cannot slip out unguarded.

Listings go through the very code of `newsletter listings import` (store.validate and
store.upsert), so a row the CLI refuses the API refuses with the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from newsletter.db import get_session, retry_once_on_conflict
from newsletter.listings import store
from newsletter.listings.formats import FeedError, json_int, json_number, records_from_json
from newsletter.operators import api_tokens
from newsletter.web.openapi import MAX_ITEMS, OPENAPI

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# A few MB: a full feed of a few thousand listings in one request. The app-wide
# MAX_CONTENT_LENGTH (64 KB) stays for the public forms; this applies only to requests
# that passed authentication, so an anonymous client can never make us read more.
MAX_BODY = 4 * 1024 * 1024
REALM = 'Bearer realm="newsletter-api"'
PUBLIC = "public"  # the scope of a route that needs no token

View = TypeVar("View", bound=Callable[..., Any])


def _needs(scope: str) -> Callable[[View], View]:
    """Mark a view as needing token scope `scope` (or PUBLIC: no token at all)."""
    def mark(view: View) -> View:
        view.api_scope = scope  # type: ignore[attr-defined]
        return view
    return mark


def _scope_of(endpoint: str | None) -> str | None:
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return getattr(view, "api_scope", None)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def _unauthorized(message: str, invalid: bool) -> Response:
    response = _error(401, message)
    # RFC 6750 3.1: no error code when no credentials came; invalid_token when they were bad.
    response.headers["WWW-Authenticate"] = REALM + (', error="invalid_token"' if invalid else "")
    return response


def _forbidden(scope: str | None) -> Response:
    if scope is None:
        response = _error(403, "no token scope grants this route")
    else:
        response = _error(403, f"this token lacks the scope {scope!r} that this route needs", scope=scope)
    # RFC 6750 3.1: the token is good but not enough for this request.
    challenge = REALM + ', error="insufficient_scope"'
    response.headers["WWW-Authenticate"] = challenge + (f', scope="{scope}"' if scope else "")
    return response


@bp.before_request
def _authenticate() -> Response | None:
    # No endpoint (a wrong method, say): it still wants a token, and only then learns why not.
    endpoint = request.endpoint
    scope = _scope_of(endpoint)
    if endpoint is not None and scope == PUBLIC:
        return None
    scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return _unauthorized("a bearer token is required (Authorization: Bearer TOKEN)", invalid=False)
    session = get_session()
    token = api_tokens.verify(session, secret.strip())
    if token is None:
        session.rollback()
        return _unauthorized("the bearer token is unknown or revoked", invalid=True)
    granted, g.api_token_name = api_tokens.scopes_of(token), token.name
    session.commit()  # last_used_at, and no lock held while the body is read
    if endpoint is not None and scope not in granted:
        return _forbidden(scope)
    request.max_content_length = MAX_BODY
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    """JSON whatever the Accept header says (413 for an oversized body, for one)."""
    return _error(exc.code or 500, exc.description or exc.name)


# -- listings ---------------------------------------------------------------------------------

@bp.post("/listings")
@_needs("listings")
def post_listings() -> Response:
    """Upsert an array of listings; the good rows are kept, the bad ones named."""
    try:
        body = current_app.json.loads(request.get_data(cache=True), parse_float=json_number, parse_int=json_int)
    except ValueError as exc:  # also a body that is not UTF-8, or nested past the parser
        return _error(400, f"body: not valid JSON ({_one_line(str(exc))})", field="body")
    if not isinstance(body, list):
        return _error(400, "body: expected a JSON array of listings", field="body")
    if len(body) > MAX_ITEMS:
        return _error(400, f"body: at most {MAX_ITEMS} listings per request", field="body")
    try:
        records = records_from_json(body)
    except FeedError as exc:
        return _error(400, f"body: {exc}", field="body")
    session = get_session()
    # A concurrent import may insert the same new id first.
    result = retry_once_on_conflict(session, lambda: store.import_records(session, records))
    return jsonify({
        "added": result.added,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "rejected": [{"index": r.index, "id": r.id, "reason": r.reason} for r in result.rejected],
    })


@bp.delete("/listings/<path:external_id>")
@_needs("listings")
def delete_listing(external_id: str) -> Response:
    """Withdraw a listing: it stays stored but is no longer mailed. Idempotent."""
    session = get_session()
    row = store.withdraw(session, external_id)
    if row is None or row.withdrawn_at is None:  # (withdrawn_at is set for a known id)
        return _error(404, "no listing with this id")
    session.commit()
    return jsonify({"id": row.external_id, "withdrawn_at": row.withdrawn_at.isoformat() + "Z"})


@bp.get("/openapi.json")
@_needs(PUBLIC)
def openapi() -> Response:
    """This API's OpenAPI 3.1 description."""
    return jsonify(OPENAPI)


# -- editions ---------------------------------------------------------------------------------

def _edition_body(edition: Any) -> dict[str, Any]:
    from newsletter.editions import state

    return {
        "id": edition.id, "state": edition.state, "trigger": edition.trigger,
        "created_at": edition.created_at.isoformat() + "Z", "recipients": edition.planned,
        "listings": edition.listing_count, **state.counts(get_session(), edition.id),
    }


@bp.post("/editions")
@_needs("editions")
def create_edition() -> Response:
    """The operator's trigger: an edition now (cut-off: now), queued for delivery."""
    from newsletter.editions import planning, state
    from newsletter.web.extensions import queue_edition_after_commit, settings

    if request.get_data(cache=True).strip() not in (b"", b"{}"):
        # It takes no options: a body such as {"dry_run": true} must not send for real.
        return _error(400, "body: this route takes none (it sends an edition now); "
                           "for what it would send: GET /api/v1/editions/preview", field="body")
    session = get_session()
    try:
        edition = planning.create_edition(session, settings(), "api")
    except state.EditionError as exc:
        session.rollback()
        return _error(409, str(exc))
    session.commit()
    if edition.planned:
        queue_edition_after_commit(edition.id)
    response = jsonify(_edition_body(edition))
    response.status_code = 202
    return response


@bp.get("/editions/preview")
@_needs("editions")
def preview_edition() -> Response:
    """What an edition made now would cover (the API's `digest send --dry-run`)."""
    from newsletter.editions import planning
    from newsletter.web.extensions import settings

    result = planning.preview(get_session(), settings())
    return jsonify(
        recipients=result.recipients,
        listings=[{"id": item.external_id, "title": item.title, "url": item.url,
                   "published_at": item.published_at.isoformat() + "Z"} for item in result.listings],
    )


@bp.get("/editions/<int:edition_id>")
@_needs("editions")
def get_edition(edition_id: int) -> Response:
    from newsletter.editions import state

    edition = state.get_edition(get_session(), edition_id)
    if edition is None:
        return _error(404, f"no edition {edition_id}")
    return jsonify(_edition_body(edition))


@bp.post("/editions/<int:edition_id>/<any(pause, resume, cancel):action>")
@_needs("editions")
def change_edition(edition_id: int, action: str) -> Response:
    """Pause, resume or cancel an edition (409 when its state does not allow it)."""
    from newsletter.editions import state
    from newsletter.web.extensions import queue_edition_after_commit

    session = get_session()
    if state.get_edition(session, edition_id) is None:
        return _error(404, f"no edition {edition_id}")
    try:
        edition = state.set_state(session, edition_id, action)
    except state.EditionError as exc:
        return _error(409, str(exc))
    session.commit()
    if action == "resume":
        queue_edition_after_commit(edition_id)
    return jsonify(_edition_body(edition))
