"""Readable error pages (or JSON for API-minded clients); never a bare 500 for user input,
and 503 with Retry-After while the database is away (outages.py says when that is)."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from newsletter.web import outages

log = logging.getLogger(__name__)

OUTAGE_JSON_MESSAGE = "The service is temporarily unavailable: its database does not answer. Try again later."


def wants_json() -> bool:
    """JSON when the client prefers it, or sent JSON and has no preference; always under
    /api/, also for a route that does not exist or a method it does not take."""
    if request.path.startswith("/api/"):
        return True
    accept = request.accept_mimetypes
    json_q, html_q = accept["application/json"], accept["text/html"]
    if json_q != html_q:
        return json_q > html_q
    return request.is_json


def error_response(status: int, message: str, field: str | None = None, **extra: object) -> Response:
    """The error page with `message`, or `{"error": message, "field": field, **extra}`."""
    if wants_json():
        body: dict[str, object] = {"error": message}
        if field:
            body["field"] = field
        body.update(extra)
        response = jsonify(body)
    else:
        response = Response(render_template("error.html", status=status, message=message), mimetype="text/html")
    response.status_code = status
    return response


def outage_response() -> Response:
    """503 while the database is away: the error page in the reader's language, or JSON (in
    English, as every JSON error is) saying when to try again."""
    from flask_babel import gettext as _

    if wants_json():
        response = error_response(503, OUTAGE_JSON_MESSAGE, retry_after=outages.RETRY_AFTER_SECONDS)
    else:
        response = error_response(503, _("Something went wrong on our side. Please try again later."))
    response.headers["Retry-After"] = str(outages.RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _database_away(exc: Exception) -> Response:
    if not outages.is_outage(exc):
        raise exc  # a bug: Flask answers 500 (below) and logs it with its traceback
    # The route's rule, not the path: a path may carry a reader's token.
    route = request.url_rule.rule if request.url_rule is not None else "(no route)"
    log.warning("database unavailable, answered 503 to %s %s (%s)", request.method, route, outages.reason(exc))
    return outage_response()


def _retry_after(response: Response) -> Response:
    # Every 503, GET /healthz's too, tells clients and proxies when to come back.
    if response.status_code == 503:
        response.headers.setdefault("Retry-After", str(outages.RETRY_AFTER_SECONDS))
    return response


def init_app(app: Flask) -> None:
    for error in outages.OUTAGE_ERRORS:
        app.register_error_handler(error, _database_away)
    app.after_request(_retry_after)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        from flask_babel import force_locale
        from flask_babel import gettext as _

        # JSON errors are for programs and speak English, as the field errors do; pages
        # speak the reader's language.
        with force_locale("en") if wants_json() else nullcontext():
            messages = {
                400: _("The request could not be understood."),
                404: _("This page does not exist."),
                405: _("This address does not accept that kind of request."),
                413: _("The request is too large."),
                429: _("Too many requests from your network. Please wait a little and try again."),
            }
        response = error_response(exc.code or 500, messages.get(exc.code or 500, exc.description or ""))
        if exc.code == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(InternalServerError)
    def _internal(exc: InternalServerError) -> Response:
        from flask_babel import force_locale
        from flask_babel import gettext as _

        with force_locale("en") if wants_json() else nullcontext():
            message = _("Something went wrong on our side. Please try again later.")
        return error_response(500, message)
