"""GET /digest/<token>: a digest's web version, the page the "view in the browser" link
of every digest opens (editions/web_version.py says what it shows and for how long).

The link names a variant and a language, never a reader, and the page holds no reader's
token, so it may be cached, but only by the reader's own browser (a shared cache would
keep it past its expiry and the withdrawal of a listing). It is no page for search
engines and no page for frames of other sites.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g
from flask_babel import gettext as _

from newsletter.db import get_session
from newsletter.editions import web_version
from newsletter.mail.compose import Renderer
from newsletter.tokens import TokenInvalid, tokens_for
from newsletter.web.errors import error_response
from newsletter.web.extensions import settings

bp = Blueprint("digest_view", __name__)

# The digest's HTML is styled inline (css-inline), so styles must be allowed inline; it has
# no script, no form and no image of its own, and every text in it is escaped.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
CACHE = "private, max-age=3600"


def _renderer() -> Renderer:
    """One Renderer per app: its templates compile once, not on every request."""
    renderer: Renderer = current_app.extensions.setdefault("newsletter_digest_renderer", Renderer(settings()))
    return renderer


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.get("/digest/<token>")
def page(token: str) -> Response:
    """The web version, or a readable 404 (a link we never made) or 410 (too old)."""
    try:
        variant_id, language = tokens_for(settings()).read_digest_web(token)
    except TokenInvalid:
        return _headers(_unknown())
    g.page_language = language  # the error pages below in the digest's language
    try:
        found = web_version.render(get_session(), _renderer(), variant_id, language)
    except web_version.DigestExpired:
        return _headers(error_response(410, _(
            "This digest is older than %(days)s days and no longer online. The listings that are "
            "still open are on the job board.", days=web_version.WEB_VERSION_DAYS)))
    except web_version.NoSuchDigest:
        return _headers(_unknown())
    response = Response(found.html, mimetype="text/html")
    response.headers["Cache-Control"] = CACHE
    response.headers["Content-Language"] = found.language
    return _headers(response)


def _unknown() -> Response:
    return error_response(404, _("There is no digest at this address. Please check that the link is complete."))
