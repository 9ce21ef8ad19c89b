"""The HTTP API's OpenAPI 3.1 description, served at /api/v1/openapi.json: what each
operation takes and answers, and the token scope it needs."""

from __future__ import annotations

from typing import Any

from newsletter.listings import feed_fields
from newsletter.models import EditionState

# The most listings one POST /api/v1/listings takes (web/api.py refuses more with 413).
MAX_ITEMS = 5000

# The reasons of the rules between fields (or against the clock) that ListingInput can only
# state in words: a row refused with one of these may well match the schema.
RULES_IN_WORDS = (
    "published_at: lies more than a day in the future",
    "valid_through: lies before published_at",
    "salary_max: lies below salary_min",
)

# What store.clean_listing accepts, as ECMA 262 patterns. Where a rule cannot be a pattern
# (a time relative to the server's clock, one field against another, an id given twice),
# the field's description says it and the row comes back in `rejected`. A pattern may be
# narrower than the server (ids and links in ASCII, Feb 29 left out): a row that matches
# the description is stored, which tests/web/test_openapi_schemathesis.py holds the server to.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"  # refused (line breaks) or dropped by the server
_DROPPED = r"\u202a-\u202e\u2066-\u2069\ufeff"  # bidi controls and BOMs: dropped by the server
_NO_ENCODED_WORD = r"(?!.*=\?[^?]*\?[bBqQ]\?)"  # RFC 2047 words never reach a mail header
SINGLE_LINE = f"^{_NO_ENCODED_WORD}[^{_CONTROL}]*$"
NOT_BLANK_LINE = f"^{_NO_ENCODED_WORD}[^{_CONTROL}]*[^{_CONTROL}{_DROPPED}\\s][^{_CONTROL}]*$"
LISTING_ID = r"^[!-~](?:[ -~]*[!-~])?$"
_PORT = r"(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4}))?"
HTTP_URL = (r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?" + _PORT
            + r"(?:[/?#][!#-;=?-\[\]_a-z~]*)?$")
_DAY = r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
_TIME = r"(?:T(?:[01]\d|2[0-3])(?::[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?)?"
_YEAR = r"(?:20[01]\d|202\d|20[3-9]\d|2100)"  # 2000-2100; half the alternatives lie in the past
ISO_TIME = f"^{_YEAR}-{_DAY}{_TIME}$"


def _caseless(word: str) -> str:
    """`word` as a pattern of either case (ECMA 262 patterns in JSON Schema take no flags);
    `_` also matches `-` and a space, as listings.feed_fields.employment_word reads them."""
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else "[_ -]" if c == "_" else c for c in word)


def _words(words: Any) -> str:
    return "(?:" + "|".join(_caseless(word) for word in sorted(words, key=lambda w: (-len(w), w))) + ")"


# listings.feed_fields as patterns: only ASCII digits (ECMA's \d is ASCII, Python's is not
# unless told), surrounding spaces left out (the server trims them), bounded like the server.
POSTAL_CODE = f"^{feed_fields.POSTAL_CODE.pattern}$"
LATITUDE_TEXT = r"^[+-]?(?:90(?:\.0{1,15})?|[1-8]?[0-9](?:\.[0-9]{1,15})?)$"
LONGITUDE_TEXT = r"^[+-]?(?:180(?:\.0{1,15})?|(?:1[0-7][0-9]|[1-9]?[0-9])(?:\.[0-9]{1,15})?)$"
AMOUNT_TEXT = r"^[0-9]{1,7}(?:\.[0-9]{1,2})?$"  # at most 9,999,999.99: below MAX_SALARY
# The codes the server takes, in any case (JSON Schema patterns have no case flag).
CURRENCY = "^(?:" + "|".join(
    "".join(f"[{letter}{letter.lower()}]" for letter in code) for code in sorted(feed_fields.CURRENCIES)) + ")$"
SALARY_UNIT = f"^{_words(feed_fields.UNIT_WORDS)}$"
REMOTE_TEXT = f"^{_words(feed_fields.REMOTE_WORDS)}$"
_TYPE = _words(feed_fields.EMPLOYMENT_WORDS)
EMPLOYMENT_TYPE_TEXT = f"^ *{_TYPE}(?: *, *{_TYPE}){{0,{feed_fields.MAX_TYPES - 1}}} *$"
EMPLOYMENT_TYPE_WORD = f"^ *{_TYPE} *$"
_ABSENT = [{"type": "null"}, {"type": "string", "maxLength": 0}]


def _given(name: str) -> dict[str, Any]:
    """The row holds `name` with a value (not null, not empty)."""
    return {"required": [name], "properties": {name: {"not": {"enum": [None, ""]}}}}


def _number(minimum: int, maximum: int, text: str, description: str) -> dict[str, Any]:
    return {"description": description, "anyOf": [
        {"type": "number", "minimum": minimum, "maximum": maximum},
        {"type": "string", "pattern": text},
        *_ABSENT,
    ]}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_UNAUTHORIZED = {
    "description": "No, an unknown or a revoked bearer token.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    "content": _json(_ERROR),
}



