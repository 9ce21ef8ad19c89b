"""Readable error pages (or JSON for API-minded clients); never a bare 500 for user input."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


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


def error_response(status: int, message: str, field: str | None = None) -> Response:
    if wants_json():
        body: dict[str, object] = {"error": message}
        if field:
            body["field"] = field
        response = jsonify(body)
    else:
        response = Response(render_template("error.html", status=status, message=message), mimetype="text/html")
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
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
