"""The HTTP API's OpenAPI 3.1 description, served at /api/v1/openapi.json: what each
operation takes and answers, and the token scope it needs."""

from __future__ import annotations

from typing import Any

from newsletter.models import EditionState

# The most listings one POST /api/v1/listings takes (web/api.py refuses more with 413).
MAX_ITEMS = 5000


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_UNAUTHORIZED = {
    "description": "No, an unknown or a revoked bearer token.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    "content": _json(_ERROR),
}



def _scoped(scope: str, operation: dict[str, Any]) -> dict[str, Any]:
    """`operation` as one that needs token scope `scope` (OpenAPI 3.1 lets an http bearer
    requirement list the roles it needs), with its 403."""
    forbidden = {"description": f"The token lacks the scope `{scope}`.", "content": _json(_ERROR)}
    responses = dict(sorted({**operation["responses"], "403": forbidden}.items()))
    return {**operation, "security": [{"bearerAuth": [scope]}], "responses": responses}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Jobs newsletter API",
        "version": "1.0.0",
        "description": (
            "For the job board's systems: push listings, withdraw them, trigger and watch "
            "digest editions. Every operation needs `Authorization: Bearer TOKEN` whose token "
            "has the operation's scope (`listings` or `editions`); tokens are made with "
            "`newsletter api-token create NAME [--scope listings|editions ...]`. This "
            "description needs no token. Request bodies may be up to 4 MB."
        ),
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearerAuth": []}],
    "paths": {
        "/listings": {
            "post": _scoped("listings", {
                "operationId": "upsertListings",
                "summary": "Add or update listings (upsert on id)",
                "description": (
                    "The same rules as `newsletter listings import`. Every valid row is stored, "
                    "every invalid one is named in `rejected`; an id given twice in one request "
                    "is rejected the second time. Re-sending a withdrawn listing does not bring "
                    "it back unless its published_at lies after the withdrawal."
                ),
                "requestBody": {
                    "required": True,
                    "content": _json({
                        "type": "array",
                        "maxItems": MAX_ITEMS,
                        "items": {"$ref": "#/components/schemas/ListingInput"},
                    }),
                },
                "responses": {
                    "200": {"description": "Processed; the good rows are stored.",
                            "content": _json({"$ref": "#/components/schemas/ImportResult"})},
                    "400": {"description": "The body is not a JSON array.", "content": _json(_ERROR)},
                    "401": _UNAUTHORIZED,
                    "413": {"description": "The body is larger than 4 MB.", "content": _json(_ERROR)},
                },
            }),
        },
        "/listings/{id}": {
            "delete": _scoped("listings", {
                "operationId": "withdrawListing",
                "summary": "Withdraw a listing (idempotent)",
                "parameters": [{
                    "name": "id", "in": "path", "required": True,
                    "description": "The job board's id of the listing.",
                    "schema": {"type": "string", "maxLength": 100},
                }],
                "responses": {
                    "200": {"description": "Withdrawn (now or earlier).", "content": _json({
                        "type": "object",
                        "required": ["id", "withdrawn_at"],
                        "properties": {
                            "id": {"type": "string"},
                            "withdrawn_at": {"type": "string", "format": "date-time"},
                        },
                    })},
                    "401": _UNAUTHORIZED,
                    "404": {"description": "No listing with this id.", "content": _json(_ERROR)},
                },
            }),
        },
        "/editions": {
            "post": _scoped("editions", {
                "operationId": "createEdition",
                "summary": "Create a digest edition now and queue its delivery (the operator's trigger)",
                "responses": {
                    "202": {"description": "Created and queued.", "content": _json({
                        "type": "object",
                        "required": ["id", "state"],
                        "properties": {
                            "id": {"type": "integer"},
                            "state": {"$ref": "#/components/schemas/EditionState"},
                        },
                    })},
                    "400": {"description": "A body was sent; this route takes none.", "content": _json(_ERROR)},
                    "401": _UNAUTHORIZED,
                    "409": {"description": "An edition is still sending or paused: one at a time.",
                            "content": _json(_ERROR)},
                },
            }),
        },
        "/editions/preview": {
            "get": _scoped("editions", {
                "operationId": "previewEdition",
                "summary": "Who and what an edition made now would cover; creates nothing",
                "responses": {
                    "200": {"description": "The preview.", "content": _json({
                        "type": "object",
                        "required": ["recipients", "listings"],
                        "properties": {
                            "recipients": {"type": "integer"},
                            "listings": {"type": "array", "items": {"type": "object", "properties": {
                                "id": {"type": "string"}, "title": {"type": "string"},
                                "url": {"type": "string"}, "published_at": {"type": "string"}}}},
                        },
                    })},
                    "401": _UNAUTHORIZED,
                },
            }),
        },
        "/editions/{id}/{action}": {
            "post": _scoped("editions", {
                "operationId": "changeEdition",
                "summary": "Pause, resume or cancel an edition",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "action", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": ["pause", "resume", "cancel"]}},
                ],
                "responses": {
                    "200": {"description": "The edition after the change.",
                            "content": _json({"$ref": "#/components/schemas/Edition"})},
                    "401": _UNAUTHORIZED,
                    "404": {"description": "No edition with this id.", "content": _json(_ERROR)},
                    "409": {"description": "The edition's state does not allow it.", "content": _json(_ERROR)},
                },
            }),
        },
        "/editions/{id}": {
            "get": _scoped("editions", {
                "operationId": "getEdition",
                "summary": "An edition's state and delivery counts",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {
                    "200": {"description": "The edition.",
                            "content": _json({"$ref": "#/components/schemas/Edition"})},
                    "401": _UNAUTHORIZED,
                    "404": {"description": "No edition with this id.", "content": _json(_ERROR)},
                },
            }),
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": (
                "A token from `newsletter api-token create NAME [--scope SCOPE ...]`. Scopes: "
                "`listings` (add, update and withdraw listings) and `editions` (create, preview, "
                "read, pause, resume and cancel editions). A token made without `--scope` has "
                "both. A token without the scope an operation needs gets 403 and changes nothing."
            )},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "field": {"type": "string"},
                    "scope": {"type": "string", "description": "With 403: the scope the token lacks."},
                },
            },
            "ListingInput": {
                "type": "object",
                "description": (
                    "Unknown fields are ignored. Text is cleaned of control characters; title, "
                    "company, location and category become single lines. Times without an "
                    "offset are Europe/Berlin; a date alone is midnight Europe/Berlin "
                    "(valid_through: the whole day)."
                ),
                "required": ["id", "title", "url", "published_at"],
                "properties": {
                    "id": {"type": ["string", "integer"], "maxLength": 100,
                           "description": "The job board's own id; the upsert key."},
                    "title": {"type": "string", "maxLength": 300},
                    "url": {"type": "string", "format": "uri", "maxLength": 2000,
                            "description": "Absolute http or https, without user name or password."},
                    "published_at": {"type": "string", "description": "ISO 8601 date or date-time; at most a day ahead.",
                                     "examples": ["2026-11-20T09:30:00+01:00", "2026-11-20"]},
                    "valid_through": {"type": ["string", "null"],
                                      "description": "ISO 8601 date or date-time, not before published_at."},
                    "company": {"type": ["string", "null"], "maxLength": 200},
                    "location": {"type": ["string", "null"], "maxLength": 200},
                    "category": {"type": ["string", "null"], "maxLength": 200},
                    "description": {"type": ["string", "null"], "maxLength": 20000},
                },
            },
            "ImportResult": {
                "type": "object",
                "required": ["added", "updated", "unchanged", "rejected"],
                "properties": {
                    "added": {"type": "integer"},
                    "updated": {"type": "integer"},
                    "unchanged": {"type": "integer", "description": "Identical to what was stored."},
                    "rejected": {"type": "array", "items": {
                        "type": "object",
                        "required": ["index", "id", "reason"],
                        "properties": {
                            "index": {"type": "integer", "description": "0-based position in the request array."},
                            "id": {"type": ["string", "null"], "description": "The row's id, when it could be read."},
                            "reason": {"type": "string", "examples": ["url: only absolute http and https links are allowed"]},
                        },
                    }},
                },
            },
            "EditionState": {"type": "string", "enum": [
                EditionState.SENDING, EditionState.PAUSED, EditionState.CANCELLED, EditionState.DONE,
            ]},
            "Edition": {
                "type": "object",
                "required": ["id", "state", "queued", "sent", "failed", "bounced"],
                "properties": {
                    "id": {"type": "integer"},
                    "state": {"$ref": "#/components/schemas/EditionState"},
                    "queued": {"type": "integer"},
                    "sent": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "bounced": {"type": "integer"},
                    "cancelled": {"type": "integer"},
                    "recipients": {"type": "integer", "description": "deliveries planned"},
                    "listings": {"type": "integer", "description": "listings in the edition's window"},
                    "trigger": {"type": "string", "enum": ["schedule", "cli", "api", "demo"]},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
        },
    },
}
