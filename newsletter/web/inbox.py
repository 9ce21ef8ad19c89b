"""/dev/inbox: the demo's mails, newest first, each as HTML and as text with working links.
Registered only when NEWSLETTER_DEMO is on, which the configuration refuses in production."""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from markupsafe import Markup, escape

from newsletter.demo.inbox import get_entry, list_entries
from newsletter.db import get_session
from newsletter.editions import planning, state
from newsletter.web.extensions import queue_edition_after_commit, settings

bp = Blueprint("inbox", __name__, url_prefix="/dev/inbox")

_KEY = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_URL = re.compile(r"https?://[^\s<>\"']+")
# Our own mails carry inlined style attributes; nothing else may load or run.
MAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'"


def _entry_or_404(key: str):  # type: ignore[no-untyped-def]
    if not _KEY.match(key):
        abort(404)
    entry = get_entry(settings().instance_path, key)
    if entry is None:
        abort(404)
    return entry


# strict_slashes=False: /dev/inbox answers itself. Werkzeug's redirect to the slash would
# build an absolute Location from the Host header, whatever host the request names.
@bp.get("/", strict_slashes=False)
def index() -> str:
    return _inbox(created=request.args.get("created"))


def _inbox(**extra: object) -> str:
    session = get_session()
    latest = state.latest(session)
    return render_template(
        "inbox.html", entries=list_entries(settings().instance_path), latest=latest,
        counts=state.counts(session, latest.id) if latest else None,
        preview=planning.preview(session, settings()), **extra,
    )


@bp.post("/send-edition")
def send_edition() -> Response | tuple[str, int]:
    """The demo's "send an edition now": what `newsletter digest send` does, refused the
    same way while an edition is still sending or paused."""
    session = get_session()
    try:
        edition = planning.create_edition(session, settings(), "demo")
    except state.EditionError as exc:
        session.rollback()
        return _inbox(refused=str(exc)), 409
    session.commit()
    queue_edition_after_commit(edition.id)
    return redirect(url_for("inbox.index", created=edition.id), code=303)  # type: ignore[return-value]


@bp.get("/<key>")
def show(key: str) -> str:
    entry = _entry_or_404(key)
    text = entry.body("plain") or ""
    linked = Markup(_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', str(escape(text))))
    headers = [(name, str(value)) for name, value in entry.message.items()]
    return render_template("inbox_mail.html", entry=entry, text=linked, headers=headers,
                           has_html=entry.body("html") is not None)


@bp.get("/<key>/html")
def html(key: str) -> Response:
    entry = _entry_or_404(key)
    body = entry.body("html")
    if body is None:
        abort(404)
    response = Response(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MAIL_CSP
    return response
