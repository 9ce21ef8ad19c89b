"""Files uploaded to the admin (a subscriber CSV, a listing feed): up to the API's 4 MB.

Every other request keeps the app's 64 KB. The limit is raised before the admin's guard
reads the form for its CSRF token (an app-level hook runs before the blueprint's); a
request without a session is answered before its body is read at all."""

from __future__ import annotations

from flask import request
from werkzeug.utils import secure_filename

from newsletter.web.admin.auth import bp
from newsletter.web.api import MAX_BODY

MAX_UPLOAD = MAX_BODY
UPLOAD_ENDPOINTS = frozenset({"admin.subscribers_import", "admin.listings_upload"})
FIELD = "file"


@bp.before_app_request
def _upload_limit() -> None:
    if request.endpoint in UPLOAD_ENDPOINTS and request.method == "POST":
        request.max_content_length = MAX_UPLOAD


def uploaded(default_name: str) -> tuple[str, bytes] | None:
    """The uploaded file's name (made safe: it is recorded) and bytes; None without one."""
    storage = request.files.get(FIELD)
    if storage is None or not storage.filename:
        return None
    name = secure_filename(storage.filename)[:100] or default_name
    return name, storage.read()
