"""Headers every page gets: a strict Content-Security-Policy (STANDARDS 32), no referrer
(links carry tokens), no framing, no sniffing.

The one exception to "no framing" is the embeddable signup form (and the answers to what
it posts): a view calls `allow_embedding()`, and then only the board's own origins of
NEWSLETTER_EMBED_ORIGINS may frame that response."""

from __future__ import annotations

from flask import Flask, Response, g

from newsletter.config import Settings

_CSP_BASE = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors "
)
CSP = _CSP_BASE + "'none'"


def embed_csp(origins: tuple[str, ...]) -> str:
    """The policy of an embeddable page: framed by `origins` only, by nobody without any."""
    return _CSP_BASE + (" ".join(origins) if origins else "'none'")


def allow_embedding() -> None:
    """Let NEWSLETTER_EMBED_ORIGINS frame this request's response, whatever it is (the
    form, its answer, an error page): a page refused in a frame shows the reader nothing."""
    g.embeddable = True


def init_app(app: Flask, settings: Settings) -> None:
    origins = settings.embed_origins

    @app.after_request
    def _headers(response: Response) -> Response:
        if g.get("embeddable"):
            response.headers["Content-Security-Policy"] = embed_csp(origins)
            # X-Frame-Options cannot name origins (ALLOW-FROM is dead): sent, it would
            # refuse the frame in browsers that read it besides the CSP.
            if not origins:
                response.headers.setdefault("X-Frame-Options", "DENY")
        else:
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if settings.is_production:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response