def _edition_link(operation_id: str, description: str, **constants: str) -> dict[str, Any]:
    return {"operationId": operation_id, "description": description,
            "parameters": {"id": "$response.body#/id", **constants}}


# What a client does next with the edition POST /editions made.
_EDITION_LINKS = {
    "GetEdition": _edition_link("getEdition", "Its state and delivery counts."),
    "PauseEdition": _edition_link("changeEdition", "Pause it.", action="pause"),
    "ResumeEdition": _edition_link("changeEdition", "Resume it.", action="resume"),
    "CancelEdition": _edition_link("changeEdition", "Cancel it.", action="cancel"),
}


def _scoped(scope: str, operation: dict[str, Any]) -> dict[str, Any]:
    """`operation` as one that needs token scope `scope` (OpenAPI 3.1 lets an http bearer
    requirement list the roles it needs), with its 403."""
    forbidden = {
        "description": f"The token lacks the scope `{scope}`; nothing is changed.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer, insufficient_scope"}},
        "content": _json(_ERROR),
    }
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
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This description (needs no token)",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.1 description.", "content": _json({
                    "type": "object", "required": ["openapi", "info", "paths"],
                })}},
            },
        },
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
                    "description": (
                        "A JSON array of at most 5000 listings (whatever the Content-Type says). "
                        "An item that breaks ListingInput does not fail the request: it is named "
                        "in the 200 answer's `rejected`."
                    ),
                    "content": _json({
                        "type": "array",
                        "maxItems": MAX_ITEMS,
                        "items": {"$ref": "#/components/schemas/ListingInput"},
                    }),
                },
                "responses": {
                    "200": {"description": "Processed: the rows that keep to ListingInput are stored; "
                                           "every other row is named in `rejected`.",
                            "content": _json({"$ref": "#/components/schemas/ImportResult"})},
                    "400": {"description": "The body is not JSON, not an array, has more than 5000 "
                                           "items, or is JSON-LD without any JobPosting; nothing is stored.",
                            "content": _json(_ERROR)},
                    "401": _UNAUTHORIZED,
                    "413": {"description": "The body is larger than 4 MB; nothing is stored.",
                            "content": _json(_ERROR)},
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
                    "202": {"description": "Created and queued.", "links": _EDITION_LINKS, "content": _json({
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
                    "One listing, as `newsletter listings import` reads it. A row that matches "
                    "this schema is stored, except for four rules no schema can state: "
                    "`published_at` more than a day ahead of the server's clock, "
                    "`valid_through` before `published_at`, `salary_max` below `salary_min`, "
                    "and an `id` that appeared earlier in the same request. Those rows, and every row that breaks this schema, are "
                    "named in the answer's `rejected` and the other rows are still stored. "
                    "Unknown fields are ignored, except keys starting with `@`: they make the "
                    "item a schema.org JobPosting node (JSON-LD, read as the import reads it; "
                    "other JSON-LD nodes are passed over). Text is cleaned of control "
                    "characters and bidi overrides, NFC-normalised; title, company, location "
                    "and category are single lines (line breaks refuse the row, runs of spaces "
                    "become one) and must not hold RFC 2047 encoded words (`=?charset?b?`). "
                    "Lengths count characters after that cleaning. Times without an offset "
                    "are Europe/Berlin; a date alone is midnight Europe/Berlin (valid_through: "
                    "the whole day)."
                ),
                "required": ["id", "title", "url", "published_at"],
                "additionalProperties": True,
                "propertyNames": {"pattern": "^(?!@)"},
                "properties": {
                    "id": {
                        "description": (
                            "The job board's own id; the upsert key, kept verbatim. Text of at most "
                            "100 printable characters after trimming (the pattern states printable "
                            "ASCII; the server also takes other printable Unicode) or a whole number."
                        ),
                        "anyOf": [
                            {"type": "string", "minLength": 1, "maxLength": 100, "pattern": LISTING_ID},
                            {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1},
                        ],
                    },
                    "title": {"type": "string", "minLength": 1, "maxLength": 300, "pattern": NOT_BLANK_LINE},
                    "url": {
                        "type": "string", "format": "uri", "minLength": 1, "maxLength": 2000, "pattern": HTTP_URL,
                        "description": (
                            "Absolute http or https with a host, without user name or password, "
                            "spaces, control characters, backslashes or raw `<>\"{}|^`` ` "
                            "(percent-encode them). The server also takes an international domain "
                            "name and other non-ASCII characters, and stores them as A-labels and "
                            "percent-encoded UTF-8."
                        ),
                    },
                    "published_at": {
                        "type": "string", "maxLength": 40, "pattern": ISO_TIME,
                        "description": (
                            "ISO 8601 date or date-time (RFC 3339 `date-time`, or without an "
                            "offset), year 2000 to 2100; at most a day ahead of the server's clock."
                        ),
                        "examples": ["2026-11-20T09:30:00+01:00", "2026-11-20"],
                    },
                    "valid_through": {
                        "description": "As published_at, or null or empty; not before published_at.",
                        "anyOf": [
                            {"type": "string", "maxLength": 40, "pattern": ISO_TIME},
                            {"type": "string", "maxLength": 0},
                            {"type": "null"},
                        ],
                    },
                    "company": {"type": ["string", "null"], "maxLength": 200, "pattern": SINGLE_LINE},
                    "location": {"type": ["string", "null"], "maxLength": 200, "pattern": SINGLE_LINE},
                    "category": {"type": ["string", "null"], "maxLength": 200, "pattern": SINGLE_LINE},
                    "description": {"type": ["string", "null"], "maxLength": 20000,
                                    "description": "Several lines; at most one blank line in a row is kept."},
                    "postal_code": {
                        "description": (
                            "The job's postal code: text (a number would lose a leading zero), "
                            "4 to 10 ASCII letters, digits, spaces or hyphens, starting and ending "
                            "with a letter or digit; trimmed. Null or empty: none."
                        ),
                        "anyOf": [{"type": "string", "pattern": POSTAL_CODE}, *_ABSENT],
                        "examples": ["80331", "01067"],
                    },
                    "latitude": _number(-90, 90, LATITUDE_TEXT, (
                        "WGS 84 degrees: a number, or text of digits with an optional decimal "
                        "point (a decimal comma is refused); finite. Given only together with "
                        "longitude. Null or empty: none (the place is then looked up by name)."
                    )),
                    "longitude": _number(-180, 180, LONGITUDE_TEXT, "As latitude; given only together with it."),
                    "remote": {
                        "description": (
                            "Whether the job can be done from home. true/false, 1/0, or the text "
                            "true, false, yes, no, ja, nein, 1 or 0 in any case. Null or empty: false."
                        ),
                        "anyOf": [
                            {"type": "boolean"},
                            {"type": "integer", "enum": [0, 1]},
                            {"type": "string", "pattern": REMOTE_TEXT},
                            *_ABSENT,
                        ],
                    },
                    "employment_type": {
                        "description": (
                            "Comma-separated text or a list of at most "
                            f"{feed_fields.MAX_TYPES} words, each one of "
                            + ", ".join(f"`{kind}`" for kind in feed_fields.criteria.EMPLOYMENT_TYPES)
                            + ", the schema.org JobPosting names FULL_TIME, PART_TIME, INTERN "
                            "(internship) and CONTRACTOR (freelance), or Vollzeit, Teilzeit, "
                            "Werkstudent, Praktikum, Ausbildung, Freiberuflich; any case, `-` or "
                            "a space for `_`. TEMPORARY, VOLUNTEER, PER_DIEM and OTHER are "
                            "taken and passed over; any other word refuses the row. Null or empty: "
                            "not stated."
                        ),
                        "anyOf": [
                            {"type": "string", "pattern": EMPLOYMENT_TYPE_TEXT},
                            {"type": "array", "maxItems": feed_fields.MAX_TYPES,
                             "items": {"type": "string", "pattern": EMPLOYMENT_TYPE_WORD}},
                            *_ABSENT,
                        ],
                        "examples": ["full_time,part_time", ["FULL_TIME", "INTERN"]],
                    },
                    "salary_min": _number(0, feed_fields.MAX_SALARY, AMOUNT_TEXT, (
                        "The lowest pay, per salary_unit: a number from 0 to "
                        f"{feed_fields.MAX_SALARY}, or text of plain digits with an optional `.` "
                        "before 1 or 2 decimals (`52.000` is refused as ambiguous). Not above "
                        "salary_max. Null or empty: open (no lower figure). With an amount, "
                        "salary_unit is required."
                    )),
                    "salary_max": _number(0, feed_fields.MAX_SALARY, AMOUNT_TEXT, (
                        "The highest pay, as salary_min; not below it. The same figure in both "
                        "is a single figure."
                    )),
                    "salary_currency": {
                        "description": (
                            "ISO 4217 code (any case; stored upper case); EUR when a salary "
                            "is given without one. Ignored without a salary."
                        ),
                        "anyOf": [{"type": "string", "pattern": CURRENCY}, *_ABSENT],
                    },
                    "salary_unit": {
                        "description": (
                            "What the salary figures are per: year, month or hour (also Jahr, "
                            "Monat, Stunde; any case). Required with salary_min or salary_max; "
                            "ignored without them."
                        ),
                        "anyOf": [{"type": "string", "pattern": SALARY_UNIT}, *_ABSENT],
                    },
                },
                # The rules between fields that JSON Schema can state (salary_min <= salary_max
                # it cannot: see the description).
                "allOf": [
                    {"if": _given("latitude"), "then": _given("longitude")},
                    {"if": _given("longitude"), "then": _given("latitude")},
                    {"if": {"anyOf": [_given("salary_min"), _given("salary_max")]},
                     "then": {**_given("salary_unit"),
                              "properties": {"salary_unit": {"type": "string", "pattern": SALARY_UNIT}}}},
                ],
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
